"""The command line: good files in every format give the library's numbers;
malformed files stop with exit status 2 and a message naming the file and the
problem; plots are written; ``python -m mmdkit`` and the console script run."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmdkit import energy_test, mmd_test
from mmdkit.cli import load_sample, main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def pair(tmp_path):
    """X (40 x 2) as .npy and Y (30 x 2, shifted) as .csv with a header row."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 2)), rng.normal(size=(30, 2)) + [1.0, 0.0]
    a, b = tmp_path / "a.npy", tmp_path / "b.csv"
    np.save(a, X)
    np.savetxt(b, Y, delimiter=",", header="x,y", comments="", fmt="%.17g")
    return X, Y, str(a), str(b)


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mmd_test_json_matches_the_library(pair, capsys):
    X, Y, a, b = pair
    out = run_json(capsys, ["test", a, b, "--seed", "3", "--permutations", "200", "--bandwidth", "1.5"])
    ref = mmd_test(X, Y, bandwidth=1.5, n_permutations=200, seed=3)
    assert out["statistic"] == ref.statistic and out["pvalue"] == ref.pvalue
    assert (out["n"], out["m"], out["d"], out["test"], out["kernel"]) == (40, 30, 2, "mmd", "gaussian")
    assert out["bandwidth"] == 1.5 and out["n_permutations"] == 200 and out["exact"] is False


def test_energy_and_aggregate(pair, capsys):
    X, Y, a, b = pair
    out = run_json(capsys, ["test", a, b, "--test", "energy", "--seed", "1", "--permutations", "100"])
    assert out["pvalue"] == energy_test(X, Y, n_permutations=100, seed=1).pvalue and out["test"] == "energy"
    out = run_json(capsys, ["test", a, b, "--aggregate", "--bandwidth", "0.5,1,2", "--seed", "1",
                            "--permutations", "100", "--alpha", "0.1"])
    ref = mmd_test(X, Y, bandwidth=[0.5, 1.0, 2.0], aggregate=True, n_permutations=100, seed=1, alpha=0.1)
    assert out["reject"] == ref.reject and out["pvalue"] == ref.pvalue and out["alpha"] == 0.1
    assert [b["bandwidth"] for b in out["per_bandwidth"]] == [0.5, 1.0, 2.0]


def test_fuse_json_text_and_plot_match_the_library(pair, capsys, tmp_path):
    from mmdkit import fuse_test
    X, Y, a, b = pair
    out = run_json(capsys, ["test", a, b, "--test", "fuse", "--seed", "2", "--permutations", "100"])
    ref = fuse_test(X, Y, n_permutations=100, seed=2)
    assert out["test"] == "fuse" and out["statistic"] == ref.statistic and out["pvalue"] == ref.pvalue
    assert out["reject"] == ref.reject and out["kernel"] == "gaussian (l2), laplace (l1)"
    assert len(out["bandwidth"]) == 20 and "per_bandwidth" not in out
    png = tmp_path / "fuse.png"
    assert main(["test", a, b, "--test", "fuse", "--seed", "2", "--permutations", "50", "--plot", str(png)]) == 0
    assert "MMD-FUSE" in capsys.readouterr().out and png.read_bytes()[:8] == PNG
    assert main(["test", a, b, "--test", "fuse", "--kernel", "laplace"]) == 2
    assert main(["test", a, b, "--test", "fuse", "--alternative", "less"]) == 2


