"""A small CNN image classifier, built from scratch, and what it is made of.

Images as tensors
-----------------
An image is a tensor of shape (C, H, W): C channels (1 for grey, 3 for RGB),
H rows and W columns of pixels. genlab stores pixels as uint8 and feeds
networks floats in [-1, 1]. A batch adds a leading dimension: (N, C, H, W).

Convolution
-----------
A 2-D convolution layer holds C_out filters, each of shape (C_in, k, k). Each
filter slides over the input; at every position the output pixel is the dot
product of the filter with the k x k patch under it (across all C_in
channels) plus a bias:

    y[o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[c, s*i + u - p, s*j + v - p]

Two ideas make this the right layer for images. Locality: an output pixel
depends only on a small neighbourhood. Weight sharing: the same filter is used
at every position, so a 3x3 edge detector costs 9 * C_in weights whatever the
image size, and it finds edges anywhere in the image.

Padding (p) adds p rows/columns of zeros around the input so that filters can
be centred on border pixels. Stride (s) is the step of the slide: s = 2 skips
every other position and halves the resolution. The output size is

    H_out = floor((H + 2p - k) / s) + 1

so a 3x3 convolution with p = 1, s = 1 keeps the size ("same" padding), which
is what every convolution below uses.

Pooling
-------
Max pooling with a 2x2 window and stride 2 keeps the largest value of each
2x2 block: no weights, half the resolution, and a little tolerance to small
shifts. Halving the resolution doubles the receptive field of every layer
after it (the patch of the input an output pixel can see), which is how a
stack of small 3x3 filters comes to see the whole image.

The network
-----------
Stages of [conv3x3 -> BatchNorm -> ReLU] x 2, with a 2x2 max-pool between
stages, doubling the width as the resolution halves (keeping the cost per
stage about constant). Pooling stops once the map is at most 8 px; the map is
then flattened and a fully connected layer takes it to `feature_dim` (the
penultimate features, used by genlab.metrics for FID/KID), followed by
dropout and the final linear layer to class logits. For 28 px input and
width w:

    (C, 28, 28) -conv,conv-> (w, 28, 28) -pool-> (w, 14, 14)
                -conv,conv-> (2w, 14, 14) -pool-> (2w, 7, 7)
                -conv,conv-> (4w, 7, 7) -flatten-> (4w * 49,)
                -linear, ReLU-> (feature_dim,) -dropout, linear-> (num_classes,)

Flattening (rather than averaging the map over positions) lets the fully
connected layer use *where* a pattern is, not only whether it is there: on
small, centred images like Fashion-MNIST that makes learning much faster.

BatchNorm normalises each channel over the batch, which lets us train fast
with a large learning rate; in eval mode it uses running statistics, so the
features of an image do not depend on what else is in its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 convolution, 'same' padding (p = 1, s = 1), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int):
        # no conv bias: BatchNorm's shift makes it redundant
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def num_stages(image_size: int) -> int:
    """Stages needed so that pooling brings the map down to at most 8 px."""
    return len(stage_sizes(image_size))


def stage_sizes(image_size: int) -> list[int]:
    """Map size in each stage: 28 -> [28, 14, 7], 64 -> [64, 32, 16, 8]."""
    sizes = [image_size]
    while sizes[-1] > 8:
        sizes.append(sizes[-1] // 2)  # 2x2 max-pool, stride 2: floor(H / 2)
    return sizes


class CNNClassifier(nn.Module):
    """VGG-style CNN: see the module docstring for the shapes.

    `features(x)` gives the penultimate activations (N, feature_dim);
    `forward(x)` gives class logits (N, num_classes).
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 width: int = 16, feature_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        sizes = stage_sizes(image_size)
        stages = len(sizes)
        for s in range(stages):
            cout = width * 2**s
            layers += [ConvBNReLU(cin, cout), ConvBNReLU(cout, cout)]
            if s < stages - 1:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin * sizes[-1] ** 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim): after the ReLU, before dropout."""
        return F.relu(self.fc(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))
