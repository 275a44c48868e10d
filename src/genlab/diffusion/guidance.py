"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis").

A classifier p_phi(y | x_t, t) trained on noisy images gives the score of the
class-conditional distribution by Bayes' rule,

    grad log p(x_t | y) = grad log p(x_t) + grad log p_phi(y | x_t),

and since eps_theta(x_t) = -sqrt(1 - abar_t) grad log p(x_t), sampling from
p(x_t) p_phi(y | x_t)^s (the classifier term scaled by the gradient scale s)
amounts to using the shifted noise estimate (their Eq. 14 / Algorithm 2)

    eps_hat = eps_theta(x_t) - sqrt(1 - abar_t) s grad_{x_t} log p_phi(y | x_t).

Any sampler (DDPM, DDIM, DPM-Solver++) then runs unchanged on eps_hat.

Classifier-free guidance (Ho & Salimans 2022) needs no extra network: one network trained with
condition dropout (`genlab.nn.conditioning.drop_condition`) is run with and without the
condition and the two outputs are mixed, `classifier_free` below; with several conditions
(InstructPix2Pix's image and text) each gets its own scale.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import GenlabError, ParamError
from ..nn.conditioning import GROUPS, Condition, cat_conditions, groups_of, null_condition
from .gaussian import predict_eps, predict_x0
from .schedules import NoiseSchedule, extract

Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> logits


def classifier_log_prob_grad(classifier: Classifier, x: torch.Tensor, t: torch.Tensor,
                             y: torch.Tensor) -> torch.Tensor:
    """grad_x log p_phi(y | x_t, t), one class per item (works inside torch.no_grad)."""
    with torch.enable_grad():
        x_in = x.detach().float().requires_grad_(True)
        log_p = F.log_softmax(classifier(x_in, t).float(), dim=-1)
        selected = log_p.gather(1, y.view(-1, 1)).sum()  # items are independent: the sum's gradient is per item
        return torch.autograd.grad(selected, x_in)[0]


def eps_from_output(schedule: NoiseSchedule, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor,
                    prediction: str) -> torch.Tensor:
    """The noise estimate implied by a network output (eps, x0 or v)."""
    if prediction == "eps":
        return out
    return predict_eps(schedule, x, t, predict_x0(schedule, x, t, out, prediction))


def output_from_eps(schedule: NoiseSchedule, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                    prediction: str) -> torch.Tensor:
    """A noise estimate re-expressed as what the network predicts (so samplers need not change)."""
    if prediction == "eps":
        return eps
    x0 = predict_x0(schedule, x, t, eps, "eps")
    if prediction == "x0":
        return x0
    ab = extract(schedule.alphas_cumprod, t, x.ndim)
    return ab.sqrt() * eps - (1 - ab).sqrt() * x0  # v (Salimans & Ho 2022, Sec. 4)


def classifier_guidance(model: Callable, classifier: Classifier, schedule: NoiseSchedule, scale: float,
                        prediction: str = "eps") -> Callable:
    """Wrap a denoiser (x_t, t, y) -> output so that its noise estimate is eps_hat of Eq. 14.

    scale: the gradient scale s (0: no guidance; the paper uses 1-10). y is the
    class to steer towards and must be given to every call.
    """
    if scale < 0:
        raise ParamError("classifier_scale", f"must be >= 0, got {scale}")

    def guided(x, t, y=None):
        if y is None:
            raise GenlabError("classifier guidance needs the class to generate: pass labels y")
        out = model(x, t, y).float()
        if scale == 0:
            return out
        # 1. the model's noise estimate eps_theta(x_t)
        eps = eps_from_output(schedule, x, t, out, prediction)
        # 2. the classifier's gradient grad_x log p_phi(y | x_t)
        grad = classifier_log_prob_grad(classifier, x, t, y)
        # 3. eps_hat = eps - sqrt(1 - abar_t) s grad  (Eq. 14 of Dhariwal & Nichol 2021)
        sigma = (1 - extract(schedule.alphas_cumprod, t, x.ndim)).sqrt()
        return output_from_eps(schedule, x, t, eps - sigma * scale * grad, prediction)

    return guided


# ----------------------------------------------------------------------------- classifier-free guidance
def cfg_combine(outs: list, scales: list) -> torch.Tensor:
    """Chained classifier-free guidance: outs[0] with every guided condition null, outs[j] with the
    first j conditions given; returns outs[0] + sum_j s_j (outs[j] - outs[j-1]).

    One condition: uncond + w (cond - uncond) (Ho & Salimans 2022, Eq. 6 with w = 1 + their w).
    Image then text: e(x, 0_I, 0_T) + s_I (e(x, c_I, 0_T) - e(x, 0_I, 0_T))
                                    + s_T (e(x, c_I, c_T) - e(x, c_I, 0_T))  (Brooks et al. 2023, Eq. 3).
    """
    out = outs[0]
    for j, s in enumerate(scales, 1):
        out = out + s * (outs[j] - outs[j - 1])
    return out


def guidance_plan(guidance, y: Condition) -> tuple[list, list]:
    """(groups, scales): which condition groups get a scale, in the order they are added.

    guidance: a float w (all of y's groups together, one scale) or a dict {group: scale} in the
    order of Eq. 3 (e.g. {"image": 1.5, "text": 7.5}); groups of y that it does not name stay given
    in every variant.
    """
    present = groups_of(y)
    if not isinstance(guidance, dict):
        return [present], [float(guidance)]
    missing = [g for g in guidance if g not in present]
    if missing:
        raise GenlabError(f"guidance scales for {', '.join(map(repr, missing))}, but the condition has only "
                          f"{', '.join(map(repr, present)) or 'nothing'}: "
                          f"pass those condition parts or drop the scales")
    return [[g] for g in guidance], [float(s) for s in guidance.values()]


def check_guidance_scales(guidance) -> None:
    """ParamError unless every scale is a finite number >= 0 (and every group known)."""
    scales = guidance if isinstance(guidance, dict) else {None: guidance}
    for name, s in scales.items():
        if isinstance(guidance, dict) and name not in GROUPS:
            raise GenlabError(f"unknown guidance group {name!r}; choose among {', '.join(GROUPS)}")
        if not 0 <= s < math.inf:  # also NaN / inf
            raise ParamError("guidance" if name is None else f"guidance[{name!r}]",
                             f"must be a number >= 0 (0: unconditional, 1: conditional), got {s}")


def is_plain(guidance) -> bool:
    """Every scale 1: the guided output is the conditional output (one network call)."""
    return all(s == 1.0 for s in (guidance.values() if isinstance(guidance, dict) else [guidance]))


def classifier_free(net: Callable, guidance, num_classes: int = 0) -> Callable:
    """Wrap a network (x_t, t, y) -> output with classifier-free guidance.

    guidance: one scale w, or {group: scale} for several conditions (see guidance_plan and
    cfg_combine). The variants run as one batched call, the most conditioned first; scale 1
    everywhere is one plain conditional call, a single scale 0 one unconditional call.
    num_classes: the null label of a "class" part.
    """

    def fn(x, t, y=None):
        if y is None or is_plain(guidance):
            return net(x, t, y)
        groups, scales = guidance_plan(guidance, y)
        if len(groups) == 1 and scales[0] == 0.0:
            return net(x, t, null_condition(y, num_classes, groups[0]))
        # variant j: the first j groups given, the rest null; stacked from j = k down to 0
        k = len(groups)
        variants = [null_condition(y, num_classes, [g for gs in groups[j:] for g in gs]) for j in range(k, -1, -1)]
        outs = net(torch.cat([x] * (k + 1)), torch.cat([t] * (k + 1)), cat_conditions(variants)).chunk(k + 1)
        return cfg_combine(outs[::-1], scales)

    return fn
