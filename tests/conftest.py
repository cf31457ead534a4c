"""Test configuration. TRITON_INTERPRET=1 must be set before anything imports
the Triton kernels (the flag is read when @triton.jit decorates), so it is
set here, at collection, before the test modules import mmdkit."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("default", max_examples=25, deadline=None)
settings.load_profile("default")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gen():
    """An explicit, seeded generator (tests never touch the global seed)."""
    return torch.Generator().manual_seed(1234)
