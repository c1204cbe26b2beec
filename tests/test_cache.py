"""llfc_utils.cache: round trips, keys, rejection of untrustworthy files, and resuming a run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings

import pytest
import torch
from safetensors.torch import save_file

from llfc_utils import cache, config, train

CPU = torch.device("cpu")
SPEC = {"config": {"lr": 0.05, "milestones": [80, 120]}, "init_seed": 0, "segments": [[0, 3]]}
META = {"history": {"train_loss": [2.3, 1.5]}, "epoch": 2}


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(4, 5, generator=g),
        "b": torch.randn(5, generator=g).double(),
        "h": torch.randn(3, generator=g).bfloat16(),
        "step": torch.tensor(7, dtype=torch.int64),
    }


@contextlib.contextmanager
def _no_checkpoint_warnings():
    """Turn a CheckpointWarning into an error inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CheckpointWarning)
        yield


def _edit_sidecar(spec, edit):
    _, sidecar = cache.paths(spec)
    record = json.loads(sidecar.read_text())
    edit(record)
    sidecar.write_text(json.dumps(record))


# ---------------------------------------------------------------- round trip and keys


def test_round_trip(_isolated_cache):
    tensors = _tensors()
    weights = cache.save(SPEC, tensors, META)
    assert weights.parent == _isolated_cache  # honours $LLFC_CACHE
    assert weights == cache.paths(SPEC)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, meta = cache.load(SPEC)
    assert got.keys() == tensors.keys()
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t), k
    assert meta == META
    record = json.loads(cache.paths(SPEC)[1].read_text())
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert not list(_isolated_cache.glob("*.tmp"))  # no temporary files left behind


def test_absent_checkpoint_is_none_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(SPEC) is None


def test_save_overwrites_and_remove_deletes():
    cache.save(SPEC, {"w": torch.zeros(2)}, {"n": 1})
    cache.save(SPEC, {"w": torch.ones(2)}, {"n": 2})
    tensors, meta = cache.load(SPEC)
    assert torch.equal(tensors["w"], torch.ones(2)) and meta == {"n": 2}
    cache.remove(SPEC)
    assert not any(p.exists() for p in cache.paths(SPEC))
    assert cache.load(SPEC) is None
    cache.remove(SPEC)  # removing twice is fine


def test_key_changes_with_every_spec_field(monkeypatch):
    base = train._spec(config.get("smoke", "mlp"), 0, [[0, 1]], CPU)
    cfg = config.get("smoke", "mlp")
    variants = [
        train._spec(cfg.replace(lr=0.051), 0, [[0, 1]], CPU),
        train._spec(cfg.replace(model_kwargs={"widths": (64, 64)}), 0, [[0, 1]], CPU),
        train._spec(cfg.replace(train_subset=1023), 0, [[0, 1]], CPU),
        train._spec(cfg.replace(augment=True), 0, [[0, 1]], CPU),
        train._spec(cfg, 1, [[0, 1]], CPU),
        train._spec(cfg, 0, [[1, 1]], CPU),
        train._spec(cfg, 0, [[0, 1], [1, 0]], CPU),
        train._spec(cfg, 0, [[0, 1]], torch.device("cuda")),
        {**base, "resume": True},
    ]
    keys = {cache.key_of(base)} | {cache.key_of(v) for v in variants}
    assert len(keys) == 1 + len(variants)
    # the key depends on content, not on dict order
    shuffled = dict(reversed(list(base.items())))
    assert cache.key_of(shuffled) == cache.key_of(base)
    # ... and on the training-semantics version
    old = cache.key_of(base)
    monkeypatch.setattr(cache, "VERSION", cache.VERSION + 1)
    assert cache.key_of(base) != old


def test_a_version_bump_hides_old_checkpoints(monkeypatch):
    cache.save(SPEC, _tensors(), META)
    monkeypatch.setattr(cache, "VERSION", cache.VERSION + 1)
    assert cache.load(SPEC) is None


def test_round_trip_with_tuples_in_the_spec():
    """train._spec keeps tuples (e.g. widths=(64, 64, 64)); JSON turns them into lists."""
    spec = {"config": {"model_kwargs": {"widths": (64, 64)}}, "segments": [[0, 1]]}
    cache.save(spec, _tensors(), META)
    with _no_checkpoint_warnings():
        assert cache.load(spec) is not None


# ---------------------------------------------------------------- rejected files


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_tensor_file_is_rejected(damage):
    weights = cache.save(SPEC, _tensors(), META)
    blob = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        i = len(blob) - 3  # inside the tensor data, past the header
        weights.write_bytes(blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :])
    else:
        weights.unlink()
    with pytest.warns(cache.CheckpointWarning):
        assert cache.load(SPEC) is None


