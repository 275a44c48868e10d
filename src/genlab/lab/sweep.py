"""`genlab sweep`: one base config, a grid of option values, one normal run folder per cell.

    genlab sweep --config base.json --grid "lr=1e-3,3e-4" --grid "timesteps=200,1000" --out runs/sw

    <out>/sweep.json           what is swept (family, base config, grid, data flags, budget)
    <out>/<cell>/              a normal run folder, e.g. <out>/lr=0.001,timesteps=200/, written by
                               `genlab train FAMILY --config <cell>/sweep_cell.json --out <cell>` (the
                               same code path); sweep_row.json in it once the cell is scored
    <out>/results.md, .csv     one row per cell: final train loss, training time, the family's own
                               metrics (`genlab eval --metrics model`) and, with --fid-n, FID & co
                               (`genlab eval --metrics samples`)
    <out>/plot_<option>.png    the metrics against one swept option, one line per value of the others

Grid keys are the options a config file takes: the family's Config fields, TrainConfig fields and
`dataset`; values parse to the field's type. Rerunning the same command continues the sweep: a
cell with a row is skipped, a cell with a checkpoint but no row continues with the loop's own
(exact) resume, the others start. Every cell starts from torch.manual_seed(its seed), so its
initial weights do not depend on the cells run before it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import difflib
import itertools
import json
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

import torch

from ..cli import eval as cli_eval
from ..cli import train as cli_train
from ..cli.options import DATA_FILLED, load_config_file, merge
from ..errors import GenlabError, ParamError
from ..fmt import duration, md_table, num
from ..metrics.family import has_metrics
from ..models import MODELS, load_all
from ..models.base import GenerativeModel
from ..train import TrainConfig
from ..train.checkpoint import STATE
from ..train.loop import check_config
from ..viz.plots import plt, save_figure

SPEC, CELL_CONFIG, ROW = "sweep.json", "sweep_cell.json", "sweep_row.json"
RESULTS = ("results.md", "results.csv")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


# --- the grid -------------------------------------------------------------------------------------

def option_defaults(family: str, worded: bool = False):
    """Every option a sweep may set for `family`: name -> its default (whose type values parse to);
    worded=True: the same as a sentence for error messages."""
    if family not in load_all():
        raise ParamError("family", f"'{family}' is unknown; choose one of: {', '.join(sorted(MODELS))}")
    cls = MODELS[family]
    model = {f.name: f.default for f in dataclasses.fields(cls.Config) if f.name not in DATA_FILLED}
    train = {f.name: cls.train_defaults.get(f.name, f.default) for f in dataclasses.fields(TrainConfig)}
    if worded:
        return f"model options {', '.join(model)}; training options {', '.join(train)}; dataset"
    return {**model, **train, "dataset": cls.default_dataset or ""}


def parse_value(text: str, default):
    """`text` as a value of the option whose default is `default`, of its type; ValueError names the type."""
    kind, low = type(default), text.strip().lower()
    try:
        if kind is bool and low in TRUE + FALSE:
            return low in TRUE
        if kind is int and float(text).is_integer():  # '1e3' is an integer too
            return int(float(text))
        if kind is float:
            return float(text)
        if kind is tuple:
            return () if low == "none" else tuple(int(v) for v in text.split(","))
        if kind not in (bool, int):
            return text.strip()
    except ValueError:
        pass
    raise ValueError({bool: "true or false", int: "an integer", float: "a number",
                      tuple: "comma-separated integers (or none)"}[kind])


@dataclasses.dataclass
class Axis:
    name: str
    values: list


def parse_grid(specs: list[str], family: str) -> list[Axis]:
    """'--grid NAME=V1,V2' strings -> typed axes (values split on ';' instead when one holds commas)."""
    valid = option_defaults(family)
    axes: list[Axis] = []
    for spec in specs:
        if "=" not in spec:
            raise ParamError("grid", f"expects NAME=V1,V2,..., got '{spec}'")
        name, _, text = (s.strip() for s in spec.partition("="))
        name = name.replace("-", "_")
        if name not in valid:
            raise ParamError("grid", f"'{spec}': {name} is not an option of {family}{_close(name, valid)}; "
                                     f"valid: {option_defaults(family, worded=True)}")
        if name in (a.name for a in axes):
            raise ParamError("grid", f"sweeps {name} twice; give all its values in one --grid {name}=...")
        texts = [t.strip() for t in text.split(";" if ";" in text else ",")]
        if not text.strip() or not all(texts):
            raise ParamError("grid", f"'{spec}' has an empty value; give e.g. {name}={_example(valid[name])}")
        values = []
        for t in texts:
            try:
                values.append(parse_value(t, valid[name]))
            except ValueError as e:
                raise ParamError("grid", f"'{spec}': {name} takes {e}, got '{t}' "
                                         f"(e.g. {name}={_example(valid[name])})") from None
        if len(set(map(_text, values))) < len(values):
            raise ParamError("grid", f"'{spec}' lists a value twice")
        axes.append(Axis(name, values))
    if not axes:
        raise ParamError("grid", "is missing: give at least one, e.g. --grid lr=1e-3,3e-4")
    return axes


def _close(name: str, valid) -> str:
    near = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def _example(default) -> str:
    return {bool: "true,false", int: "1,2", float: "0.1,0.01", tuple: "1,2;1,2,2"}.get(type(default), "a,b")


def _text(v) -> str:
    """A value as the cell names and tables show it."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return format(v, "g")
    if isinstance(v, (tuple, list)):
        return "-".join(map(str, v)) or "none"
    return str(v)


