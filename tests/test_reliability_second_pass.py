"""Reliability, second pass (issue 23): one named test per behaviour a hostile user checked.

1. a chapter is up to date only if its executed copy ran to the end with the same sources,
   parameters, profile, precision, compile flag and cache root, and its results JSON is that run's;
2. no measurement returns a number for empty input; a dead layer is NaN with a warning;
3. the runner rejects parameters that make a claim trivially true, and wrong nested types;
4. a sweep's output folder belongs to one grid; its command line errors are one sentence;
5. a failed checkpoint write never loses the model in memory;
6. the checkpoint sidecar's metadata is covered by its checksum (old sidecars are retrained);
7. data files are checked for content per split, and every data error names the file;
8. empty LLFC_* variables mean unset; LLFC_CACHE naming a file says so; files respect the umask;
9. `--out` redirects the results JSON; numpy integers are ints in TrainConfig.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from llfc_utils import cache, config, data, interpolate, metrics, models, timings, train
from llfc_utils.tools import results, run, sweep

CPU = torch.device("cpu")
TINY = config.get("smoke", "mlp").replace(train_subset=256, test_subset=128, epochs=2)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- 1. up to date


def _fake_papermill(monkeypatch, fail: bool = False) -> None:
    """papermill.execute_notebook writes an executed copy and the results JSON (then fails if asked)."""
    import papermill as pm

    def execute(src, out, parameters, **kw):
        nb = {
            "cells": [{"cell_type": "code", "outputs": [], "source": "", "metadata": {}}],
            "metadata": {"papermill": {"parameters": parameters}},
        }
        Path(out).write_text(json.dumps(nb))
        results.write("00_training", parameters["profile"], [], {"seed": parameters.get("seed")})
        if fail:  # as far as a run killed after its results cell gets
            raise KeyboardInterrupt

    monkeypatch.setattr(pm, "execute_notebook", execute)


CHANGES = {
    "parameters": lambda mp, tmp: ("smoke", {"seed": 4}),
    "profile": lambda mp, tmp: ("cpu", {"seed": 3}),
    "amp": lambda mp, tmp: mp.setenv("LLFC_AMP", "fp32"),
    "compile": lambda mp, tmp: mp.setenv("LLFC_COMPILE", "1"),
    "cache-root": lambda mp, tmp: mp.setenv("LLFC_CACHE", str(tmp / "other_cache")),
    "results-json": lambda mp, tmp: results.write("00_training", "smoke", [], {"seed": 99}),
    "error-output": None,  # handled in the test
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_up_to_date_needs_the_same_run_to_the_end(change, tmp_path, monkeypatch):
    _fake_papermill(monkeypatch)
    out = tmp_path / "book"
    run.run_chapter("00_training", "smoke", {"seed": 3}, out)
    assert run.up_to_date("00_training", "smoke", {"seed": 3}, out)
    profile, params = "smoke", {"seed": 3}
    if change == "error-output":
        path = out / "00_training.ipynb"
        nb = json.loads(path.read_text())
        nb["cells"][0]["outputs"] = [{"output_type": "error", "ename": "E", "evalue": ""}]
        path.write_text(json.dumps(nb))
    else:
        asked = CHANGES[change](monkeypatch, tmp_path)
        if isinstance(asked, tuple):
            profile, params = asked
    assert not run.up_to_date("00_training", profile, params, out), change


def test_up_to_date_needs_the_same_sources(tmp_path, monkeypatch):
    _fake_papermill(monkeypatch)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    source = notebooks / "00_training.ipynb"
    source.write_bytes((run.NOTEBOOKS / "00_training.ipynb").read_bytes())
    monkeypatch.setattr(run, "NOTEBOOKS", notebooks)
    out = tmp_path / "book"
    run.run_chapter("00_training", "smoke", {"seed": 3}, out)
    assert run.up_to_date("00_training", "smoke", {"seed": 3}, out)
    stamp = os.stat(out / "00_training.ipynb").st_mtime_ns
    source.write_text(source.read_text().replace("seed = 1", "seed = 2"))
    os.utime(source, ns=(stamp - 10**9, stamp - 10**9))  # older than the copy: mtime is no guide
    assert not run.up_to_date("00_training", "smoke", {"seed": 3}, out)


def test_a_chapter_killed_mid_run_is_not_up_to_date(tmp_path, monkeypatch):
    """Papermill saves the copy cell by cell: a killed run leaves one with the right parameters."""
    _fake_papermill(monkeypatch, fail=True)
    out = tmp_path / "book"
    with pytest.raises(KeyboardInterrupt):
        run.run_chapter("00_training", "smoke", {"seed": 3}, out)
    assert (out / "00_training.ipynb").exists() and (results.results_dir() / "00_training.json")
    assert not run.up_to_date("00_training", "smoke", {"seed": 3}, out)


# ---------------------------------------------------------------- 2. empty input, dead layers


def _pair(norm=None):
    torch.manual_seed(0)
    if norm:
        kw = {"width": 0.0625, "norm": norm, "classifier": (8,), "dropout": 0.0}
        a, b = models.build("vgg11", **kw), models.build("vgg11", **kw)
    else:
        a, b = models.build("mlp", widths=(8, 8)), models.build("mlp", widths=(8, 8))
    return a.eval(), b.eval()


EMPTY = {
    "llfc": lambda a, b, x: metrics.llfc(a, b, x, [0.5], progress=False),
    "theorem1": lambda a, b, x: metrics.theorem1(a, b, x, progress=False),
    "weak_additivity": lambda a, b, x: metrics.weak_additivity(a, b, x, progress=False),
    "commutativity": lambda a, b, x: metrics.commutativity(a, b, x, progress=False),
    "reset_bn": lambda a, b, x: interpolate.reset_bn(interpolate.lerp(a, b, 0.5), x),
}


@pytest.mark.parametrize("measure", list(EMPTY))
def test_measurements_refuse_empty_input(measure):
    a, b = _pair(norm="bn" if measure == "reset_bn" else None)
    size = 32 if measure == "reset_bn" else 28
    x = torch.randn(0, 1, size, size)
    with pytest.raises(ValueError, match="empty x"):
        EMPTY[measure](a, b, x)


def test_a_dead_layer_is_nan_with_a_warning_not_a_number_or_a_crash():
    a, b = _pair()
    with torch.no_grad():
        for m in (a, b):  # fc1 outputs zeros: it and everything up to fc2's input are dead
            m.fc1.weight.zero_()
            m.fc1.bias.zero_()
    x = torch.randn(6, 1, 28, 28)
    with pytest.warns(UserWarning, match=r"\['fc1', 'relu1'\] are dead"):
        scale = metrics.llfc(a, b, x, [0.5], progress=False)["scale_c"]
    assert np.isnan(scale["fc1"][0]) and np.isfinite(scale["fc3"][0])
    with pytest.warns(UserWarning, match="'fc2'.* are dead"):
        com = metrics.commutativity(a, b, x, progress=False)
    assert np.isnan(com["com"]["fc2"]) and np.isnan(com["dist_h"]["fc2"])
    assert np.isfinite(com["com"]["fc3"])


# ---------------------------------------------------------------- 3. runner parameters


@pytest.mark.parametrize(
    "chapter, name, value, needle",
    [
        (
            "01_lmc_basics",
            "n_alphas",
            "2",
            "interior",
        ),  # the grid [0, 1]: barrier 0 by construction
        ("01_lmc_basics", "n_alphas", "4", "odd"),  # no alpha = 0.5, which the chapters read
        ("04_weak_additivity", "alphas", "[0.0, 1.0]", "interior point"),
        ("01_lmc_basics", "train_eval_size", "-5", ">= 1"),
        ("03_permutation", "am_samples", "0", ">= 1"),
        ("00_training", "seed", "-1", ">= 0"),
        ("04_weak_additivity", "roles", "[]", "must not be empty"),  # every claim over no nets
    ],
)
def test_runner_rejects_parameters_that_make_a_claim_trivially_true(
    chapter, name, value, needle, monkeypatch, capsys
):
    ran = []
    monkeypatch.setattr(run, "run_chapter", lambda *a, **kw: ran.append(a))
    with pytest.raises(SystemExit) as e:
        run.main(["--profile", "smoke", "--chapters", chapter, "-p", name, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"parameter {name!r}" in err and needle in err and "Traceback" not in err, err
    assert ran == []


def test_dry_run_rejects_a_nested_parameter_of_the_wrong_type(capsys):
    argv = ["--profile", "smoke", "--chapters", "04_weak_additivity", "--dry-run"]
    with pytest.raises(SystemExit) as e:
        run.main([*argv, "-p", "spawn_epoch", "{'mlp': 'two', 'cnn': 3}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'spawn_epoch' must be dict like its default" in err and "'two'" in err, err


def test_out_redirects_the_results_json(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(run, "run_chapter", lambda *a, **k: seen.append(results.results_dir()))
    out = tmp_path / "smoke_book"
    assert run.main(["--profile", "smoke", "--chapters", "00_training", "--out", str(out)]) == 0
    assert seen == [out / "results", out / "results"]  # the chapter and the results page


# ---------------------------------------------------------------- 4. sweeps


def test_a_sweep_folder_belongs_to_one_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_local_client", lambda n: pytest.fail("started a cluster"))
    out = tmp_path / "sweep"
    other = out / "seed=5"  # a job of another grid, finished earlier
    other.mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps({"chapter": "01_lmc_basics", "profile": "smoke"}))
    (other / "job.json").write_text(json.dumps({"status": "done", "params": {"seed": 5}}))
    with pytest.raises(ValueError, match=r"jobs of another grid \(seed=5\)"):
        sweep.run_grid("01_lmc_basics", "smoke", {"seed": [0]}, out)


@pytest.mark.parametrize("case", ["out-is-a-file", "corrupt-sweep-json", "unreachable-scheduler"])
def test_sweep_command_line_errors_are_one_sentence(case, tmp_path, monkeypatch, capsys):
    import dask.distributed

    monkeypatch.setattr(sweep, "_local_client", lambda n: pytest.fail("started a cluster"))
    out = tmp_path / "sweep"
    argv = ["--chapter", "01_lmc_basics", "--profile", "smoke", "--grid", "seed=0"]
    argv += ["--out", str(out)]
    needle = {
        "out-is-a-file": "is a file",
        "corrupt-sweep-json": "sweep.json is unreadable",
        "unreachable-scheduler": "cannot reach the scheduler",
    }[case]
    if case == "out-is-a-file":
        out.write_text("not a folder")
    elif case == "corrupt-sweep-json":
        out.mkdir()
        (out / "sweep.json").write_text("{half a fi")
    else:

        def unreachable(address, **kw):
            raise OSError(f"Timed out trying to connect to {address} after 10 s")

        monkeypatch.setattr(dask.distributed, "Client", unreachable)
        argv += ["--scheduler", "tcp://127.0.0.1:9"]
    with pytest.raises(SystemExit) as e:
        sweep.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


# ---------------------------------------------------------------- 5. a full disk


@pytest.mark.usefixtures("fashion_mnist")
def test_a_full_disk_never_loses_the_trained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "ok"))
    ref, ref_history = train.train_model(TINY, 0, CPU)

    def full(tensors, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "full"))
    monkeypatch.setenv("LLFC_RESUME_SECONDS", "0")  # the resume checkpoint fails first
    monkeypatch.setattr(cache, "save_file", full)
    with pytest.warns(UserWarning) as caught:
        model, history = train.train_model(TINY, 0, CPU)
    messages = [str(w.message) for w in caught if "could not write checkpoint" in str(w.message)]
    assert len(messages) == 2, messages  # one resume checkpoint, then the final one
    assert "training goes on" in messages[0]
    assert "kept in memory" in messages[1] and str(tmp_path / "full") in messages[1]
    assert _same(_state(model), _state(ref))
    assert history["train_loss"] == ref_history["train_loss"]


# ---------------------------------------------------------------- 6. sidecar checksum


def _edit_meta(spec, edit) -> None:
    _, sidecar = cache.paths(spec)
    record = json.loads(sidecar.read_text())
    edit(record)
    sidecar.write_text(json.dumps(record))


SIDECAR_EDITS = {
    "epoch": lambda r: r["meta"].update(epoch=0),
    "history": lambda r: r["meta"]["history"]["test_acc"].__setitem__(0, 1.0),
    "empty-meta": lambda r: r.update(meta={}),
    "older-format": lambda r: r.pop("checksum", None),  # and nothing else changed
}


@pytest.mark.usefixtures("fashion_mnist")
@pytest.mark.parametrize("edit", list(SIDECAR_EDITS))
def test_checkpoint_metadata_is_covered_by_the_checksum(edit, count_epochs):
    cfg = TINY.replace(epochs=1)
    train.train_model(cfg, 0, CPU)
    spec = train._spec(cfg, 0, [[0, 1]], CPU)
    _edit_meta(spec, SIDECAR_EDITS[edit])
    with pytest.warns(cache.CheckpointWarning, match="checksum"):
        assert cache.load(spec) is None
    epochs = count_epochs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cache.CheckpointWarning)
        train.train_model(cfg, 0, CPU)
    assert epochs == [0], "an edited checkpoint was trusted instead of retrained"
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CheckpointWarning)
        assert cache.load(spec) is not None  # the rebuilt one is trusted


# ---------------------------------------------------------------- 7. data content

SMALL_SIZES = ({"train": 6, "test": 4}, (1, 28, 28))


def _small_splits(monkeypatch) -> None:
    """Fashion-MNIST splits of 6 and 4 images, so the fake files stay tiny."""
    sizes = {**getattr(data, "SIZES", {}), "fashion_mnist": SMALL_SIZES}
    monkeypatch.setattr(data, "SIZES", sizes, raising=False)


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_fashion(root: Path, sizes=(6, 4), labels=None) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in zip(("train", "t10k"), sizes, strict=True):
        _idx(raw / f"{stem}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)))
        lab = np.arange(n) % 10 if labels is None else labels[stem]
        _idx(raw / f"{stem}-labels-idx1-ubyte.gz", np.asarray(lab))
    return raw


DATA_DAMAGE = {
    "label-out-of-range": (lambda raw: _idx(raw / "train-labels-idx1-ubyte.gz", np.full(6, 10))),
    "label-count": (lambda raw: _idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(5))),
    "train-test-swapped": None,  # built below
    "truncated-gzip": (
        lambda raw: (raw / "train-images-idx3-ubyte.gz").write_bytes(
            (raw / "train-images-idx3-ubyte.gz").read_bytes()[:30]
        )
    ),
    "not-gzip": (lambda raw: (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>")),
}


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_data_content_is_checked_per_split_and_errors_name_the_file(
    damage, tmp_path, monkeypatch, capsys
):
    _small_splits(monkeypatch)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not_installed")
    monkeypatch.setenv("LLFC_DATA", str(tmp_path / "root"))
    raw = _fake_fashion(
        tmp_path / "root", sizes=(4, 6) if damage == "train-test-swapped" else (6, 4)
    )
    if DATA_DAMAGE[damage]:
        DATA_DAMAGE[damage](raw)
    with pytest.raises(ValueError) as e:
        data.load("fashion_mnist", "train", download=False)
    assert str(raw) in str(e.value), e.value
    assert data.main(["--no-download", "fashion_mnist"]) == 1
    out, err = capsys.readouterr()
    assert "ok" not in out and str(raw) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_data_content_check_passes_good_files(tmp_path, monkeypatch):
    _small_splits(monkeypatch)
    monkeypatch.setenv("LLFC_DATA", str(tmp_path / "root"))
    _fake_fashion(tmp_path / "root")
    assert len(data.load("fashion_mnist", "train", download=False)[1]) == 6
    assert len(data.load("fashion_mnist", "test", download=False)[1]) == 4


# ---------------------------------------------------------------- 8. environment


def test_empty_llfc_variables_mean_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("HOME", "CACHE", "DATA", "RESULTS", "TIMINGS", "RESUME_SECONDS", "PROFILE"):
        monkeypatch.setenv(f"LLFC_{name}", "")
    base = tmp_path / ".cache" / "llfc_book"
    assert cache.cache_dir() == base / "checkpoints"
    assert data.data_root() == base / "data"
    assert timings.timings_path() == base / "epoch_seconds.json"
    assert train.resume_seconds() == 30
    assert results.results_dir() == run.OUTPUT / "results"
    from llfc_utils.tools import colab

    assert colab.choose_profile("smoke") == "smoke"


def test_llfc_cache_naming_a_file_says_so(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "checkpoints.txt"
    not_a_folder.write_text("")
    monkeypatch.setenv("LLFC_CACHE", str(not_a_folder))
    with pytest.raises(
        ValueError, match=r"checkpoints.txt .*is a file, not a folder; set LLFC_CACHE"
    ):
        cache.lock({"any": "spec"})


@pytest.mark.usefixtures("fashion_mnist")
def test_files_the_cache_writes_respect_the_umask(_isolated_cache):
    old = os.umask(0o002)  # a lab group sharing one cache
    try:
        train.train_model(TINY.replace(epochs=1), 0, CPU)
    finally:
        os.umask(old)
    written = [*_isolated_cache.glob("*.safetensors"), *_isolated_cache.glob("*.json")]
    written.append(timings.timings_path())
    assert len(written) == 3
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, (path, oct(path.stat().st_mode))


# ---------------------------------------------------------------- 9. numpy integers


def test_numpy_integers_are_ints_in_train_config():
    cfg = TINY.replace(epochs=np.int64(3), batch_size=np.int32(64), train_subset=np.int64(256))
    assert type(cfg.epochs) is int and type(cfg.batch_size) is int
    same = TINY.replace(epochs=3, batch_size=64)
    assert cfg == same and cache.key_of(cfg.identity()) == cache.key_of(same.identity())
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got True"):
        TINY.replace(epochs=True)


def test_train_config_fields_of_the_wrong_type_are_a_clear_error():
    for field, bad in (("lr", "0.1"), ("weight_decay", None), ("momentum", 1.5)):
        with pytest.raises(ValueError, match=f"TrainConfig: {field} must be a number"):
            TINY.replace(**{field: bad})


@pytest.mark.usefixtures("fashion_mnist")
def test_numpy_integers_are_ints_for_data_subsets():
    x, y = data.load("fashion_mnist", "test", subset=np.int64(5), download=False)
    assert len(x) == len(y) == 5
