"""The equal-budget tuning harness (issue 15, items 2 and 4): search-space draws, cached trials,
the selection rule and the leading table, with the training call replaced by a fake."""
import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest

from mmdkit.gan import bench, tuning
from mmdkit.gan.losses import LOSSES, get_loss


def _get(loss, key):
    """A setting of ``loss``; "a.b" is field b of the nested setting a."""
    field, _, sub = key.partition(".")
    v = getattr(loss, field)
    return getattr(v, sub) if sub else v


# ------------------------------------------------------------------ the space and its draws

@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_a_space_and_its_draws_build_that_loss(name):
    assert name in tuning.LOSS_SPACES
    space = tuning.space_of(name)
    default = get_loss(name)
    assert ("lr_c" in space) == ("packing" in space) == ("n_critic" in space) == (default.critic_type != "none")
    assert ("betas" in space) == (default.optimizer == "adam")
    for t in range(4):
        config = tuning.draw(name, t)
        assert list(config) == list(space)
        settings = {k: v for k, v in config.items() if k != "packing"}
        loss = tuning.configured_loss(name, settings)
        for key, value in settings.items():  # the drawn value is what the loss runs with
            assert _get(loss, key) == value, key
        for key, (kind, *args) in space.items():
            v = config[key]
            if kind == "choice":
                assert v in args[0]
            else:
                lo, hi = args
                x = -v if kind == "neg-log-uniform" else v
                assert lo * (1 - 5e-3) <= x <= hi * (1 + 5e-3), (key, v)  # 3 significant digits
        assert loss.batch_size % config.get("packing", 1) == 0


def test_draws_are_reproducible_and_independent_of_order():
    names = sorted(LOSSES)
    forward = {(n, t): tuning.draw(n, t) for n in names for t in range(6)}
    backward = {(n, t): tuning.draw(n, t) for n in reversed(names) for t in reversed(range(6))}
    assert forward == backward
    assert len({json.dumps(c, sort_keys=True) for c in forward.values()}) == len(forward)  # trials differ
    # same space, different loss names: different draws (the seed includes the loss)
    assert tuning.draw("gan", 0) != tuning.draw("ns-gan", 0)
    with pytest.raises(ValueError, match="`trial`"):
        tuning.draw("gan", -1)
    with pytest.raises(ValueError, match="`loss`"):
        tuning.draw("no-such-gan", 0)


def test_log_uniform_draws_are_uniform_in_the_log():
    lo, hi = tuning.COMMON_SPACE["lr_g"][1:]
    logs = [math.log10(tuning.draw("lsgan", t)["lr_g"]) for t in range(300)]
    # uniform on [-5, -2]: mean -3.5, sd 3 / sqrt(12); 4 standard errors
    se = 3 / math.sqrt(12) / math.sqrt(len(logs))
    assert abs(statistics.mean(logs) - (math.log10(lo) + math.log10(hi)) / 2) < 4 * se
    assert abs(statistics.stdev(logs) - 3 / math.sqrt(12)) < 0.1
    counts = [sum(tuning.draw("lsgan", t)["n_critic"] == k for t in range(300)) for k in (1, 2, 5)]
    assert all(abs(c - 100) < 4 * math.sqrt(300 * (1 / 3) * (2 / 3)) for c in counts)


def test_as_set_args_round_trips_through_the_cli_parser():
    import shlex

    from mmdkit.gan.__main__ import loss_from_settings
    for name, t in (("mmd-gan", 0), ("gmmn", 2), ("rwgan", 1), ("wgan", 3)):
        config = tuning.draw(name, t)
        words = shlex.split(tuning.as_set_args(config))
        pairs = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        packing = int(words[words.index("--packing") + 1]) if "--packing" in words else 1
        assert packing == config.get("packing", 1)
        settings = {k: v for k, v in config.items() if k != "packing"}
        assert loss_from_settings(name, pairs) == tuning.configured_loss(name, settings)


# ------------------------------------------------------------------ selection

def _rec(trial, modes, hq, rkl, error=None):
    return {"trial": trial, "error": error,
            "metrics": {"modes_covered": modes, "high_quality": hq, "reverse_kl": rkl}}