def test_sidecar_with_an_edited_spec_is_rejected():
    cache.save(SPEC, _tensors(), META)
    _edit_sidecar(SPEC, lambda r: r["spec"].update(init_seed=1))
    with pytest.warns(cache.CheckpointWarning, match="different run"):
        assert cache.load(SPEC) is None


def test_sidecar_of_another_version_is_rejected():
    cache.save(SPEC, _tensors(), META)
    _edit_sidecar(SPEC, lambda r: r.update(version=cache.VERSION + 1))
    with pytest.warns(cache.CheckpointWarning, match="version"):
        assert cache.load(SPEC) is None


def test_unreadable_sidecar_is_rejected():
    cache.save(SPEC, _tensors(), META)
    cache.paths(SPEC)[1].write_text('{"key": "abc", "vers')
    with pytest.warns(cache.CheckpointWarning):
        assert cache.load(SPEC) is None


@pytest.mark.parametrize("text", ["null", "[1, 2]"])
def test_sidecar_that_is_not_a_json_object_is_rejected(text):
    cache.save(SPEC, _tensors(), META)
    cache.paths(SPEC)[1].write_text(text)
    with pytest.warns(cache.CheckpointWarning):
        assert cache.load(SPEC) is None


def test_forged_checkpoint_with_nan_is_rejected():
    """A well-formed, correctly checksummed file with NaN inside is still not trusted."""
    weights, sidecar = cache.paths(SPEC)
    weights.parent.mkdir(parents=True, exist_ok=True)
    bad = {"w": torch.tensor([1.0, float("nan")]), "ok": torch.zeros(3)}
    save_file(bad, str(weights))
    record = {
        "key": cache.key_of(SPEC),
        "version": cache.VERSION,
        "spec": SPEC,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "meta": META,
    }
    record["checksum"] = cache._record_sha256(record)  # the sidecar's own checksum, forged too
    sidecar.write_text(json.dumps(record))
    with pytest.warns(cache.CheckpointWarning, match="non-finite"):
        assert cache.load(SPEC) is None
    # the same forgery with finite values is accepted: only the NaN was wrong
    save_file({"w": torch.tensor([1.0, 2.0]), "ok": torch.zeros(3)}, str(weights))
    record["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    record["checksum"] = cache._record_sha256(record)
    sidecar.write_text(json.dumps(record))
    with _no_checkpoint_warnings():
        assert cache.load(SPEC) is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_save_refuses_non_finite_tensors(value):
    tensors = {"ok": torch.zeros(2), "bad": torch.tensor([0.0, value])}
    with pytest.raises(ValueError, match="bad"):
        cache.save(SPEC, tensors, META)
    assert not any(p.exists() for p in cache.paths(SPEC))


def test_failed_write_leaves_nothing(monkeypatch, _isolated_cache):
    def boom(tensors, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(cache, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.save(SPEC, _tensors(), META)
    assert not any(p.exists() for p in cache.paths(SPEC))
    assert list(_isolated_cache.iterdir()) == []


# ---------------------------------------------------------------- caching and resuming runs

SMOKE3 = config.get("smoke", "mlp").replace(train_subset=1024, test_subset=256, epochs=3)
# The same net with its widths as a list: the spec must not depend on tuple vs list.
SMOKE3_LIST = SMOKE3.replace(model_kwargs={"widths": [64, 64, 64]})


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _interrupt_at(monkeypatch, stop):
    real = train.train_epoch

    def dying(model, opt, cfg, x, y, epoch, data_seed):
        if epoch == stop:
            raise KeyboardInterrupt
        return real(model, opt, cfg, x, y, epoch, data_seed)

    monkeypatch.setattr(train, "train_epoch", dying)


@pytest.mark.usefixtures("fashion_mnist")
def test_killed_run_resumes_to_the_same_weights(count_epochs, tmp_path, monkeypatch):
    cfg = SMOKE3
    monkeypatch.setenv("LLFC_RESUME_SECONDS", "0")  # a resume checkpoint after every epoch
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "A"))
    ref, href = train.train_model(cfg, 0, CPU)

    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "B"))
    spec = train._spec(cfg, 0, [[0, 3]], CPU)
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train.train_model(cfg, 0, CPU)
    resume = cache.paths({**spec, "resume": True})
    assert all(p.exists() for p in resume), "no resume checkpoint after the interrupt"
    assert not any(p.exists() for p in cache.paths(spec))
    assert json.loads(resume[1].read_text())["meta"]["epoch"] == 2

    epochs = count_epochs()
    with _no_checkpoint_warnings():
        model, history = train.train_model(cfg, 0, CPU)
    assert epochs == [2]  # resumed, not restarted
    assert _same(model, ref)
    assert len(history["train_loss"]) == 3
    assert history["train_loss"] == href["train_loss"]
    assert all(p.exists() for p in cache.paths(spec))
    assert not any(p.exists() for p in resume)  # cleaned up once the run is complete


