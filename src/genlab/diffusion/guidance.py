"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis").

A classifier p_phi(y | x_t, t) trained on noisy images gives the score of the
class-conditional distribution by Bayes' rule,

    grad log p(x_t | y) = grad log p(x_t) + grad log p_phi(y | x_t),

and since eps_theta(x_t) = -sqrt(1 - abar_t) grad log p(x_t), sampling from
p(x_t) p_phi(y | x_t)^s (the classifier term scaled by the gradient scale s)
amounts to using the shifted noise estimate (their Eq. 14 / Algorithm 2)

    eps_hat = eps_theta(x_t) - sqrt(1 - abar_t) s grad_{x_t} log p_phi(y | x_t).

Any sampler (DDPM, DDIM, DPM-Solver++) then runs unchanged on eps_hat.
Classifier-free guidance needs no extra network: see DiffusionModel.denoiser.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import GenlabError
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
        raise GenlabError(f"--classifier-scale must be >= 0, got {scale}")

    def guided(x, t, y=None):
        if y is None:
            raise GenlabError("classifier guidance needs the class to generate: pass --class (or labels y)")
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
