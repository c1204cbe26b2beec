"""llfc_utils.tools.plan and the runner's --dry-run: the plan matches what training caches, timings, amp, compile."""

from __future__ import annotations

import json
import math
import os
import statistics
import warnings

import pytest
import torch

from llfc_utils import cache, config, data, timings, train
from llfc_utils.tools import plan, run

CPU = torch.device("cpu")
SMOKE_MLP = config.get("smoke", "mlp")
TINY = SMOKE_MLP.replace(train_subset=256, test_subset=128, epochs=2)


@pytest.fixture(autouse=True)
def _private_timings(tmp_path, monkeypatch):
    """Every test gets its own timings file, and no $LLFC_AMP / $LLFC_COMPILE from outside."""
    path = tmp_path / "epoch_seconds.json"
    monkeypatch.setenv("LLFC_TIMINGS", str(path))
    monkeypatch.setenv("LLFC_AMP", "")  # unset; undone after the test even if the runner sets it
    monkeypatch.setenv("LLFC_COMPILE", "0")
    return path


def _params(chapter: str, **overrides) -> dict:
    return {**run.parameters(chapter), **overrides}


def _planned_keys(plans: list[plan.ChapterPlan]) -> set[str]:
    """Every checkpoint key the planned runs write (one per segment end)."""
    return {
        cache.key_of(spec)
        for p in plans
        for r in p.runs
        for spec in train.trajectory_specs(r.run.cfg, r.run.init_seed, list(r.run.segments), CPU)
    }


def _cached_keys(folder) -> set[str]:
    return {p.stem for p in folder.glob("*.json")}