@pytest.mark.usefixtures("fashion_mnist")
def test_resume_checkpoints_are_written_at_most_every_resume_seconds(
    count_epochs, tmp_path, monkeypatch
):
    """With 20 s epochs and a 30 s interval, the checkpoint after epoch 2 is written, not 1 or 3."""
    cfg = SMOKE3.replace(epochs=5)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "A"))
    ref, href = train.train_model(cfg, 0, CPU)

    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "B"))
    monkeypatch.setenv("LLFC_RESUME_SECONDS", "30")
    clock = [0.0]
    real = train.train_epoch

    def slow(model, opt, cfg, x, y, epoch, data_seed):
        if epoch == 3:
            raise KeyboardInterrupt
        clock[0] += 20.0  # every epoch "takes" 20 s of the fake clock
        return real(model, opt, cfg, x, y, epoch, data_seed)

    with monkeypatch.context() as m:
        m.setattr(train, "train_epoch", slow)
        m.setattr(train.time, "perf_counter", lambda: clock[0])
        with pytest.raises(KeyboardInterrupt):
            train.train_model(cfg, 0, CPU)
    spec = train._spec(cfg, 0, [[0, 5]], CPU)
    resume = cache.paths({**spec, "resume": True})
    assert json.loads(resume[1].read_text())["meta"]["epoch"] == 2  # saved at 40 s, not 20 or 60

    epochs = count_epochs()
    with _no_checkpoint_warnings():
        model, history = train.train_model(cfg, 0, CPU)
    assert epochs == [2, 3, 4]  # lost the one epoch after the checkpoint, nothing more
    assert _same(model, ref) and history["train_loss"] == href["train_loss"]


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_resume_interval_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv("LLFC_RESUME_SECONDS", value)
    with pytest.raises(ValueError, match="LLFC_RESUME_SECONDS.*unset it"):
        train.resume_seconds()


@pytest.mark.usefixtures("fashion_mnist")
def test_adam_run_resumes_exactly(count_epochs, tmp_path, monkeypatch):
    """Adam's state (moments and a step count) survives the resume checkpoint."""
    cfg = SMOKE3.replace(optimizer="adam", lr=1e-3)
    monkeypatch.setenv("LLFC_RESUME_SECONDS", "0")
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "A"))
    ref, href = train.train_model(cfg, 0, CPU)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "B"))
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            train.train_model(cfg, 0, CPU)
    epochs = count_epochs()
    with _no_checkpoint_warnings():
        model, history = train.train_model(cfg, 0, CPU)
    assert epochs == [2]
    assert _same(model, ref)  # model *and* optimiser state were restored exactly
    assert history["train_loss"] == href["train_loss"]


@pytest.mark.usefixtures("fashion_mnist")
@pytest.mark.parametrize("cfg", [SMOKE3, SMOKE3_LIST], ids=["tuple-widths", "list-widths"])
def test_a_finished_run_is_loaded_not_retrained(count_epochs, monkeypatch, cfg):
    ref, href = train.train_model(cfg, 0, CPU)
    epochs = count_epochs()
    with _no_checkpoint_warnings():
        model, history = train.train_model(cfg, 0, CPU)
    assert epochs == []
    assert _same(model, ref) and history == href


@pytest.mark.usefixtures("fashion_mnist")
def test_a_corrupt_final_checkpoint_is_retrained(count_epochs, monkeypatch):
    cfg = SMOKE3_LIST.replace(epochs=1)
    ref, _ = train.train_model(cfg, 0, CPU)
    weights, _ = cache.paths(train._spec(cfg, 0, [[0, 1]], CPU))
    weights.write_bytes(weights.read_bytes()[:-10])
    epochs = count_epochs()
    with pytest.warns(cache.CheckpointWarning):
        model, _ = train.train_model(cfg, 0, CPU)
    assert epochs == [0]
    assert _same(model, ref)
    with _no_checkpoint_warnings():  # and the rebuilt checkpoint is good again
        assert cache.load(train._spec(cfg, 0, [[0, 1]], CPU)) is not None
