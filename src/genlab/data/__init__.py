"""Datasets as in-memory tensors, by name.

    from genlab.data import load_dataset, list_datasets, BatchLoader
    data = load_dataset("fashion_mnist", split="train", image_size=32)   # uint8 N,1,32,32
    data = load_dataset("shapes", image_size=64, n=5000)                  # procedural, with captions
    data = load_dataset("image_folder", path="my_pictures.zip", image_size=64)
    data = load_dataset("toy2d", shape="moons")                           # float32 N,2

Built-in: mnist, fashion_mnist, cifar10 (official files, checksummed,
downloaded to $GENLAB_CACHE or ~/.cache/genlab/data unless GENLAB_OFFLINE=1;
local copies found via data_dir / $GENLAB_DATA_DIR), image_folder, shapes,
toy2d. Other modules add theirs with `register_dataset`.
"""

# importing a dataset module registers its datasets
from . import cifar, idx, image_folder, shapes, toy2d, words  # noqa: F401,E402
from .base import BatchLoader, TensorDataset, to_float_image, to_uint8_image  # noqa: F401
from .registry import (DATASETS, convert_channels, format_datasets_table, list_datasets,  # noqa: F401
                       load_dataset, register_dataset, resize_images)
