"""The maths of GANs: the losses and penalties (losses.py) and DiffAugment (augment.py).

The networks live in `genlab.nn.gan` and the family (training step, sampling) in `genlab.models.gan`.
"""

from .augment import POLICIES, TRANSFORMS, diff_augment, parse_policy  # noqa: F401
from .losses import (  # noqa: F401
    LOSSES,
    check_loss,
    clip_weights_,
    d_loss,
    feature_matching_loss,
    g_loss,
    gradient_penalty,
    r1_penalty,
)
