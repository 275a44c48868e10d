"""The lab report: <out>/results.md rebuilt from every stage row in <out> (see genlab.lab)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..fmt import duration, num
from .presets import ROW_FILE, STAGES


def _n(v, spec: str = ".3g") -> str:
    """A number of the report; '–' where there is none."""
    return num(v, spec, missing="–")


def _fid_cell(row: dict) -> str:
    fid = row.get("fid")
    if not fid:
        return "–"
    return f"{fid['fid']:.3g} ({_n(fid.get('floor_fid'))})"


def _acc_cell(row: dict) -> str:
    if row["stage"] == "classifier":
        return f"{row['metrics']['accuracy']:.4f} (test)"
    fid = row.get("fid") or {}
    if "conditional_accuracy" in fid:
        return f"{fid['conditional_accuracy']:.4f} (cond.)"
    return "–"


def _table(rows: list[dict]) -> list[str]:
    head = ["model", "params", "train time", "steps (epochs)", "s / epoch", "MSE", "PSNR (dB)", "SSIM",
            "-ELBO (nats)", "-ELBO (bits/dim)", "-IWAE (nats)", "FID (floor)", "accuracy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r.get("metrics", {})
        k = m.get("iwae_k")
        iwae = f"{m['neg_iwae_nats']:.1f} (k={int(k)})" if "neg_iwae_nats" in m else "–"
        cells = [r["title"], f"{r['params'] / 1e6:.2f}M", duration(r["train_seconds"]),
                 f"{r['steps']} ({r['epochs']:.2f})", f"{r['sec_per_epoch']:.0f}",
                 _n(m.get("mse"), ".4f"), _n(m.get("psnr"), ".2f"), _n(m.get("ssim"), ".3f"),
                 _n(m.get("neg_elbo_nats"), ".1f"), _n(m.get("neg_elbo_bpd"), ".4f"), iwae, _fid_cell(r), _acc_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _img(label: str, path: str) -> str:
    return f"[![{label}]({path})]({path})" if not path.endswith(".gif") else f"![{label}]({path})"


def _links(row: dict) -> str:
    """Links to every picture of a stage, and its loss curve."""
    pics = [*row.get("pictures", []), ["loss curve", f"{row['stage']}/loss.png"]]
    return "All pictures: " + " · ".join(f"[{label}]({path})" for label, path in pics) + "."


def _pictures(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["stage"] == "ddpm":
            continue
        pics = dict(r.get("pictures", []))
        out += [f"### {r['title']}", "", _links(r), ""]
        for label in ("prior samples", "samples", "interpolation", "reconstructions", "confusion"):
            if label in pics:
                what = {"prior samples": "samples (decoded z ~ N(0, I))",
                        "samples": "samples G(z), z ~ N(0, I) (the first 64 of those scored by FID)",
                        "interpolation": "G(slerp(z0, z1, a)): walks between two latents, one per row",
                        "reconstructions": "test inputs (odd rows) and reconstructions (even rows)",
                        "confusion": "confusion matrix on the test split"}[label]
                out += [f"{what}:", "", _img(label, pics[label]), ""]
    return out


def _ddpm_section(row: dict) -> list[str]:
    pics = dict(row.get("pictures", []))
    cfg = row["model_config"]
    s = row.get("sampler", {})
    sampler = f"{s.get('sampler', cfg.get('sampler'))} with {s.get('steps') or cfg.get('timesteps')} steps"
    if s.get("guidance", 1.0) != 1.0:
        sampler += f" and classifier-free guidance {s['guidance']:g}"
    lines = ["## DDPM", "",
             f"U-Net {cfg['base_width']} x {tuple(cfg['channel_mult'])}, {cfg['num_res_blocks']} residual block(s) "
             f"per level, attention at {tuple(cfg['attn_resolutions']) or 'none'}; T = {cfg['timesteps']}, "
             f"{cfg['schedule']} schedule, {cfg['prediction']}-prediction, loss weighting {cfg['weighting']}"
             + (", class-conditional (label dropout "
                f"{cfg['label_dropout']:g})" if cfg.get("conditional") else "") + f". Trained {row['steps']} steps "
             f"({row['epochs']:.2f} epochs, {duration(row['train_seconds'])}"
             + (", stopped by the time budget" if row.get("stopped") == "time" else "") + f"); sampled with "
             f"{sampler} ({duration(row.get('sample_seconds', 0))} for the FID samples).", "", _links(row), ""]
    if "samples" in pics:
        lines += ["Samples (EMA weights" + (", one row per class" if cfg.get("conditional") else "") + "):", "",
                  _img("DDPM samples", pics["samples"]), ""]
    names = {"denoising strip": "Denoising: x_T on the left to x_0 on the right",
             "reverse process": "The reverse process, animated",
             "forward process": "The forward process q(x_t | x_0) on test images"}
    for label, text in names.items():
        if label in pics:
            lines += [f"{text}:", "", _img(label, pics[label]), ""]
    return lines


def _direction(a: float, b: float, tol: float = 0.005) -> str:
    """'rose' / 'fell' / 'stayed about the same' (within tol, relative, or 0.05 absolute)."""
    if abs(b - a) <= max(tol * max(abs(a), abs(b)), 0.05 if max(abs(a), abs(b)) > 1 else 1e-4):
        return "stayed about the same"
    return "rose" if b > a else "fell"


def _sweep_section(row: dict) -> list[str]:
    es = sorted(row["entries"], key=lambda e: e["value"])
    name = {"kl_weight": "KL weight (beta)"}.get(row["option"], row["option"])
    head = [name, "steps", "reconstruction (nats)", "KL (nats)", "-ELBO (nats)", "-ELBO (bits/dim)", "MSE",
            "PSNR (dB)", "active units", "FID (floor)"]
    values = ", ".join(format(e["value"], "g") for e in es)
    lines = ["## What changed when an assumption changed: the KL weight", "",
             "The VAE assumes that the code should carry no more information than its KL term pays for, with a "
             "price of 1 nat per nat (the ELBO). The experiment trains the same VAE (same architecture, data, "
             f"seed and number of steps) with the KL term weighted by {values} and scores each on "
             f"{row['eval_n']} test images with the true ELBO (weight 1).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in es:
        active = f"{_n(e['active_units'], '.0f')}/{_n(e['latent_dims'], '.0f')}"
        fid = "–" if e["fid"] is None else f"{e['fid']:.3g} ({_n(e['floor_fid'])})"
        lines.append(f"| {e['value']:g}{' (the VAE above)' if e['reused'] else ''} | {e['steps']} | "
                     f"{e['recon_nats']:.1f} | {e['kl_nats']:.1f} | {e['neg_elbo_nats']:.1f} | "
                     f"{e['neg_elbo_bpd']:.4f} | {e['mse']:.4f} | {e['psnr']:.2f} | {active} | {fid} |")
    lo, hi = es[0], es[-1]
    say = (f"Raising the weight from {lo['value']:g} to {hi['value']:g}: the KL "
           f"{_direction(lo['kl_nats'], hi['kl_nats'])} ({lo['kl_nats']:.1f} -> {hi['kl_nats']:.1f} nats), "
           "the reconstruction term "
           f"{_direction(lo['recon_nats'], hi['recon_nats'])} ({lo['recon_nats']:.1f} -> {hi['recon_nats']:.1f} nats), "
           f"the test MSE {_direction(lo['mse'], hi['mse'])} ({lo['mse']:.4f} -> {hi['mse']:.4f}), active units went "
           f"from {_n(lo['active_units'], '.0f')} to {_n(hi['active_units'], '.0f')}")
    if lo["fid"] is not None and hi["fid"] is not None:
        say += f", and the FID of prior samples {_direction(lo['fid'], hi['fid'])} ({lo['fid']:.3g} -> {hi['fid']:.3g})"
    say += "."
    expected = hi["kl_nats"] < lo["kl_nats"] and hi["recon_nats"] > lo["recon_nats"]
    best = min(es, key=lambda e: e["neg_elbo_nats"])
    if expected:
        say += (" That is the trade the weight sets: a higher price per nat of information squeezes the code "
                "(fewer nats through z) and the decoder has to guess more, so reconstructions get worse; a lower "
                "price keeps more detail in z but leaves the codes further from the prior N(0, I) that samples "
                "are drawn from.")
    else:
        say += (" This is not the textbook trade-off (KL down, reconstruction error up as the weight grows); "
                "with runs this short the differences can be within training noise.")
    say += f" The best -ELBO (the true bound) came from weight {best['value']:g}."
    pics = dict(row.get("pictures", []))
    lines += ["", say, ""]
    if "kl sweep" in pics:
        lines += ["Test inputs, then per weight: reconstructions (left) and prior samples from the same noise "
                  "(right); bottom: the two ELBO terms against the weight.", "", _img("KL sweep", pics["kl sweep"]), ""]
    return lines


def _feature_note(info: dict) -> str:
    if not info.get("classifier_path"):
        return info.get("extractor_note") or "none."
    path, link = info["classifier_path"], info.get("classifier_link")
    where = f"[{link}]({link})" if link else f"`{path}`"
    which = "the classifier trained in this run" if info.get("classifier_trained_now") else "the classifier in"
    return (f"{which} ({where}); score a run again with `genlab eval {info['out']}/ddpm --classifier {path}`."
            if info.get("classifier_trained_now") else f"{which} {where} (trained earlier).")


def write_report(out: str | Path, info: dict) -> Path:
    """<out>/results.md from every stage row in <out> (rows of this run and of earlier ones)."""
    out = Path(out)
    rows = {s: json.loads((out / s / ROW_FILE).read_text()) for s in STAGES if (out / s / ROW_FILE).exists()}
    models = [rows[s] for s in STAGES if s in rows and s != "sweep"]
    first = next(iter(rows.values()), {})
    dataset, shape = first.get("dataset", "?"), first.get("shape", "?")
    mixed = sorted({(r.get("preset"), r.get("dataset"), r.get("shape")) for r in rows.values()})
    lines = [f"# genlab lab report: {dataset} ({shape})", "",
             f"Written by `{info['command']}` (preset **{info['preset']}**: {info['about']}). This run took "
             f"{duration(info['total_seconds'])} for the stages {', '.join(info['stages_run'])} on "
             f"{info['device']} ({info['machine']}, {info['threads']} torch thread(s), torch {info['torch']})"
             + (f", time budgets x{info['minutes_scale']:g}" if info.get("minutes_scale", 1) != 1 else "")
             + f"; {datetime.now().strftime('%Y-%m-%d %H:%M')}.", ""]
    if len(mixed) > 1:
        lines += ["**Note:** the rows below come from different runs: "
                  + "; ".join(f"{p} preset on {d} {s}" for p, d, s in mixed) + ".", ""]
    lines += ["## Results", "", f"Metrics on the {info['test_split']} split.", "", *_table(models), ""]
    notes = [
        "MSE on the [0, 1] scale, PSNR and SSIM: test images against their reconstructions (AE: the code; VAE and "
        "HVAE: the posterior mean code).",
        "-ELBO and -IWAE: negative bounds on log p(x) per image in nats (lower is better) and in bits per "
        "dimension (nats / (C·H·W·ln 2)). With the Bernoulli likelihood used here they are cross-entropies of "
        "the pixel intensities, comparable between the VAE and the HVAE but not with published 8-bit numbers.",
        f"FID: Fréchet distance between the classifier features of {info['fid_n']} samples and as many test "
        "images; in brackets the floor, the same distance between training and test images, i.e. what a "
        "perfect generator would score at this n. Feature network: " + _feature_note(info),
        "accuracy: the classifier's on the test split; for the class-conditional DDPM, the fraction of samples "
        "the classifier assigns to the class they were generated for.",
        "Times are wall clock on a machine that may be shared; s / epoch = training time / epochs done "
        "(including checkpoints).",
    ]
    lines += [f"- {n}" for n in notes] + [""]
    if "ddpm" in rows:
        lines += _ddpm_section(rows["ddpm"])
    if "sweep" in rows:
        lines += _sweep_section(rows["sweep"])
    lines += ["## Pictures", "", "Test inputs (the first 64 of the test split):", "", _img("inputs", "inputs.png"), "",
              "Every picture of each run folder is linked; the main ones are shown.", ""] + _pictures(models)
    lines += ["## Settings", "", "Model and training options of each run (the run folders hold them as "
              "config.json, with the loss curve loss.png):", ""]
    for r in models:
        t = r["train_config"]
        lines.append(f"- {r['title']} ([{r['stage']}/]({r['stage']}/)): `{json.dumps(r['model_config'])}`; "
                     f"batch {t['batch_size']}, lr {t['lr']:g}, {t['lr_schedule']} schedule, EMA {t['ema_decay']:g}, "
                     f"budget {t['max_steps'] or '–'} steps / {t['max_minutes'] or '–'} min, {t['epochs']} epochs "
                     "max; "
                     f"stopped: {r['stopped']}")
    lines.append("")
    path = out / "results.md"
    path.write_text("\n".join(lines))
    return path
