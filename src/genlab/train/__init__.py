"""The one training loop (`train`) and its settings (`TrainConfig`)."""

from .config import TrainConfig  # noqa: F401
from .loop import TrainResult, train  # noqa: F401
