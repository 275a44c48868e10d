"""Optional: the standard FID network (Inception-v3, pool3 features, 2048-d).

Papers report FID on the features of the TensorFlow Inception-v3 of Heusel et
al. (2017). genlab can use it through torch-fidelity's faithful port, given
its weights as a local file (genlab never downloads them):

    pip install torch-fidelity            # brings torchvision
    # on a machine with internet, fetch
    #   https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth
    export GENLAB_INCEPTION_WEIGHTS=/path/to/weights-inception-2015-12-05-6726825d.pth
    genlab eval ... --features inception

Inception FIDs on 28-px grey datasets are comparable with other papers' only
loosely (images are upsampled to 299 px and grey is repeated to RGB); the
classifier features are the default for that reason, and because they work
offline.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import GenlabError
from .extractor import FeatureExtractor

WEIGHTS_ENV = "GENLAB_INCEPTION_WEIGHTS"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
HOW_TO = (f"install torch-fidelity (`pip install torch-fidelity`), download {WEIGHTS_URL} on a machine "
          f"with internet, and pass its path with --inception-weights or ${WEIGHTS_ENV}; "
          f"or use the default classifier features (no --features inception)")


def inception_weights_path(path: str | Path | None = None) -> Path:
    """The weights file from the argument or $GENLAB_INCEPTION_WEIGHTS; GenlabError if absent."""
    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise GenlabError(f"standard Inception FID needs its weights as a local file (genlab works offline "
                          f"and never downloads them): {HOW_TO}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(f"Inception weights file {path} does not exist: {HOW_TO}")
    return path


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class InceptionFeatures(FeatureExtractor):
    """2048-d pool3 features of the FID Inception-v3 (any input size; grey is repeated to RGB)."""

    batch_size = 100

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu"):
        path = inception_weights_path(weights)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise GenlabError(f"standard Inception FID needs the optional package torch-fidelity "
                              f"({e}): {HOW_TO}") from None
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=str(path))
        except Exception as e:  # a wrong or corrupt file fails inside torch.load / load_state_dict
            raise GenlabError(f"could not load Inception weights from {path} ({type(e).__name__}: {e}); "
                              f"{HOW_TO}") from None
        self.device = torch.device(device)
        self.net = self.net.to(self.device).eval()
        self.hash = "inception-" + file_hash(path)
        self.name = f"inception-v3[{self.hash[10:18]}]"

    def _forward(self, x):
        # the port takes uint8 RGB and does its own resize to 299 and scaling
        u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        (f,) = self.net(u8.to(self.device))
        return f, None
