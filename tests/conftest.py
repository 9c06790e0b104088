import os
from pathlib import Path

import pytest
import torch

# The Triton kernel tests run on CPU tensors through Triton's interpreter when there is no GPU.
# Triton reads this when a kernel is defined, so it is set before anything imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from streamlift.paths import shared_data_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared mocap data not found (../shared/data beside the checkout, or set "
                    "STREAMLIFT_SHARED_DATA); the shipped CMU sample covers the always-run tests")
    return d


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("PYTHONHASHSEED", "0")