@pytest.mark.parametrize("records, best", [
    # a diffuse blob (uniform on [-5, 5]^2 scores 22 modes at 2.2 %, reverse KL 0.26) against a sharp
    # generator on 20 modes (99.3 %, 0.23): modes first would take the blob
    ([_rec(0, 22, 0.022, 0.26), _rec(1, 20, 0.993, 0.23)], 1),
    ([_rec(0, 25, 0.02, 0.3), _rec(1, 1, 1.0, 0.0)], 1),                         # 25 x 0.02 < 1 x 1.0
    ([_rec(0, 24, 0.99, 0.01), _rec(1, 25, 0.10, 0.5)], 0),                      # the product, not modes alone
    ([_rec(0, 20, 0.50, 0.01), _rec(1, 25, 0.40, 0.5)], 1),                      # equal product: more modes
    ([_rec(0, 25, 0.60, 0.05), _rec(1, 25, 0.60, 0.02), _rec(2, 25, 0.6, 0.03)], 1),  # then reverse KL
    ([_rec(0, 3, 0.2, 0.1), _rec(1, 3, 0.2, 0.1)], 0),                           # then the lowest index
    ([_rec(0, 3, 0.2, 0.1), _rec("prior", 3, 0.2, 0.1)], "prior"),               # a tie keeps the prior
    ([_rec("prior", 3, 0.2, 0.1), _rec(4, 3, 0.2, 0.09)], 4),                    # a better trial replaces it
    ([_rec(0, 0, 0.0, "inf"), _rec(1, 0, 0.0, float("nan")), _rec(2, 1, 0.0, 3.2)], 2),  # inf/nan from JSON
    ([_rec(0, 0, 0.0, "inf"), _rec(1, 0, 0.0, 2.0)], 1),
    ([_rec(0, 0, 0.0, "inf", error="ValueError: X contains NaN"), _rec(1, 0, 0.0, "inf")], 1),  # a run over a failure
], ids=["blob", "collapse-vs-blob", "product", "product-tie-modes", "reverse-kl", "tie-lowest-trial", "tie-prior",
        "beats-prior", "inf-nan",
        "finite-beats-inf", "failed-last"])
def test_selection_rule(records, best):
    assert tuning.select(records)["trial"] == best


def test_selection_rule_on_the_metrics_of_a_blob_and_of_sharp_modes():
    """The blob case above, measured: the trainer's mode statistics of a uniform spread and of 20 sharp modes."""
    import torch

    from mmdkit.gan.data import get_dataset
    from mmdkit.gan.metrics import mode_statistics
    toy = get_dataset("grid25")
    g = torch.Generator().manual_seed(0)
    blob = torch.rand(2500, 2, generator=g) * 10 - 5
    sharp = toy.modes[torch.arange(2500) % 20] + toy.std * torch.randn(2500, 2, generator=g)
    records = [{"trial": t, "error": None, "metrics": mode_statistics(x, toy)} for t, x in enumerate((blob, sharp))]
    assert records[0]["metrics"]["modes_covered"] > records[1]["metrics"]["modes_covered"] == 20
    assert records[0]["metrics"]["high_quality"] < 0.05 < 0.95 < records[1]["metrics"]["high_quality"]
    assert tuning.select(records)["trial"] == 1


# ------------------------------------------------------------------ cached runs with a fake trainer