def test_cross_mmd_json_text_and_plot_match_the_library(pair, capsys, tmp_path):
    from mmdkit import cross_mmd_test
    X, Y, a, b = pair
    out = run_json(capsys, ["test", a, b, "--test", "cross", "--seed", "4", "--bandwidth", "1.2"])
    ref = cross_mmd_test(X, Y, bandwidth=1.2, seed=4)
    assert out["test"] == "cross_mmd" and out["statistic"] == ref.statistic and out["pvalue"] == ref.pvalue
    assert out["n_permutations"] == 0 and out["bandwidth"] == 1.2
    png = tmp_path / "cross.png"
    assert main(["test", a, b, "--test", "cross", "--seed", "4", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "cross-MMD" in text and "standard normal" in text and png.read_bytes()[:8] == PNG
    assert main(["test", a, b, "--test", "cross", "--aggregate"]) == 2


def test_text_output_and_plot(pair, capsys, tmp_path):
    X, Y, a, b = pair
    png = tmp_path / "out.png"
    assert main(["test", a, b, "--seed", "0", "--permutations", "100", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "p-value" in text and "statistic" in text and str(png) in text
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000


def test_plot_for_higher_dimensional_data_has_no_witness(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savetxt(tmp_path / "a.txt", rng.normal(size=(20, 3)))
    np.savetxt(tmp_path / "b.txt", rng.normal(size=(25, 3)))
    png = tmp_path / "null.png"
    assert main(["test", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "--seed", "0",
                 "--permutations", "50", "--plot", str(png), "--aggregate"]) == 0
    assert png.read_bytes()[:8] == PNG


def test_witness_command(pair, tmp_path, capsys):
    _, _, a, b = pair
    png = tmp_path / "w.png"
    assert main(["witness", a, b, "--plot", str(png), "--grid", "40"]) == 0
    assert png.read_bytes()[:8] == PNG


def test_text_formats(tmp_path):
    """csv with and without header, whitespace and comma .txt, 1-D .npy, comments and blank lines."""
    data = np.array([[1.5, -2.0], [3.25, 4.0], [0.0, 1e-3]])
    (tmp_path / "h.csv").write_text("a, b\n1.5, -2\n3.25,4\n0,0.001\n")
    (tmp_path / "n.csv").write_text("1.5,-2\n\n3.25,4\n0,1e-3\n")
    (tmp_path / "w.txt").write_text("# comment\n1.5 -2\n3.25\t4\n0 0.001\n")
    (tmp_path / "c.txt").write_text("1.5,-2\n3.25,4\n0,0.001\n")
    for name in ("h.csv", "n.csv", "w.txt", "c.txt"):
        np.testing.assert_array_equal(load_sample(tmp_path / name), data, err_msg=name)
    np.save(tmp_path / "v.npy", np.arange(4))
    np.testing.assert_array_equal(load_sample(tmp_path / "v.npy"), np.arange(4.0)[:, None])


BAD_FILES = [  # (file name, contents (str for text, array for .npy), words the message must hold)
    pytest.param("rag.csv", "1,2\n3,4\n5\n", ["rag.csv", "line 3", "ragged"], id="ragged"),
    pytest.param("word.csv", "1,2\n3,four\n", ["word.csv", "line 2", "column 2", "'four'"], id="non-numeric"),
    pytest.param("gap.csv", "1,2\n3,\n", ["gap.csv", "line 2", "empty cell"], id="empty-cell"),
    pytest.param("nan.txt", "1 2\n3 nan\n", ["nan.txt", "line 2", "column 2", "NaN"], id="nan-text"),
    pytest.param("inf.csv", "1,inf\n3,4\n", ["inf.csv", "line 1", "infinite"], id="inf"),
    pytest.param("nan.npy", np.array([[1.0, np.nan], [2.0, 3.0]]), ["nan.npy", "row 1", "NaN"], id="nan-npy"),
    pytest.param("obj.npy", np.array([{"a": 1}, None], dtype=object), ["obj.npy", "pickle"], id="object-npy"),
    pytest.param("cube.npy", np.zeros((2, 2, 2)), ["cube.npy", "2-D"], id="3d-npy"),
    pytest.param("empty.csv", "", ["empty.csv", "no data"], id="empty-file"),
    pytest.param("header.csv", "x,y\n", ["header.csv", "no data rows"], id="header-only"),
    pytest.param("bytes.npy", "not an npy file", ["bytes.npy", ".npy"], id="corrupt-npy"),
    pytest.param("data.json", "[1, 2]", ["data.json", "unsupported"], id="extension"),
]


@pytest.mark.parametrize("name, content, words", BAD_FILES)
def test_malformed_files(tmp_path, capsys, pair, name, content, words):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content, allow_pickle=True)
    assert main(["test", pair[2], str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmdkit: error:")
    for word in words:
        assert word in err, (word, err)


def test_missing_file_and_mismatched_columns(tmp_path, capsys, pair):
    assert main(["test", pair[2], str(tmp_path / "nope.npy")]) == 2
    assert "nope.npy: no such file" in capsys.readouterr().err
    np.save(tmp_path / "three.npy", np.zeros((5, 3)))
    assert main(["test", pair[2], str(tmp_path / "three.npy")]) == 2
    err = capsys.readouterr().err
    assert "a.npy has 2 column(s)" in err and "three.npy has 3" in err
    assert main(["witness", pair[2], str(tmp_path / "three.npy"), "--plot", str(tmp_path / "w.png")]) == 2


def test_library_errors_become_exit_status_2(pair, capsys):
    _, _, a, b = pair
    assert main(["test", a, b, "--bandwidth", "-1"]) == 2
    assert "bandwidth" in capsys.readouterr().err
    assert main(["test", a, b, "--permutations", "0"]) == 2
    assert "n_permutations" in capsys.readouterr().err
    assert main(["test", a, b, "--test", "energy", "--aggregate"]) == 2
    assert "--test mmd" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse rejects a malformed --bandwidth itself
        main(["test", a, b, "--bandwidth", "wide"])
    assert e.value.code == 2


def test_python_dash_m(pair):
    _, _, a, b = pair
    # cwd away from the repository root: `python -m` puts the cwd first on sys.path,
    # and the source folder mmdkit/ is not the installed package (kernels/ and gan/ are mapped)
    proc = subprocess.run([sys.executable, "-m", "mmdkit", "test", a, b, "--permutations", "20", "--seed", "0",
                           "--json"], capture_output=True, text=True, timeout=300, cwd=Path(a).parent)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_permutations"] == 20


def test_console_script(pair):
    exe = shutil.which("mmdkit", path=str(Path(sys.executable).parent)) or shutil.which("mmdkit")
    if exe is None:
        pytest.skip("console script not installed")
    bad = subprocess.run([exe, "test", pair[2], "missing.csv"], capture_output=True, text=True, timeout=300,
                         cwd=Path(pair[2]).parent)
    assert bad.returncode == 2 and "missing.csv: no such file" in bad.stderr


# ----------------------------------------------------------------------------- mmdkit kid

def test_kid_json_matches_the_library(pair, capsys):
    from mmdkit import kid
    X, Y, a, b = pair  # a.npy (memory-mapped by the command) and b.csv
    out = run_json(capsys, ["kid", a, b, "--subsets", "5", "--subset-size", "20", "--seed", "3"])
    ref = kid(X, Y, subsets=5, subset_size=20, seed=3)
    assert out["value"] == ref.value and out["std"] == ref.std
    assert (out["method"], out["subsets"], out["subset_size"], out["ddof"], out["seed"]) == ("subsets", 5, 20, 0, 3)
    assert (out["n"], out["m"], out["d"], out["kernel"]["degree"], out["kernel"]["gamma"]) == (40, 30, 2, 3, 0.5)
    out = run_json(capsys, ["kid", a, b, "--exact"])
    ref = kid(X, Y, subsets=None)
    assert out["value"] == ref.value and out["std"] == ref.std and out["method"] == "exact"
    assert out["subsets"] is None and out["ddof"] is None


def test_kid_text_output(pair, capsys):
    _, _, a, b = pair
    assert main(["kid", a, b, "--subsets", "3", "--subset-size", "10", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    assert "KID = " in text and "3 subsets of 10 points" in text and "ddof 0" in text and "n = 40, m = 30" in text
    assert main(["kid", a, b, "--exact"]) == 0
    assert "standard error" in capsys.readouterr().out


def test_kid_errors_name_the_file_or_the_option(pair, tmp_path, capsys):
    _, _, a, b = pair
    assert main(["kid", a, b]) == 2  # default --subset-size 1000 > 30 points
    err = capsys.readouterr().err
    assert "`subset_size`=1000 exceeds the 40 points of" in err and "a.npy" in err
    bad = np.zeros((10, 2))
    bad[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["kid", a, str(tmp_path / "nan.npy"), "--exact"]) == 2
    assert "nan.npy` contains 1 NaN" in capsys.readouterr().err
    np.save(tmp_path / "three.npy", np.zeros((5, 3)))
    assert main(["kid", a, str(tmp_path / "three.npy"), "--exact"]) == 2
    assert "three.npy has 3" in capsys.readouterr().err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert main(["kid", a, str(tmp_path / "obj.npy")]) == 2
    assert "obj.npy: cannot be read" in capsys.readouterr().err
    assert main(["kid", a, str(tmp_path / "missing.npy")]) == 2
    assert "missing.npy: no such file" in capsys.readouterr().err
    assert main(["kid", a, b, "--subsets", "0", "--subset-size", "10"]) == 2
    assert "`subsets` must be at least 1" in capsys.readouterr().err