@dataclasses.dataclass
class Cell:
    name: str                       # its folder in <out>
    options: dict                   # swept option -> value
    train: TrainConfig | None = None


def make_cells(axes: list[Axis]) -> list[Cell]:
    """Every combination, the first axis varying slowest."""
    cells = []
    for combo in itertools.product(*(a.values for a in axes)):
        options = {a.name: v for a, v in zip(axes, combo)}
        name = ",".join(f"{k}={re.sub(r'[^A-Za-z0-9_.+-]', '-', _text(v))}" for k, v in options.items())
        cells.append(Cell(name, options))
    if len({c.name for c in cells}) < len(cells):
        raise ParamError("grid", "has values that give two cells the same folder name; make them differ "
                                 "in letters or digits")
    return cells


# --- the sweep --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Scoring:
    metrics: str = "all"            # all | model | samples | none
    eval_n: int = 1000              # held-out items for the family's own metrics
    fid_n: int = 0                  # samples for FID & co (0: none)
    classifier: str | None = None   # FID feature classifier run folder (default: found by dataset)


class Sweep:
    """The cells of one sweep in `out`: check them, run them in order (resuming), write the results."""

    def __init__(self, family: str | None, config: str | None, grid: list[str], out: str | None,
                 data: dict | None = None, data_dir: str | None = None, max_minutes: float = 0.0,
                 scoring: Scoring | None = None, command: str = "", log=None):
        base = load_config_file(config)
        self.config_path = config
        self.family = self._family(family, base.pop("family", None), config)
        base.pop("out", None)  # every cell has its own run folder under --out
        self.base, self.data, self.data_dir = base, dict(data or {}), data_dir
        self.max_minutes, self.scoring = max_minutes, scoring or Scoring()
        self.command, self._log = command, log or (lambda m: print(m, flush=True))
        self.axes = parse_grid(grid, self.family)
        self.out = Path(out or f"runs/sweep-{self.family}")
        self._check_options()
        self.cells = make_cells(self.axes)
        for cell in self.cells:
            cell.train = self._train_config(cell)
        self.own, self.fid = self._check_scoring()

    def log(self, msg: str) -> None:
        self._log(f"[sweep] {msg}")

    @staticmethod
    def _family(flag: str | None, in_file, config: str | None) -> str:
        family = flag or in_file
        if not family:
            raise GenlabError("name the family to sweep: --family, or \"family\": \"toy-diffusion\" in the "
                              "--config file")
        if flag and in_file and flag != in_file:
            raise GenlabError(f"--family {flag} differs from \"family\": \"{in_file}\" in {config}; keep one")
        option_defaults(family)  # an unknown family fails here
        return family

    def _check_options(self) -> None:
        valid = option_defaults(self.family)
        unknown = sorted(set(self.base) - set(valid))
        if unknown:
            raise GenlabError(f"config file {self.config_path}: unknown option(s) {', '.join(unknown)} for "
                              f"{self.family}{_close(unknown[0], valid)}; "
                              f"valid: {option_defaults(self.family, worded=True)}")
        swept = {a.name for a in self.axes}
        for name, given in (("dataset", self.data.get("dataset")), ("max_minutes", self.max_minutes)):
            if given and name in swept:
                raise ParamError(name, f"is swept by --grid {name}=...; leave out --{name.replace('_', '-')}")

    def cell_config(self, cell: Cell) -> dict:
        """The config file of one cell: base < --dataset / --max-minutes < the cell's values."""
        cfg = {**self.base, **{k: v for k, v in {"dataset": self.data.get("dataset"),
                                                 "max_minutes": self.max_minutes}.items() if v}}
        return json.loads(json.dumps({**cfg, **cell.options}))  # tuples as lists, as a JSON file holds them

    def _train_config(self, cell: Cell) -> TrainConfig:
        """The cell's training options, checked now rather than after the cells before it have run."""
        cfg = self.cell_config(cell)
        names = [f.name for f in dataclasses.fields(TrainConfig)]
        try:
            tc = TrainConfig(**merge(TrainConfig, names, argparse.Namespace(), cfg, MODELS[self.family].train_defaults))
            check_config(tc)
        except ParamError as e:
            if e.param == "max_minutes" and self.max_minutes and e.param not in cell.options:
                raise  # the CLI words it as --max-minutes
            raise GenlabError(self._where(e, cell)) from None
        except GenlabError as e:  # a config-file value of the wrong type
            raise GenlabError(str(e).replace("config file:", f"config file {self.config_path}:")) from None
        return tc

    def _where(self, e: ParamError, cell: Cell) -> str:
        """A bad option value, worded about where it was set: the grid, the config file, a flag."""
        if e.param in cell.options:
            return f"--grid {e.param}={_text(cell.options[e.param])}: {e}"
        if e.param in self.base:
            return f"config file {self.config_path}: {e}"
        return e.worded(f"--{e.param.replace('_', '-')}")

    def _check_scoring(self) -> tuple[bool, bool]:
        s, cls = self.scoring, MODELS[self.family]
        if s.metrics not in ("all", "model", "samples", "none"):
            raise ParamError("metrics", f"must be all, model, samples or none, got {s.metrics}")
        images = cls.data_kind == "image" and cls.sample is not GenerativeModel.sample
        if s.fid_n and not images:
            raise ParamError("fid_n", f"asks for FID, but the {self.family} model makes no images; leave it out")
        if s.metrics == "samples" and not s.fid_n:
            raise ParamError("fid_n", "must be positive with --metrics samples (the number of samples for FID)")
        if s.metrics == "model" and not has_metrics(cls):
            raise ParamError("metrics", f"model: the {self.family} family has no metrics of its own; use "
                                        "--metrics samples with --fid-n N, or none")
        return s.metrics in ("all", "model") and has_metrics(cls), s.metrics in ("all", "samples") and s.fid_n > 0

    # --- state in <out> ----------------------------------------------------------------------------

    def identity(self) -> dict:
        """What makes two sweeps the same sweep (scoring may change between reruns: cells are rescored)."""
        data = {k: v for k, v in self.data.items() if v not in (None, [], "")}
        return json.loads(json.dumps({"family": self.family, "base": self.base, "data": data,
                                      "max_minutes": self.max_minutes,
                                      "grid": [[a.name, a.values] for a in self.axes]}))

    def status(self, cell: Cell) -> str:
        folder = self.out / cell.name
        if (folder / ROW).exists():
            row = json.loads((folder / ROW).read_text())
            return "done" if row.get("scoring") == dataclasses.asdict(self.scoring) else "rescore"
        return "resume" if (folder / STATE).exists() else "new"

    def check_out(self, overwrite: bool, dry_run: bool = False) -> None:
        """Refuse an --out that holds something else; with overwrite, remove the old sweep's own files."""
        spec = self.out / SPEC
        if self.out.exists() and not self.out.is_dir():
            raise ParamError("out", f"{self.out} is a file; choose a folder")
        if not spec.exists():
            if self.out.exists() and any(self.out.iterdir()):
                raise ParamError("out", f"{self.out} holds files but no sweep ({SPEC}); choose another --out "
                                        "(a sweep only deletes its own folders)")
            return
        try:
            old = json.loads(spec.read_text())
        except (OSError, ValueError) as e:
            raise GenlabError(f"{spec} is unreadable ({e}); move {self.out} away or choose another --out") from e
        same = {k: old.get(k) for k in self.identity()} == self.identity()
        if same and not overwrite:
            return
        if not overwrite:
            differ = ", ".join(k for k, v in self.identity().items() if old.get(k) != v)
            raise ParamError("out", f"{self.out} holds another sweep (differing in: {differ}); rerun its "
                                    "command to continue it, pass --overwrite to replace it, or choose another --out")
        if not dry_run:
            for name in [*old.get("cells", []), *RESULTS, *(p.name for p in self.out.glob("plot_*.png")), SPEC]:
                path = self.out / Path(name).name  # only names inside --out
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def plan(self, overwrite: bool = False) -> list[str]:
        """One line per cell: its folder and what a run would do with it."""
        what = {"done": "done (skipped)", "rescore": "trained; scored again", "resume": "continues its checkpoint",
                "new": "to train"}
        width = max(len(c.name) for c in self.cells)
        fresh = overwrite or not self.out.is_dir()
        return [f"{c.name:<{width}}  {what['new' if fresh else self.status(c)]}" for c in self.cells]

    # --- running ----------------------------------------------------------------------------------

    def run(self, overwrite: bool = False) -> int:
        """Every cell in order; 130 when a cell was interrupted (its checkpoint is kept)."""
        self.check_out(overwrite)
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / SPEC, {**self.identity(), "cells": [c.name for c in self.cells]})
        parser = _parser(cli_train)
        for i, cell in enumerate(self.cells, 1):
            state, head = self.status(cell), f"cell {i}/{len(self.cells)} {cell.name}"
            if state == "done":
                self.log(f"{head}: done, skipped")
                continue
            if state != "rescore":
                self.log(f"{head}: " + ("continuing its checkpoint" if state == "resume" else "training"))
                if self._train(cell, parser, resume=state == "resume") == 130:
                    self.write_results()
                    self.log(f"interrupted in {cell.name}; its checkpoint is kept: rerun the same command to continue")
                    return 130
            self.log(f"{head}: scoring")
            try:
                self._score(cell)
            except GenlabError as e:
                raise GenlabError(f"cell {cell.name}, scoring: {e}; its training is kept, rerun to score it") from e
            self.write_results()
        self.log(f"{len(self.cells)} cells done; see {self.out / 'results.md'}")
        return 0

    def _train(self, cell: Cell, parser, resume: bool) -> int:
        folder = self.out / cell.name
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / CELL_CONFIG, self.cell_config(cell))
        argv = ["train", self.family, "--config", str(folder / CELL_CONFIG), "--out", str(folder)]
        for key, value in self.data.items():
            if key == "data_opt":
                argv += [a for opt in value for a in ("--data-opt", opt)]
            elif value is not None and key != "dataset":  # the dataset is in the cell's config
                argv += [f"--{key.replace('_', '-')}", str(value)]
        argv += ["--data-dir", self.data_dir] if self.data_dir else []
        torch.manual_seed(cell.train.seed)  # the initial weights depend on the cell's seed only
        try:
            return cli_train.run(parser.parse_args(argv + (["--resume"] if resume else [])))
        except ParamError as e:
            raise GenlabError(f"cell {cell.name}: {self._where(e, cell)}; finished cells are kept") from e
        except GenlabError as e:
            raise GenlabError(f"cell {cell.name}: {e}; finished cells are kept") from e

    def _score(self, cell: Cell) -> None:
        """Training facts from loss.csv, the family's own metrics and FID through `genlab eval`."""
        folder, s, start, metrics = self.out / cell.name, self.scoring, time.time(), {}
        if self.own:
            metrics.update(_eval(folder, "model", s.eval_n, cell.train.device))
        if self.fid:
            metrics.update(_eval(folder, "samples", s.fid_n, cell.train.device, s.classifier))
        row = {"cell": cell.name, "options": cell.options, **train_facts(folder), "metrics": metrics,
               "eval_seconds": time.time() - start, "scoring": dataclasses.asdict(s)}
        _write_json(folder / ROW, row)

    def write_results(self) -> list[Path]:
        found = [self.out / c.name / ROW for c in self.cells]
        return write_results(self, [json.loads(p.read_text()) for p in found if p.exists()])


