"""Test setup shared by every test file: real data from the shared folder, no network.

GENLAB_DATA_DIR defaults to <repo>/../shared/datasets (the offline copies of
MNIST, Fashion-MNIST, CIFAR-10 JPEGs, words); GENLAB_OFFLINE=1 makes any
download attempt fail fast with a DataError; GENLAB_CACHE and GENLAB_HOME point at
fresh folders per session so nothing in ~/.cache changes what the tests see.
"""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GENLAB_DATA_DIR", str(REPO.parent / "shared" / "datasets"))
os.environ["GENLAB_OFFLINE"] = "1"
# The tests train tiny networks: a second thread buys nothing, and on a busy CPU OpenMP's thread
# barriers make them many times slower. Exact-resume tests also need one fixed thread count.
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """For tests that change the thread count themselves: one thread, restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    os.environ["GENLAB_CACHE"] = str(tmp_path_factory.mktemp("genlab-cache"))
    # trained feature classifiers and feature stats live under GENLAB_HOME: a user's own
    # (or a previous run's) must not change what the tests see
    os.environ["GENLAB_HOME"] = str(tmp_path_factory.mktemp("genlab-home"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared datasets folder (GENLAB_DATA_DIR)."""
    path = Path(os.environ["GENLAB_DATA_DIR"])
    if not path.is_dir():
        pytest.skip(f"shared datasets folder {path} not present (set GENLAB_DATA_DIR)")
    return path