def _forbid_training(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("a dry run must not train or execute anything")

    monkeypatch.setattr(train, "_run", boom)
    monkeypatch.setattr(run, "run_chapter", boom)


# ---------------------------------------------------------------- the dry run


def test_dry_run_prints_the_plan_and_trains_nothing(capsys, monkeypatch, _isolated_cache):
    _forbid_training(monkeypatch)
    code = run.main(["--profile", "smoke", "--chapters", "01_lmc_basics", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    # the smoke profile's 2 seeds (config.SEEDS), each 2 x 6 + 2 + 2 x 4
    assert "01_lmc_basics: 8 runs, 44 epochs to train" in out, out
    assert "spawned k=2" in out and "from scratch" in out
    assert "total" in out and "guess" in out
    assert not _isolated_cache.exists() or not any(_isolated_cache.iterdir())


def test_dry_run_of_the_paper_profile_on_the_cpu(capsys, monkeypatch, tmp_path):
    """The issue's check: the plan and the time of 02_spawning, with no CIFAR-10 on this machine."""
    monkeypatch.setenv("LLFC_DATA", str(tmp_path / "no_data"))
    _forbid_training(monkeypatch)
    assert run.main(["--profile", "paper", "--chapters", "02_spawning", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "cifar10" in out and "step [80, 120]" in out
    # mlp: 2 x 30 + (2 x 30) + (1 + 2 x 29) + (2 + 2 x 28) + (5 + 2 x 25); vgg16 (k = 0, 1) and
    # resnet20 (k = 1) likewise over 160
    mlp = 60 + 60 + 59 + 58 + 55
    vgg16 = 320 + 320 + 319
    resnet20 = 320 + 319
    assert f"02_spawning: 60 runs, {3 * (mlp + vgg16 + resnet20)} epochs to train" in out, out
    assert "guess: from FLOPs" in out
    assert not (tmp_path / "no_data").exists()  # no download was attempted


def test_a_real_run_prints_the_estimate_before_it_starts(capsys, monkeypatch):
    order = []
    monkeypatch.setattr(run, "run_chapter", lambda name, *a, **k: order.append(name))
    assert run.main(["--profile", "smoke", "--chapters", "00_training"]) == 0
    out = capsys.readouterr().out
    assert out.index("Estimated training") < out.index("[1/1] 00_training")
    assert "00_training" in out.splitlines()[1] and "6 epochs to train" in out
    assert "total" in out
    assert order == ["00_training", "results"]


def test_a_failing_estimate_does_not_block_a_real_run(capsys, monkeypatch):
    monkeypatch.setattr(run, "run_chapter", lambda *a, **k: None)
    monkeypatch.setattr(plan, "make", lambda *a, **k: 1 / 0)
    assert run.main(["--profile", "smoke", "--chapters", "00_training"]) == 0
    assert "no time estimate: ZeroDivisionError" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a dry run is only the estimate: it must not hide this
        run.main(["--profile", "smoke", "--chapters", "00_training", "--dry-run"])


def test_dry_run_rejects_a_role_without_its_spawn_grid(capsys):
    with pytest.raises(SystemExit) as e:
        run.main(
            ["--profile", "paper", "--chapters", "02_spawning", "-p", "roles", '["resnet20_ln"]']
            + ["--dry-run"]
        )
    assert e.value.code == 2
    assert "'resnet20_ln'" in capsys.readouterr().err  # the message names what is missing


# ---------------------------------------------------------------- the plan is what training caches


@pytest.mark.usefixtures("fashion_mnist")
def test_plan_of_chapter_01_is_exactly_what_training_caches(_isolated_cache, monkeypatch):
    """Oracle: train as the notebook's training cell does, then compare the cache with the plan."""
    small = SMOKE_MLP.replace(train_subset=256, test_subset=128, epochs=4)  # the same code, faster
    monkeypatch.setitem(config.PROFILES["smoke"], "mlp", small)
    params = _params("01_lmc_basics", profile="smoke", spawn_epoch=3, seed=4, n_seeds=1)
    before = plan.make(["01_lmc_basics"], "smoke", {"01_lmc_basics": params}, CPU)
    e, k = small.epochs, 3
    assert before[0].epochs == 2 * e + k + 2 * (e - k)  # the parent's k epochs are trained once
    assert [r.status for r in before[0].runs] == ["train"] * 4

    # notebooks/01_lmc_basics.ipynb, its training cell, with profile smoke, spawn_epoch 3, seed 4
    # (replicate 4: train.replicate_seeds(4)), one seed
    cfg = config.get("smoke", "mlp")
    train.train_independent_pair(cfg, seeds=(401, 402), device=CPU)
    train.train_spawned_pair(cfg, 3, seed=400, child_seeds=(401, 402), device=CPU)

    assert _cached_keys(_isolated_cache) == _planned_keys(before)
    after = plan.make(["01_lmc_basics"], "smoke", {"01_lmc_basics": params}, CPU)
    assert after[0].epochs == 0 and [r.status for r in after[0].runs] == ["cached"] * 4


def test_runs_shared_between_chapters_count_once():
    params = {c: _params(c, profile="smoke") for c in ("01_lmc_basics", "04_weak_additivity")}
    p01, p04 = plan.make(["01_lmc_basics", "04_weak_additivity"], "smoke", params, CPU)
    assert p01.epochs == 2 * (2 * 6 + 2 + 2 * 4)  # smoke: 2 seeds; mlp 6 epochs; spawned k=2
    # 04 needs 01's mlp pairs (spawned k=2 and independent, the same 2 seeds): all shared; and
    # vgg16 and resnet20 (4 epochs) per seed: spawned k=1 (1 + 2 x 3) and an independent pair (2 x 4)
    assert [r.status for r in p04.runs if r.run.role == "mlp"] == ["shared"] * 8
    assert p04.epochs == 2 * 2 * ((1 + 2 * 3) + 2 * 4)


def test_a_half_trained_run_counts_only_its_remaining_epochs(_isolated_cache):
    spec = train.trajectory_specs(SMOKE_MLP, 1, [(1, SMOKE_MLP.epochs)], CPU)[-1]
    cache.save({**spec, "resume": True}, {"w": torch.zeros(1)}, {"epoch": 4, "history": {}})
    params = {"00_training": _params("00_training", profile="smoke", seed=1)}
    (p,) = plan.make(["00_training"], "smoke", params, CPU)
    assert p.epochs == SMOKE_MLP.epochs - 4 and "resumes at epoch 4" in p.runs[0].note


def _chapter(folder, name: str, *cells: tuple[str, list[str]]) -> None:
    """Write a minimal chapter notebook: a parameters cell, then `cells` (source, tags)."""
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    for source, tags in [('profile = "cpu"\nseed = 3\n', ["parameters"]), *cells]:
        cell = {"cell_type": "code", "source": source, "metadata": {"tags": tags}, "outputs": []}
        nb["cells"].append({**cell, "execution_count": None})
    (folder / f"{name}.ipynb").write_text(json.dumps(nb))


SETUP = "from llfc_utils import config, interpolate, train\ncfg = config.get(profile, 'mlp')\n"


def test_a_new_chapter_is_planned_from_its_notebook_alone(tmp_path, monkeypatch):
    """One training call in a new notebook: planned with no change to plan.py, nothing trained."""
    _forbid_training(monkeypatch)
    cell = (
        "model, history = train.train_model(cfg, seed=seed)\n"
        "x, y = train.dataset(cfg, 'test')\n"
        "curve = interpolate.lmc_curve(model, model, {'test': (x, y)}, [0.0, 1.0])\n"
        "print(f'{100 * history[\"test_acc\"][-1]:.2f}', torch.equal(x, y))\n"  # fails: skipped
    )
    _chapter(tmp_path, "07_new", (SETUP, []), (cell, []), ("train.train_model(cfg, 99)", ["check"]))
    (p,) = plan.make(["07_new"], "smoke", {"07_new": {"seed": 5}}, CPU, folder=tmp_path)
    (r,) = [x.run for x in p.runs]
    assert (r.role, r.pair, r.init_seed, r.segments) == ("mlp", "from scratch", 5, ((5, 6),))
    assert p.epochs == 6


def test_a_chapter_whose_training_code_fails_on_stand_ins_is_an_error(tmp_path):
    cell = "import torch\nfor s in (1, 2):\n    torch.equal(train.train_model(cfg, s)[0], 1)\n"
    _chapter(tmp_path, "07_bad", (SETUP, []), (cell, []))
    with pytest.raises(ValueError, match="plan of chapter 07_bad is incomplete.*TypeError"):
        plan.make(["07_bad"], "smoke", {}, CPU, folder=tmp_path)


def test_a_chapter_without_a_notebook_has_no_plan(tmp_path):
    (p,) = plan.make(["07_missing"], "smoke", {}, CPU, folder=tmp_path)
    assert p.runs is None


def test_cache_stored_needs_a_matching_sidecar_and_its_tensors(_isolated_cache):
    spec = train.trajectory_specs(TINY, 1, [(1, TINY.epochs)], CPU)[-1]
    assert cache.stored(spec) is None
    cache.save(spec, {"w": torch.zeros(1)}, {"epoch": 2})
    assert cache.stored(spec)["meta"] == {"epoch": 2}
    cache.paths(spec)[0].unlink()
    assert cache.stored(spec) is None


# ---------------------------------------------------------------- timings and the estimate


@pytest.mark.usefixtures("fashion_mnist")
def test_timings_are_recorded_per_epoch_and_used_by_the_estimate(_private_timings):
    assert plan.epoch_estimate(TINY, CPU)[1] == "guess: from FLOPs"
    _, history = train.train_model(TINY, 0, CPU)
    record = json.loads(_private_timings.read_text())
    seconds = record["devices"]["cpu"][timings.timing_key(TINY)]["seconds"]
    assert len(seconds) == TINY.epochs == len(history["seconds"])
    # one measurement per epoch; no comparison with the history's own clock reading (the file
    # rounds to 0.1 ms, so two readings of one epoch need not agree: that made this test flaky)
    assert all(math.isfinite(s) and s > 0 for s in seconds)
    per_epoch, source = plan.epoch_estimate(TINY, CPU)
    assert source == "measured on cpu" and per_epoch == pytest.approx(statistics.median(seconds))
    params = {"00_training": _params("00_training", profile="smoke", seed=7)}
    (p00,) = plan.make(["00_training"], "smoke", params, CPU)
    assert p00.sources == {"guess"}  # another config (the smoke MLP): not measured yet


def test_a_cpu_without_bf16_is_priced_in_float32(monkeypatch):
    """The CPU table and the FLOPs guess are bf16 measurements; float32 takes CPU_FP32_SLOWDOWN x."""
    cfg = config.get("cpu", "mlp")
    table = plan.CPU_EPOCH_SECONDS[timings.timing_key(cfg)]
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert plan.epoch_estimate(cfg, CPU) == (table, "guess: measured once on a 2-core CPU")
    bf16_guess = plan.guess_epoch_seconds(TINY, "cpu")
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.precision(cfg, CPU) == "fp32"
    assert plan.epoch_estimate(cfg, CPU)[0] == pytest.approx(table * plan.CPU_FP32_SLOWDOWN)
    assert plan.guess_epoch_seconds(TINY, "cpu") > bf16_guess


def test_timings_keep_the_last_few_and_take_their_median():
    for s in (100.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        timings.record_epoch_seconds(TINY, "cpu", s)
    assert timings.epoch_seconds(TINY, "cpu") == 3.0  # 100 dropped: only the last 5 are kept
    assert timings.epoch_seconds(TINY, "NVIDIA H100 80GB HBM3") is None
    assert timings.epoch_seconds(TINY.replace(lr=0.1), "cpu") is None


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"devices": 3}', '{"devices": {"cpu": {"k": 5}}}', ""],
)
def test_a_corrupt_timings_file_is_tolerated(_private_timings, content):
    _private_timings.write_text(content)
    key = timings.timing_key(TINY)
    if '"k"' in content:  # well-formed around a malformed entry: read without complaint
        content = content.replace('"k"', json.dumps(key))
        _private_timings.write_text(content)
        assert timings.epoch_seconds(TINY, "cpu") is None
    else:
        with pytest.warns(UserWarning, match="unreadable timings file"):
            assert timings.epoch_seconds(TINY, "cpu") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recording replaces the bad file without a warning
        timings.record_epoch_seconds(TINY, "cpu", 2.5)
    assert timings.epoch_seconds(TINY, "cpu") == 2.5


def test_an_unwritable_timings_file_does_not_stop_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("LLFC_TIMINGS", str(blocker / "sub" / "epoch_seconds.json"))
    timings.record_epoch_seconds(TINY, "cpu", 1.0)  # no exception
    with pytest.warns(UserWarning, match="unreadable timings file"):
        assert timings.epoch_seconds(TINY, "cpu") is None


def test_flops_of_the_mlp_match_a_hand_count():
    widths = [784, 64, 64, 64, 10]
    fwd = 2 * sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    got_fwd, got_both = plan.train_flops(SMOKE_MLP)
    assert got_fwd == fwd
    # backward: weight gradients of every layer, input gradients of all but the first
    assert got_both == fwd + fwd + (fwd - 2 * 784 * 64)


def test_peak_table_matches_names_by_their_most_specific_entry():
    assert plan.peak_tflops("NVIDIA H100 80GB HBM3") == (989.0, "bf16")
    assert plan.peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert plan.peak_tflops("NVIDIA L40S")[0] == 362.0 and plan.peak_tflops("NVIDIA L4")[0] == 121.0
    assert plan.peak_tflops("Tesla T4")[1].startswith("fp16")
    assert plan.peak_tflops("Some Future GPU") is None
    # whole words, not substrings: an L40 is not an L4, an RTX A1000 not an A100
    assert plan.peak_tflops("NVIDIA L40")[0] == 181.0
    assert plan.peak_tflops("NVIDIA RTX A1000 6GB Laptop GPU") is None
    assert plan.peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0


def test_each_device_is_priced_in_the_precision_it_trains_in():
    cfg = config.get("gpu", "cnn")
    assert plan.device_precision(cfg, "Tesla T4") == "fp16"  # no bf16: fp16 with a scaler
    assert plan.device_precision(cfg, "Tesla V100-SXM2-16GB") == "fp16"
    assert plan.device_precision(cfg, "NVIDIA A100-SXM4-40GB") == "bf16"
    assert plan.device_precision(cfg.replace(amp="fp32"), "Tesla T4") == "fp32"
    assert plan.device_precision(cfg, "cpu") == "fp32"
    assert plan.peak_tflops("Tesla T4") == (65.0, "fp16")
    assert plan.peak_tflops("Tesla T4", "bf16") is None  # emulated: no data-sheet peak
    assert plan.peak_tflops("NVIDIA A100-SXM4-40GB", "fp32") == (19.5, "fp32")
    t4 = plan.guess_epoch_seconds(cfg.replace(amp="fp16"), "Tesla T4")
    assert plan.epoch_estimate(cfg, "Tesla T4") == (t4, "guess: from FLOPs")
    t4_fp32 = plan.epoch_estimate(cfg.replace(amp="fp32"), "Tesla T4")[0]
    a100 = plan.epoch_estimate(cfg, "NVIDIA A100-SXM4-40GB")[0]
    assert a100 < t4 < t4_fp32
    # a time measured on a T4 is keyed by the precision it really ran in
    timings.record_epoch_seconds(cfg.replace(amp="fp16"), "Tesla T4", 11.0)
    assert plan.epoch_estimate(cfg, "Tesla T4") == (11.0, "measured on Tesla T4")


def test_train_resolves_bf16_to_fp16_on_gpus_without_it(monkeypatch):
    cfg = config.get("gpu", "cnn")
    cuda = torch.device("cuda")
    expected_cpu = "bf16" if train.cpu_has_bf16() else "fp32"  # CPU bf16 where it is native
    assert train.precision(cfg, CPU) == expected_cpu
    assert train.precision(cfg.replace(amp="fp32"), CPU) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))  # a T4
    assert train.precision(cfg, cuda) == "fp16"
    assert train._spec(cfg, 0, [[0, 6]], cuda)["config"]["amp"] == "fp16"  # its own checkpoints
    assert train.precision(cfg.replace(amp="fp32"), cuda) == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))  # an A100
    assert train.precision(cfg, cuda) == "bf16"
    assert "amp" not in train._spec(cfg, 0, [[0, 6]], cuda)["config"]  # keys as before