class FakeTrain:
    """Stands in for mmdkit.gan.trainer.train: metrics from the configuration, calls recorded."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, loss, data, steps, seed, progress, eval_samples, packing, return_samples):
        import torch
        self.calls.append((loss.name, data, seed, loss.lr_g, packing))
        if self.fail_on is not None and loss.lr_g == self.fail_on:
            raise RuntimeError("diverged")
        modes = int(loss.lr_g * 1e5) % 26 if data == "grid25" else int(loss.lr_g * 1e5) % 9
        return {"modes_covered": modes, "high_quality": (seed + 1) / 10, "reverse_kl": float("inf") if seed else 0.1,
                "mmd2_heldout": 0.5, "cpu_seconds": 10.0 + seed, "seconds": 1.0, "steps": steps,
                "settings": loss.settings(), "loss_state": loss.state_dict(), "batch_size": loss.batch_size,
                "samples": torch.zeros(eval_samples, 2)}


def test_trials_are_cached_and_a_rerun_skips_them(tmp_path, monkeypatch):
    fake = FakeTrain()
    monkeypatch.setattr(tuning, "train", fake)
    kw = {"losses": ["gan", "gmmn"], "trials": 3, "cache": tmp_path, "steps": 50, "eval_samples": 40,
          "progress": False}
    first = tuning.run_tuning(**kw)
    assert len(fake.calls) == 8 and {c[2] for c in fake.calls} == {tuning.VALIDATION_SEED}
    for name in ("gan", "gmmn"):
        for t in range(3):
            record = json.loads((tmp_path / name / f"trial{t}.json").read_text())
            assert record["config"] == json.loads(json.dumps(tuning.draw(name, t)))
            assert record["settings"]["lr_g"] == tuning.draw(name, t)["lr_g"]
            assert record["metrics"]["modes_covered"] == int(tuning.draw(name, t)["lr_g"] * 1e5) % 26
            assert record["steps"] == 50 and record["error"] is None and "samples" not in record
    for name in ("gan", "gmmn"):  # the prior configuration, one more trial of each loss, listed first
        record = json.loads((tmp_path / name / "prior.json").read_text())
        assert record["trial"] == "prior" and record["config"] == json.loads(json.dumps(tuning.PRIOR[name]))
        assert first["trials"][name][0] == record and len(first["trials"][name]) == 4
    # the priors, then trial-major: trial t of every loss before trial t + 1 (a stopped search is even)
    assert [(c[0], c[3]) for c in fake.calls] == (
        [(name, tuning.PRIOR[name]["lr_g"]) for name in ("gan", "gmmn")]
        + [(name, tuning.draw(name, t)["lr_g"]) for t in range(3) for name in ("gan", "gmmn")])
    # the packing each trial asked for reached the trainer
    assert [c[4] for c in fake.calls if c[0] == "gan"] == [1] + [tuning.draw("gan", t)["packing"] for t in range(3)]
    second = tuning.run_tuning(**kw)
    assert len(fake.calls) == 8 and second["trials"] == first["trials"]
    # more trials: only the new ones run
    tuning.run_tuning(**{**kw, "trials": 4})
    assert len(fake.calls) == 10
    # the same cache asked for other steps: refused, not silently mixed
    with pytest.raises(ValueError, match="prior.json holds a run with other settings"):
        tuning.run_tuning(**{**kw, "steps": 60})


def test_report_runs_the_selected_configuration_on_fresh_seeds_and_a_failed_trial_counts(tmp_path, monkeypatch):
    fail = tuning.draw("lsgan", 1)["lr_g"]
    fake = FakeTrain(fail_on=fail)
    monkeypatch.setattr(tuning, "train", fake)
    result = tuning.run_tuning(["lsgan"], trials=3, cache=tmp_path, report=True, progress=False, eval_samples=40)
    failed = result["trials"]["lsgan"][2]  # trial 1, after the prior
    assert failed["error"] == "RuntimeError: diverged" and failed["metrics"]["modes_covered"] == 0
    ok = [r for r in result["trials"]["lsgan"] if r["error"] is None]
    # hq and rkl tie at seed 100; the prior (trial -1 for ties) is one of the candidates
    assert result["trials"]["lsgan"][0]["trial"] == "prior"
    best = max(ok, key=lambda r: (r["metrics"]["modes_covered"], -tuning._trial_rank(r["trial"])))
    assert result["selected"]["lsgan"]["trial"] == best["trial"]
    runs = result["report"]["lsgan"]
    assert sorted((r["data"], r["seed"]) for r in runs) == [(d, s) for d in ("grid25", "ring8") for s in (0, 1, 2)]
    assert all(r["config"] == best["config"] for r in runs)
    assert [len(r.get("samples", [])) for r in runs if r["data"] == "grid25"] == [40, 40, 40]  # for the plot
    n = len(fake.calls)
    assert n == 1 + 3 + 6
    tuning.run_tuning(["lsgan"], trials=3, cache=tmp_path, report=True, progress=False, eval_samples=40)
    assert len(fake.calls) == n
    # a grid25 report record without its samples (the plot needs them) is rerun, the others read back
    path = tmp_path / "lsgan" / "report" / "grid25-seed1.json"
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "samples"}))
    tuning.run_tuning(["lsgan", "lsgan"], trials=3, cache=tmp_path, report=True, progress=False, eval_samples=40)
    assert fake.calls[n:] == [("lsgan", "grid25", 1, best["config"]["lr_g"], best["config"]["packing"])]
    assert "samples" in json.loads(path.read_text())


def test_a_harness_error_stops_the_search_instead_of_counting_as_a_failed_trial(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("train() got an unexpected keyword argument")
    monkeypatch.setattr(tuning, "train", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        tuning.run_tuning(["gan"], trials=1, cache=tmp_path, progress=False, eval_samples=40)
    assert not (tmp_path / "gan" / "trial0.json").exists()


def test_cli_tune_writes_the_table(tmp_path, monkeypatch):
    from mmdkit.gan.__main__ import main
    monkeypatch.setattr(tuning, "train", FakeTrain())
    md = tmp_path / "GAN_RESULTS.md"
    md.write_text("# GAN benchmark: the older tables\n\nkept below\n")
    argv = ["tune", "--losses", "gan", "wgan", "--trials", "2", "--report", "--cache", str(tmp_path / "c"),
            "--out-md", str(md), "--pacgan-runs", str(tmp_path / "none"), "--steps", "20", "--no-progress"]
    assert main(argv) == 0
    assert main(argv) == 0  # a rerun replaces the section, keeps what was below it
    text = md.read_text()
    assert text.count(bench.TUNE_BEGIN) == 1 and text.index(bench.TUNE_END) < text.index("# GAN benchmark: the older")
    assert "| gan |" in text and "| wgan |" in text and "2 trials" in text
    assert (tmp_path / "GAN_SAMPLES_grid25.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["tune", "--trials", "0", "--cache", str(tmp_path / "c")])


# ------------------------------------------------------------------ the table

def _report(data, seed, modes, hq, rkl, cpu):
    return {"data": data, "seed": seed, "metrics": {"modes_covered": modes, "high_quality": hq,
                                                   "reverse_kl": rkl, "cpu_seconds": cpu}}


def test_table_mean_and_standard_error_by_hand(tmp_path):
    trials = [{"trial": t, "config": {"lr_g": 1e-3}, "metrics": {"modes_covered": 1, "high_quality": 0.1,
                                                                 "reverse_kl": 1.0, "cpu_seconds": 100.0}}
              for t in range(2)]
    report = [_report("grid25", 0, 25, 0.9, 0.01, 10.0), _report("grid25", 1, 24, 0.8, 0.02, 10.0),
              _report("grid25", 2, 22, 0.7, "inf", 10.0), _report("ring8", 0, 8, 0.95, 0.005, 5.0)]
    result = {"trials": {"mmd-gan": trials}, "report": {"mmd-gan": report}, "n_trials": 2}
    # PacGAN-protocol runs: two seeds of the GAN row at 40 epochs, the last epoch read
    for seed, (modes, hq) in enumerate([(20, 0.5), (18, 0.7)]):
        folder = tmp_path / f"e40-pack1-seed{seed}"
        folder.mkdir()
        rows = [{"epoch": e, "modes_covered": 1, "high_quality": 0.0, "reverse_kl": 3.0, "cpu_seconds": 1.0}
                for e in (1, 2)]
        rows.append({"epoch": 40, "modes_covered": modes, "high_quality": hq, "reverse_kl": 0.3 + seed,
                     "cpu_seconds": 1000.0})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "not-a-run").mkdir()
    table = bench.format_tuning_table(result, bench.pacgan_rows(tmp_path))
    row = next(line for line in table.splitlines() if line.startswith("| mmd-gan "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # modes 25, 24, 22: mean 23.67, sd sqrt(7/3) = 1.528, se 0.882; hq 90, 80, 70 %: mean 80, se 10 / sqrt(3)
    assert cells[1:4] == ["23.7 ± 0.88", "80 ± 5.8", "0.015 (1 of 3 inf)"]
    assert cells[4:7] == ["8", "95", "0.005"]  # one ring8 seed: the mean alone
    assert cells[7] == "235"  # 2 trials x 100 s + 3 x 10 s + 5 s
    pac = next(line for line in table.splitlines() if line.startswith("| *PacGAN protocol: GAN*"))
    cells = [c.strip() for c in pac.strip("|").split("|")]
    # modes 20, 18: mean 19, se 1; hq 50, 70 %: mean 60, se 10; reverse KL 0.3, 1.3: mean 0.8, se 0.5
    assert cells[1:4] == ["19 ± 1", "60 ± 10", "0.8 ± 0.5"] and cells[4:7] == ["—"] * 3
    assert cells[7] == "2000" and cells[8].startswith("40 of 400 epochs; seeds [0, 1]")
    published = [line for line in table.splitlines() if "(published)" in line]
    assert len(published) == len({n for d in bench.PUBLISHED.values() for n, *_ in d})
    pac4 = next(line for line in published if "PacGAN T1: PacGAN4" in line)
    grid = next(r for r in bench.PUBLISHED["grid25"] if r[0] == "PacGAN T1: PacGAN4")
    assert f"| {grid[1]} | {grid[2]} | {grid[3]} |" in pac4


def test_pacgan_rows_read_a_full_run_from_its_metrics_and_skip_a_line_being_written(tmp_path):
    line = {"epoch": 400, "modes_covered": 14, "high_quality": 0.95, "reverse_kl": 0.69, "cpu_seconds": 11254.0}
    full = tmp_path / "full-pack1-seed0"
    full.mkdir()
    (full / "metrics.jsonl").write_text(json.dumps({**line, "epoch": 399}) + "\n" + json.dumps(line) + "\n")
    (full / "metrics.json").write_text(json.dumps({**line, "data": "grid25", "seed": 0,
                                                   "settings": {"loss": "ns-gan"},
                                                   "protocol": {"epochs": 400, "packing": 1}}))
    running = tmp_path / "e40-pack4-seed2"  # no metrics.json yet; its last line is half written
    running.mkdir()
    (running / "metrics.jsonl").write_text(json.dumps({**line, "epoch": 7}) + '\n{"epoch": 8, "modes_')
    rows = {(r["packing"], r["target_epochs"]): r for r in bench.pacgan_rows(tmp_path)}
    assert set(rows) == {(1, 400), (4, 40)}
    assert rows[1, 400]["seeds"] == [0] and rows[1, 400]["last"] == [line] and rows[1, 400]["loss"] == "ns-gan"
    assert rows[4, 40]["seeds"] == [2] and [r["epoch"] for r in rows[4, 40]["last"]] == [7]
    name, budget = bench._pacgan_label(rows[1, 400])
    assert name.startswith("*PacGAN protocol: GAN*") and budget == "400 of 400 epochs; seeds [0]"


def _losses_report(modes_hq: dict) -> dict:
    """A result whose report holds, per loss, three grid25 runs with these (modes, high quality) each."""
    return {"report": {loss: [{"data": "grid25", "seed": s, "metrics": {"modes_covered": m, "high_quality": hq}}
                              for s in range(3)] for loss, (m, hq) in modes_hq.items()}}


def test_still_collapsed_names_a_diffuse_loss_and_a_mode_collapse():
    result = _losses_report({"sharp": (25, 0.9), "blob": (22, 0.02), "one-mode": (1, 1.0), "half": (13, 0.9),
                             "under-half": (12, 0.9)})
    assert bench._collapsed(result) == ["blob", "one-mode", "under-half"]


def test_samples_plot_has_a_panel_for_a_loss_whose_runs_failed(tmp_path):
    pytest.importorskip("matplotlib")
    ok = {"data": "grid25", "seed": 0, "samples": [[0.0, 0.0], [2.0, 2.0]],
          "metrics": {"modes_covered": 2, "high_quality": 1.0}}
    failed = [{"data": "grid25", "seed": s, "error": "ValueError: X contains NaN",
               "metrics": {"modes_covered": 0, "high_quality": 0.0}} for s in (0, 1)]
    path = bench.plot_tuned_samples({"report": {"gan": [ok], "rwgan": failed}}, tmp_path / "s.png")
    assert path is not None and path.stat().st_size > 0
    from matplotlib import pyplot as plt
    import matplotlib.image
    assert matplotlib.image.imread(path).shape[1] > 300  # two panels side by side
    plt.close("all")
    assert bench.plot_tuned_samples({"report": {"rwgan": failed}}, tmp_path / "none.png") is None


def test_mean_se_against_statistics():
    xs = [0.25, 1.0, 4.0, 2.5]
    m, se = statistics.mean(xs), statistics.stdev(xs) / math.sqrt(4)
    assert bench.mean_se(xs) == f"{m:.3g} ± {se:.2g}"
    assert bench.mean_se(["inf", "inf"]) == "inf" and bench.mean_se([]) == "—"


def test_train_returns_its_evaluation_samples_on_request():
    from mmdkit.gan.trainer import train
    m = train("gmmn", "ring8", steps=1, seed=0, progress=False, eval_samples=30, return_samples=True)
    assert tuple(m["samples"].shape) == (30, 2) and m["samples"].isfinite().all()


def test_configured_loss_rejects_unknown_settings():
    with pytest.raises(ValueError, match="no setting 'nope'"):
        tuning.configured_loss("gan", {"nope": 1})
    with pytest.raises(ValueError, match="which has no field"):
        tuning.configured_loss("gan", {"lr_g.x": 1})
    loss = tuning.configured_loss("wgan-gp", {"penalty.weight": 3.0, "betas": [0.8, 0.999]})
    assert loss.penalty == dataclasses.replace(get_loss("wgan-gp").penalty, weight=3.0) and loss.betas == (0.8, 0.999)


# ------------------------------------------------------------------ the shipped defaults are the searched best

_COMMITTED = Path(__file__).resolve().parents[1] / "bench" / "gan_tuning"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_ships_its_selected_configuration(name):
    """Item 2: a loss's defaults are the configuration the committed search selected (bench/gan_tuning:
    its prior and its 10 trials), read back and selected here; batch size None is the trainer's 256."""
    from mmdkit.gan.trainer import BATCH_SIZE
    files = [_COMMITTED / name / f"{tuning.PRIOR_TRIAL}.json"] + [_COMMITTED / name / f"trial{t}.json"
                                                                  for t in range(10)]
    records = [json.loads(f.read_text()) for f in files]
    config = tuning.select(records)["config"]
    default = get_loss(name)
    shipped = {key: _get(default, key) for key in config}
    if shipped.get("batch_size", 0) is None:
        shipped["batch_size"] = BATCH_SIZE
    assert json.loads(json.dumps(shipped)) == config
    # the prior is what the loss shipped with before the search
    assert records[0]["config"] == json.loads(json.dumps(tuning.PRIOR[name]))


