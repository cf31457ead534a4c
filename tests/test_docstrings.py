"""Every ``Examples`` section in the package's docstrings runs and prints what it shows."""
import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("mmdkit", "mmdkit.kernels", "mmdkit.gan")  # kernels/ and gan/ are mapped into mmdkit


def _modules():
    names = set(PACKAGES)
    for pkg in PACKAGES:
        path = importlib.import_module(pkg).__path__
        names.update(i.name for i in pkgutil.iter_modules(path, pkg + ".") if not i.name.endswith(".__main__"))
    names.add("mmdkit.gan.__main__")  # its loss_from_settings example
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional extra (triton) missing
        pytest.skip(f"{name}: {e}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
