"""What a feature network is to the metrics: images in [-1, 1] -> features (and logits), as numpy.

The base class of the classifier features (features.py) and Inception-v3 (inception.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError
from ..pixels import to_float_image, to_uint8_image


class FeatureExtractor:
    """Images in [-1, 1] -> (features (N, d) float32, logits (N, K) or None), as numpy.

    `name` says which network (shown beside every metric); `hash` identifies
    its weights (keys the cache); `channels`/`image_size` are the input shape
    it takes (None: any).
    """

    name: str = ""
    hash: str = ""
    channels: int | None = None
    image_size: int | None = None
    batch_size: int = 500

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def check_shape(self, images: torch.Tensor) -> None:
        if images.ndim != 4:
            raise GenlabError(f"expected images of shape N,C,H,W, got {tuple(images.shape)}")
        c, h, w = images.shape[1:]
        if (self.channels is not None and c != self.channels) or \
                (self.image_size is not None and (h, w) != (self.image_size, self.image_size)):
            raise GenlabError(f"images are {c}x{h}x{w} but the feature network {self.name} takes "
                              f"{self.channels}x{self.image_size}x{self.image_size}; evaluate with a classifier "
                              f"trained at the samples' size (`genlab train classifier --image-size {h} "
                              f"--channels {c} ...`)")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        self.check_shape(images)
        feats, logits = [], []
        for i in range(0, len(images), self.batch_size):
            # round to 8-bit pixels, as real data is: a generated image and its saved PNG score the same
            x = to_float_image(to_uint8_image(images[i : i + self.batch_size]))
            f, lg = self._forward(x)
            feats.append(f.float().cpu().numpy())
            if lg is not None:
                logits.append(lg.float().cpu().numpy())
        d = feats[0].shape[1] if feats else 0
        return (np.concatenate(feats) if feats else np.zeros((0, d), np.float32),
                np.concatenate(logits) if logits else None)