def test_an_fp16_epoch_runs_with_a_gradient_scaler(monkeypatch):
    """The fp16 branch of train_epoch (a T4's), exercised on the CPU: scaled, finite, scaler kept."""
    monkeypatch.setattr(train, "precision", lambda cfg, device: "fp16")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    model = train.build_model(TINY, 0)
    opt = train.make_optimizer(TINY, model)
    loss, acc = train.train_epoch(model, opt, TINY, x, y, epoch=0, data_seed=0)
    assert math.isfinite(loss) and 0 <= acc <= 1
    scaler = train._SCALERS[opt]
    train.train_epoch(model, opt, TINY, x, y, epoch=1, data_seed=0)
    assert train._SCALERS[opt] is scaler  # one scaler for the whole run, not one per epoch
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(("device", "minutes"), [("Tesla T4", 15), ("NVIDIA A100-SXM4-40GB", 5)])
def test_every_chapter_of_the_gpu_profile_fits_one_sitting(device, minutes):
    """Each chapter alone (a fresh Colab runtime, empty cache), by the planner's estimate."""
    chapters = run.chapters()
    params = {c: _params(c, profile="gpu") for c in chapters}
    for p in plan.alone(chapters, "gpu", params, device):
        assert p.seconds <= minutes * 60, (p.chapter, device, plan.duration(p.seconds))