def _parser(command) -> argparse.ArgumentParser:
    """The parser of one genlab command module (cli.train, cli.eval), as `genlab` builds it."""
    p = argparse.ArgumentParser(prog="genlab")
    command.add_parser(p.add_subparsers(dest="command"))
    return p


def _eval(folder: Path, which: str, n: int, device: str, classifier: str | None = None) -> dict:
    """`genlab eval <folder> --metrics which --n n`: its numbers (the JSON file stays in the run folder)."""
    json_path = folder / f"eval_{which}.json"
    argv = [str(folder), "--metrics", which, "--n", str(n), "--device", device, "--json", str(json_path)]
    argv += ["--classifier", classifier] if classifier else []
    cli_eval.run(_parser(cli_eval).parse_args(["eval", *argv]))
    out = json.loads(json_path.read_text())
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}


def train_facts(folder: Path) -> dict:
    """Steps, training seconds (over every resume) and the final logged value of each loss, from loss.csv."""
    path = folder / "loss.csv"
    rows = list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []
    if not rows:
        raise GenlabError(f"{folder}/loss.csv is empty: the cell logged no step; rerun with --overwrite")
    losses = {}  # a loss a row lacks (a generator updated every n_critic steps): its last logged value
    for r in rows:
        losses.update({k: float(v) for k, v in r.items() if (k == "loss" or k.endswith("_loss")) and v})
    return {"steps": int(rows[-1]["step"]), "train_seconds": float(rows[-1]["seconds"]), "losses": losses}


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