def test_write_section_replaces_its_own_markers_and_refuses_unpaired_ones(tmp_path):
    md, b, e = tmp_path / "R.md", "<!-- s: begin -->", "<!-- s: end -->"
    bench.write_section(md, f"{b}\none\n{e}\n", b, e)  # no file yet: the section alone
    assert md.read_text() == f"{b}\none\n{e}\n"
    md.write_text(f"# head\n\n{b}\none\n{e}\n\ntail\n")
    bench.write_section(md, f"{b}\ntwo\n{e}\n", b, e)  # in place, what is around it kept
    assert md.read_text() == f"# head\n\n{b}\ntwo\n{e}\n\ntail\n"
    bench.write_section(md, f"{b}\nthree\n{e}\n", b, e, at_top=True)  # moved to the top
    assert md.read_text() == f"{b}\nthree\n{e}\n\n# head\n\ntail\n"
    md.write_text("# head\n")
    bench.write_section(md, f"{b}\nfour\n{e}\n", b, e)  # absent: appended
    assert md.read_text() == f"# head\n\n{b}\nfour\n{e}\n"
    for broken in (f"x\n{b}\nhand-written\n", f"{e}\n{b}\n", f"{b}\n{e}\n{b}\n{e}\n", f"x\n{e}\n"):
        md.write_text(broken)
        with pytest.raises(ValueError, match="do not pair up"):
            bench.write_section(md, f"{b}\nfive\n{e}\n", b, e)
        assert md.read_text() == broken  # nothing written


def test_recorded_commands_show_repository_paths_relative(tmp_path, monkeypatch):
    """The command written into GAN_RESULTS.md names no machine's folders: absolute paths inside the
    repository (found from the working directory's pyproject.toml) are shown relative to it."""
    from mmdkit.gan.__main__ import _shown
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert _shown(str(tmp_path / "bench" / "gan_tuning")) == "bench/gan_tuning"
    assert _shown("/elsewhere/scratch") == "/elsewhere/scratch"  # outside the repository: as given
    assert _shown("--jobs") == "--jobs" and _shown("runs/x") == "runs/x"