def test_a_cpu_plan_names_the_precision_the_cpu_trains_in(capsys):
    """Every line of a CPU plan says bf16 where this CPU trains in bf16, not a fixed fp32."""
    argv = ["--profile", "smoke", "--chapters", "00_training", "--dry-run"]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    expected = train.precision(config.get("smoke", "mlp"), "cpu")
    assert f"training in {expected}" in out and f"s/epoch in {expected}" in out, out


def test_assume_device_prices_the_plan_for_another_device(capsys):
    argv = ["--profile", "gpu", "--dry-run", "--assume-device", "Tesla T4"]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    assert "Plan for profile 'gpu' on Tesla T4, training in fp16" in out
    assert "s/epoch in fp16" in out and "Each chapter alone" in out
    with pytest.raises(SystemExit):
        run.main(["--profile", "gpu", "--assume-device", "Tesla T4"])  # only with --dry-run


def test_durations_read_naturally():
    assert [plan.duration(s) for s in (5, 600, 7200, 3 * 86400)] == [
        "5 s",
        "10 min",
        "2.0 h",
        "3.0 days",
    ]


# ---------------------------------------------------------------- amp and compile


def test_old_checkpoint_keys_are_unchanged(monkeypatch):
    """Keys computed before amp and warmup_epochs existed (commit 3cb58d4): old caches still hit.

    The CPU keys are of float32 runs (the CPU had no bf16 then): a float32 CPU run keeps them, a
    bf16 CPU run must not (it trains something else).
    """
    with monkeypatch.context() as m:
        m.setattr(train, "cpu_has_bf16", lambda: True)
        bf16 = train._spec(config.get("paper", "cnn"), 0, [[0, 160]], CPU)
    assert cache.key_of(bf16) != "6fc46f8d37e2df1ba7662fde", "a bf16 CPU run is a different run"
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    old = {
        ("smoke", "mlp", "cpu"): "c14478d18d6ac330e118b363",
        ("cpu", "cnn", "cuda"): "2ec593df871d08595075acef",
        ("paper", "cnn", "cuda"): "ca89b188a906d1cdd1fbda7b",
        ("paper", "cnn", "cpu"): "6fc46f8d37e2df1ba7662fde",
    }
    for (profile, role, device), key in old.items():
        cfg = config.get(profile, role)
        if profile == "smoke":  # the smoke MLP as it was then (it has since shrunk)
            cfg = cfg.replace(train_subset=1024, epochs=10)
        if (
            profile == "paper"
        ):  # the paper VGG as it was then (it has since taken the authors' init)
            now = train._spec(cfg, 0, [[0, cfg.epochs]], torch.device(device))
            assert cache.key_of(now) != key, "a different initialisation is a different network"
            cfg = cfg.replace(model_kwargs={"norm": "bn"})
        spec = train._spec(cfg, 0, [[0, cfg.epochs]], torch.device(device))
        assert cache.key_of(spec) == key, (profile, role, device)
    cfg = config.get("paper", "cnn")
    cuda = torch.device("cuda")
    base = cache.key_of(train._spec(cfg, 0, [[0, 160]], cuda))
    assert cache.key_of(train._spec(cfg.replace(amp="fp32"), 0, [[0, 160]], cuda)) != base
    assert cache.key_of(train._spec(cfg.replace(warmup_epochs=5), 0, [[0, 160]], cuda)) != base


