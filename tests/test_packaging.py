"""The wheel ships mmdkit, mmdkit.kernels and mmdkit.gan, every source file of
the three folders, and no top-level `kernels` or `gan` package."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"mmdkit": "mmdkit", "kernels": "mmdkit/kernels", "gan": "mmdkit/gan"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    (whl,) = out.glob("mmdkit-*.whl")
    return set(zipfile.ZipFile(whl).namelist())


def test_wheel_has_no_top_level_kernels_or_gan(wheel_files):
    tops = {f.split("/")[0] for f in wheel_files}
    assert "kernels" not in tops and "gan" not in tops
    assert "mmdkit" in tops


@pytest.mark.parametrize("folder", list(MAPPING))
def test_wheel_holds_every_source_file(wheel_files, folder):
    src = {p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*.py")
           if "__pycache__" not in p.parts}
    assert src, folder
    shipped = {f[len(MAPPING[folder]) + 1:] for f in wheel_files if f.startswith(MAPPING[folder] + "/")}
    assert src <= shipped, f"missing from the wheel: {sorted(src - shipped)}"


def test_mapped_packages_refuse_other_names():
    for name in ("kernels", "gan"):
        code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location("
                f"'{name}', r'{ROOT / name / '__init__.py'}'); m = importlib.util.module_from_spec(spec); "
                f"spec.loader.exec_module(m)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode != 0 and "must be imported as mmdkit." in r.stderr