# --- results: results.csv, results.md, one plot per swept option ------------------------------------

def _value(row: dict, name: str):
    return row["losses"].get(name, row["metrics"].get(name))


def _floors(rows: list[dict], metrics: list[str]) -> dict:
    """floor_* metrics that are the same in every row (same data, same n): shown once, not per cell."""
    same = {m: {_value(r, m) for r in rows} for m in metrics if m.startswith("floor_")}
    return {m: v.pop() for m, v in same.items() if len(v) == 1 and None not in v}


def write_results(sweep: Sweep, rows: list[dict]) -> list[Path]:
    """results.csv (every number), results.md (the table, the floors, the plots) and the plots."""
    if not rows:
        return []
    names = [a.name for a in sweep.axes]
    losses, metrics = ([*dict.fromkeys(k for r in rows for k in r[part])] for part in ("losses", "metrics"))
    head = ["cell", *names, "steps", "train_seconds", *losses, *metrics, "eval_seconds"]
    with open(sweep.out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            w.writerow([r["cell"], *(_text(r["options"][n]) for n in names), r["steps"], r["train_seconds"],
                        *(_value(r, k) if _value(r, k) is not None else "" for k in [*losses, *metrics]),
                        r["eval_seconds"]])
    floors = _floors(rows, metrics)
    shown = [m for m in metrics if m not in floors]
    drawn = losses[:1] + _plotted(shown)
    plots = [plot_axis(sweep, a, rows, drawn, floors) for a in sweep.axes if len(a.values) > 1 and drawn]
    table = md_table([*names, "steps", "train time", *(f"final {k}" for k in losses), *shown],
                     [[*(_text(r["options"][n]) for n in names), str(r["steps"]), duration(r["train_seconds"]),
                       *(num(_value(r, k), ".4g") for k in [*losses, *shown])] for r in rows])
    (sweep.out / "results.md").write_text(_report(sweep, rows, table, floors, plots))
    return [sweep.out / n for n in RESULTS] + plots


def _plotted(metrics: list[str]) -> list[str]:
    """The metrics drawn (FID first when there is one): at most three, no spreads or floors."""
    keep = [m for m in metrics if not m.startswith("floor_") and not m.endswith("_std")]
    return sorted(keep, key=lambda m: m != "fid")[:3]


def _report(sweep: Sweep, rows: list[dict], table: str, floors: dict, plots: list[Path]) -> str:
    tc = sweep.cells[0].train
    dataset = sweep.cell_config(sweep.cells[0]).get("dataset") or MODELS[sweep.family].default_dataset
    budget = " and ".join(b for b in (f"{tc.epochs} epoch" + "s" * (tc.epochs != 1),
                                      f"{tc.max_steps} steps" if tc.max_steps else "",
                                      f"{tc.max_minutes:g} min" if tc.max_minutes else "") if b)
    grid = "; ".join(f"{a.name} = {', '.join(map(_text, a.values))}" for a in sweep.axes)
    setup = (f"Swept: {grid}. Base config: `{json.dumps(sweep.base)}`. Each cell trains at most {budget} "
             "(the base config's, unless swept) in its own run folder.")
    how = [f"`genlab eval <cell> --metrics model --n {sweep.scoring.eval_n}`"] if sweep.own else []
    how += [f"`genlab eval <cell> --metrics samples --n {sweep.scoring.fid_n}`"] if sweep.fid else []
    notes = (f"The final loss is the training loss averaged over the steps since the previous log row (at most "
             f"log_every = {tc.log_every}). Metrics: {' and '.join(how) or 'none asked for (--metrics)'}.")
    caveat = ("One seed per cell: a difference between cells smaller than the seed-to-seed spread is noise. "
              "Add `--grid seed=0,1,2` to measure that spread.")
    lines = [f"# Sweep: {sweep.family} on {dataset}", "",
             f"{len(rows)} of {len(sweep.cells)} cells, written {datetime.now():%Y-%m-%d %H:%M} by", "",
             f"    {sweep.command or 'genlab sweep'}", "", setup, "", table, ""]
    if floors:
        lines += ["Floors (what a perfect model scores at the same n; the same for every cell): "
                  + ", ".join(f"{k[6:]} {num(v, '.4g')}" for k, v in floors.items()) + ".", ""]
    lines += [notes, "", caveat, "", *(f"![{p.stem[5:]}]({p.name})" for p in plots)]
    return "\n".join(lines).rstrip() + "\n"


def plot_axis(sweep: Sweep, axis: Axis, rows: list[dict], metrics: list[str], floors: dict) -> Path:
    """Each metric against `axis`'s values: one line per combination of the other swept options."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)
    x_of = {_text(v): (v if numeric else i) for i, v in enumerate(axis.values)}
    groups: dict[str, list[dict]] = {}
    for r in rows:
        key = ", ".join(f"{k}={_text(v)}" for k, v in r["options"].items() if k != axis.name)
        groups.setdefault(key, []).append(r)
    fig, axs = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.2), dpi=120, squeeze=False)
    for ax, m in zip(axs[0], metrics):
        for i, (label, group) in enumerate(groups.items()):
            pts = sorted((x_of[_text(r["options"][axis.name])], _value(r, m)) for r in group
                         if _value(r, m) is not None)
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{i}", label=label or None)
        floor = floors.get(f"floor_{m}")
        if floor is not None:
            ax.axhline(floor, ls="--", color="grey")
        if numeric and min(axis.values) > 0 and max(axis.values) >= 10 * min(axis.values):
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(list(x_of.values()), list(x_of))
        title = f"final {m}" if m in rows[0]["losses"] else m
        ax.set(xlabel=axis.name, title=title + (" (dashed: floor)" if floor is not None else ""))
        ax.grid(alpha=0.3)
    if axs[0][0].get_legend_handles_labels()[0]:
        axs[0][0].legend(fontsize=7)
    return save_figure(fig, sweep.out / f"plot_{axis.name}.png")