@pytest.mark.usefixtures("fashion_mnist")
def test_amp_is_a_no_op_on_a_cpu_without_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    fp32 = TINY.replace(amp="fp32", epochs=1)
    bf16 = TINY.replace(epochs=1)
    assert train._spec(fp32, 0, [[0, 1]], CPU) == train._spec(bf16, 0, [[0, 1]], CPU)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "a"))
    a, _ = train.train_model(bf16, 0, CPU)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "b"))
    b, _ = train.train_model(fp32, 0, CPU)
    assert any((tmp_path / "b").glob("*.safetensors"))  # really trained again, not loaded
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_amp_setting_and_its_errors(monkeypatch):
    assert config.get("paper", "cnn").amp == "bf16"
    monkeypatch.setenv("LLFC_AMP", "fp32")
    assert config.get("paper", "cnn").amp == "fp32"
    monkeypatch.setenv("LLFC_AMP", "fp16")
    assert config.get("paper", "cnn").amp == "fp16"
    monkeypatch.setenv("LLFC_AMP", "half")
    with pytest.raises(ValueError, match="LLFC_AMP='half'.*bf16, fp16, fp32"):
        config.get("paper", "cnn")
    with pytest.raises(ValueError, match="unknown amp 'half'"):
        TINY.replace(amp="half")
    with pytest.raises(SystemExit):
        run.main(["--amp", "half", "--dry-run"])


