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


# ----------------------------------------------------------------------------- error model (STYLE item 7)
# One model for every float comparison in tests/: a result computed in `dtype` from `terms` rounded terms
# is within  2 u sqrt(terms) x conditioning  of the exact (float64) answer, relatively, where
# - u is the unit roundoff of the dtype the engine computes in (float32 2^-24 ~ 6.0e-8, float64 2^-53);
# - sqrt(terms): the rounding errors of a sum (and of each term's own few roundings) are independent,
#   a random walk: steps of at most u (standard deviation u / sqrt(3)), so 2 u sqrt(terms) is 3.5 standard
#   deviations. Summation order (blocked tiles, worker threads, BLAS kernel selection, vector width) moves
#   the error inside this walk; it never makes it grow faster. walk=False gives the worst case u x terms;
# - conditioning = sqrt(sum (partial result_i)^2) / |result| over the independently rounded parts (1 for
#   sums of positive terms; large for an MMD^2 near 0, whose parts cancel).
UNIT_ROUNDOFF = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24,
                 torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def budget(dtype, terms=1, conditioning=1.0, walk=True):
    """Relative error budget of a `dtype` computation over `terms` rounded terms (model above)."""
    u = UNIT_ROUNDOFF[dtype]
    return (2.0 * u * terms ** 0.5 if walk else u * terms) * conditioning


def within_budget(err, dtype, terms=1, conditioning=1.0, plain=None, factor=2.0):
    """err is within the model's budget, or within `factor` x plain torch's error at the same precision
    (STYLE item 7) where that is larger: a plain result that happens to round luckily sets no budget."""
    allowed = budget(dtype, terms, conditioning)
    if plain is not None and plain == plain and plain != float("inf"):
        allowed = max(allowed, factor * plain)
    return err <= allowed


@pytest.fixture(name="budget")
def _budget_fixture():
    """The error model's `budget(dtype, terms, conditioning, walk)` (tests/ is not importable)."""
    return budget


@pytest.fixture(name="within_budget")
def _within_budget_fixture():
    """The error model's `within_budget(err, dtype, terms, conditioning, plain, factor)`."""
    return within_budget