def test_run_flags_set_the_environment_for_the_kernels():
    argv = ["--profile", "smoke", "--chapters", "00_training", "--amp", "fp32", "--compile"]
    assert run.main([*argv, "--dry-run"]) == 0
    assert os.environ["LLFC_AMP"] == "fp32" and os.environ["LLFC_COMPILE"] == "1"


def test_compile_is_off_by_default(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled"))
    net = train.build_model(TINY, 0)
    assert train.maybe_compile(net, CPU) is net


@pytest.mark.usefixtures("fashion_mnist")
def test_compile_falls_back_with_a_warning_when_unavailable(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(train, "_compile_problem", train._compile_problem.__wrapped__)
    monkeypatch.setenv("LLFC_COMPILE", "1")
    net = train.build_model(TINY, 0)
    with pytest.warns(
        UserWarning, match="torch.compile is not available here.*no C\\+\\+ compiler"
    ):
        assert train.maybe_compile(net, CPU) is net
    with pytest.warns(UserWarning, match="training without it"):
        model, history = train.train_model(TINY, 0, CPU)
    assert math.isfinite(history["train_loss"][-1])
    assert (
        timings.device_kind(CPU, compiled=False)
        in json.loads((timings.timings_path()).read_text())["devices"]
    )


class _FailsToCompile(torch.nn.Module):
    """Stands in for a compiled model whose compiler fails at the `fail_at`-th step."""

    def __init__(self, model: torch.nn.Module, fail_at: int) -> None:
        super().__init__()
        self.model, self.fail_at, self.calls = model, fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("InductorError: no kernel for you\nsecond line")
        return self.model(x)


@pytest.mark.usefixtures("fashion_mnist")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_compile_failure_mid_epoch_restarts_the_epoch_without_compiling(monkeypatch, optimizer):
    """Steps taken before the failure are undone: the run equals one that never compiled."""
    cfg = TINY.replace(optimizer=optimizer, lr=1e-3 if optimizer == "adam" else TINY.lr)
    ref, href = train.train_model(cfg, 0, CPU)
    monkeypatch.setenv("LLFC_CACHE", str(os.environ["LLFC_CACHE"]) + "-2")
    monkeypatch.setattr(train, "maybe_compile", lambda model, device: _FailsToCompile(model, 2))
    with pytest.warns(UserWarning, match="torch.compile failed on this model.*InductorError"):
        model, history = train.train_model(cfg, 0, CPU)
    assert history["train_loss"] == href["train_loss"]
    for (name, p), q in zip(ref.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert list(json.loads(timings.timings_path().read_text())["devices"]) == ["cpu"]


def test_cudnn_autotune_is_restored_after_training():
    before = torch.backends.cudnn.benchmark
    with train._cudnn_autotune(True):
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before


def test_optimiser_state_takes_the_layout_of_its_parameter():
    """A momentum buffer read back from a (contiguous) checkpoint matches its channels-last weight."""
    cfg = config.get("smoke", "cnn")
    model = train.build_model(cfg, 0).to(memory_format=torch.channels_last)
    opt = train.make_optimizer(cfg, model)
    channels, size = data.input_shape(cfg.dataset, cfg.pad32)
    x = torch.randn(2, channels, size, size).contiguous(memory_format=torch.channels_last)
    model(x).sum().backward()
    opt.step()
    saved = {k: v.contiguous() for k, v in train._pack(model, opt).items()}  # as safetensors stores
    fresh = train.build_model(cfg, 1).to(memory_format=torch.channels_last)
    fresh_opt = train.make_optimizer(cfg, fresh)
    train._unpack(saved, fresh, fresh_opt)
    convs = [p for p in fresh.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    for p in fresh.parameters():
        buf = fresh_opt.state[p]["momentum_buffer"]
        assert buf.stride() == p.stride() and buf.device == p.device
    for (name, p), q in zip(model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(
            opt.state[p]["momentum_buffer"], fresh_opt.state[q]["momentum_buffer"]
        ), name


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist")
def test_compiled_training_matches_eager_closely(monkeypatch, tmp_path):
    """Also through dropout: compiled code draws its masks from the eager random stream."""
    if train._compile_problem("cpu") is not None:
        pytest.skip(f"torch.compile does not work here: {train._compile_problem('cpu')}")
    cnn = config.get("smoke", "cnn")
    cfg = cnn.replace(
        model_kwargs={**cnn.model_kwargs, "dropout": 0.5},
        epochs=1,
        train_subset=128,
        test_subset=64,
        amp="fp32",  # in bf16 the two round differently: the tolerance below is for float32
    )
    eager, h_eager = train.train_model(cfg, 0, CPU)
    monkeypatch.setenv("LLFC_COMPILE", "1")
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "compiled"))
    compiled, h_comp = train.train_model(cfg, 0, CPU)
    assert h_comp["train_loss"][0] == pytest.approx(h_eager["train_loss"][0], rel=1e-3)
    for (name, p), q in zip(
        eager.state_dict().items(), compiled.state_dict().values(), strict=True
    ):
        assert torch.allclose(p, q, atol=1e-3), name  # 2e-4 here; 1e-2 with other masks
    assert "cpu +compile" in json.loads(timings.timings_path().read_text())["devices"]


def test_planning_a_chapter_does_not_plan_it_again(monkeypatch):
    # each chapter's setup cell prints its plan (colab.choose_profile); the planner runs that
    # cell, and must not plan the chapter again from inside it (that recursed to the limit)
    calls = []
    real = plan.make
    monkeypatch.setattr(plan, "make", lambda *a, **k: calls.append(a) or real(*a, **k))
    plan.chapter_summary("04_weak_additivity", "smoke", {"profile": "smoke"})
    assert len(calls) == 1, f"plan.make ran {len(calls)} times for one chapter"
