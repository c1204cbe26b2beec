"""Reliability: bad inputs fail early and clearly, bad files are never trusted, runs are reproducible.

One named test (or a small parametrised group) per guarantee:

1. unknown names list the valid ones;
2. bad alphas, batch sizes and subsets are refused;
3. models of different shapes are refused, naming the first mismatching entry and both shapes;
4. untrustworthy checkpoints are never loaded, and training rebuilds them;
5. a training run killed with SIGKILL resumes to bit-identical weights;
6. two processes building the same checkpoint at once agree, and leave one clean checkpoint;
7. without data and without network, the error says how to get the data, nothing half-written
   stays behind, and downloads are checksummed;
8. the notebook runner rejects bad parameters before any notebook runs;
9. nothing in the code unpickles;
10. the same seed gives bit-identical weights and metrics;
11. a diverging run stops with a clear error and caches nothing.

Checks that spawn processes use tiny subsets; the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llfc_utils import (
    cache,
    config,
    data,
    features,
    interpolate,
    metrics,
    models,
    permute,
    train,
)
from llfc_utils.tools import run
from llfc_utils.tools.paths import NOTEBOOKS, ROOT

CPU = torch.device("cpu")
# The config the subprocess tests train (6 epochs of the smoke MLP on 512 images).
SUB = config.get("smoke", "mlp").replace(train_subset=512, test_subset=128, epochs=6)
# A cheaper one for tests that train several times in-process.
TINY = SUB.replace(epochs=2)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _sha256_of_state(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _mlp_pair(widths_a=(16, 16), widths_b=(16, 16)) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = models.build("mlp", widths=widths_a).eval()
    torch.manual_seed(1)
    b = models.build("mlp", widths=widths_b).eval()
    return a, b


# ---------------------------------------------------------------- 1. unknown names


def _raises_listing(call, bad: str, valid) -> None:
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert repr(bad) in msg or bad in msg, msg
    for name in valid:
        assert name in msg, f"{name!r} missing from: {msg}"


def test_unknown_names_list_the_valid_ones(capsys):
    _raises_listing(lambda: models.build("nope"), "nope", models.NAMES)
    _raises_listing(lambda: data.load("nope", "train"), "nope", data.NAMES)
    _raises_listing(lambda: data.load("fashion_mnist", "nope"), "nope", data.SPLITS)
    _raises_listing(lambda: config.profile("nope"), "nope", config.PROFILES)
    _raises_listing(lambda: config.get("smoke", "nope"), "nope", config.PROFILES["smoke"])
    _raises_listing(lambda: TINY.replace(model="nope"), "nope", models.NAMES)
    _raises_listing(lambda: TINY.replace(dataset="nope"), "nope", data.NAMES)
    _raises_listing(lambda: TINY.replace(optimizer="nope"), "nope", config.OPTIMIZERS)
    _raises_listing(lambda: TINY.replace(schedule="nope"), "nope", config.SCHEDULES)
    _raises_listing(lambda: config.TrainConfig(optimizer="nope"), "nope", config.OPTIMIZERS)
    _raises_listing(lambda: config.TrainConfig(schedule="nope"), "nope", config.SCHEDULES)

    with pytest.raises(SystemExit) as e:
        run.main(["--chapters", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err
    chapters = run.chapters()
    assert chapters, "no chapters found"
    for name in chapters:
        assert name in err, f"chapter {name!r} missing from: {err}"


# ---------------------------------------------------------------- 2. bad alpha, batch, subset


@pytest.mark.parametrize(
    "case",
    [
        "lerp-alpha",
        "lerp-extrapolate",
        "lerp-nonfinite-extrapolate",
        "lmc-grid",
        "batch-size",
        "batch-size-activation-matching",
        "subset",
    ],
)
def test_bad_alpha_batch_and_subset(case, request):
    a, b = _mlp_pair()
    x = torch.randn(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    if case == "lerp-alpha":
        for alpha in (-0.1, 1.1, 2.0):
            with pytest.raises(ValueError, match="alpha.*extrapolate"):
                interpolate.lerp(a, b, alpha)
        for alpha in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match="alpha"):
                interpolate.lerp(a, b, alpha)
        for alpha in (0.0, 0.5, 1.0):
            interpolate.lerp(a, b, alpha)
    elif case == "lerp-extrapolate":
        m = interpolate.lerp(a, b, 1.5, extrapolate=True)
        w = 1.5 * a.fc1.weight - 0.5 * b.fc1.weight
        assert torch.allclose(m.fc1.weight, w, atol=1e-6)
        interpolate.lerp(a, b, -0.5, extrapolate=True)
    elif case == "lerp-nonfinite-extrapolate":
        for alpha in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(ValueError, match="alpha"):
                interpolate.lerp(a, b, alpha, extrapolate=True)
    elif case == "lmc-grid":
        for grid in ([], [0.5], [0.5, 0.5]):
            with pytest.raises(ValueError, match="alpha"):
                interpolate.lmc_curve(a, b, {"test": (x, y)}, grid, progress=False)
        with pytest.raises(ValueError, match="outside"):
            interpolate.lmc_curve(a, b, {"test": (x, y)}, [0.0, 1.5], progress=False)
        curve = interpolate.lmc_curve(a, b, {"test": (x, y)}, [0.0, 1.0], progress=False)
        assert len(curve["test_loss"]) == 2
    elif case == "batch-size":
        layers = features.layers(a)
        for bs in (0, -1):
            with pytest.raises(ValueError, match="batch_size"):
                train.evaluate(a, x, y, batch_size=bs)
            with pytest.raises(ValueError, match="batch_size"):
                next(features.iter_features([a, b], x, layers, batch_size=bs))
            with pytest.raises(ValueError, match="batch_size"):
                metrics.llfc(a, b, x, [0.5], batch_size=bs, progress=False)
    elif case == "batch-size-activation-matching":
        spec = permute.spec_for(a)
        for bs in (0, -1):
            with pytest.raises(ValueError, match="batch_size"):
                permute.activation_matching(spec, a, b, x, batch_size=bs)
        with pytest.raises(ValueError, match="empty"):
            permute.activation_matching(spec, a, b, x[:0])
    else:  # subset
        request.getfixturevalue("fashion_mnist")
        with pytest.raises(ValueError, match=r"10001.*10000") as e:
            data.load("fashion_mnist", "test", subset=10_001)
        assert "fashion_mnist" in str(e.value)
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="subset"):
                data.load("fashion_mnist", "test", subset=bad)
        assert len(data.load("fashion_mnist", "test", subset=10_000)[1]) == 10_000


# ---------------------------------------------------------------- 3. mismatched models


@pytest.mark.parametrize("where", ["lerp", "llfc", "align", "lmc_curve"])
def test_mismatched_models_name_the_parameter(where):
    a, b = _mlp_pair(widths_a=(16, 16), widths_b=(8, 16))
    x = torch.randn(4, 1, 28, 28)
    y = torch.randint(0, 10, (4,))
    call = {
        "lerp": lambda: interpolate.lerp(a, b, 0.5),
        "llfc": lambda: metrics.llfc(a, b, x, [0.5], progress=False),
        "align": lambda: permute.align(a, b, "wm"),
        "lmc_curve": lambda: interpolate.lmc_curve(a, b, {"t": (x, y)}, [0, 1], progress=False),
    }[where]
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    # fc1.weight is the first entry that differs: (16, 784) in A, (8, 784) in B
    assert "fc1.weight" in msg and "(16, 784)" in msg and "(8, 784)" in msg, msg
    assert "fc2" not in msg  # the *first* mismatch, not a later one


# ---------------------------------------------------------------- 4. bad checkpoints


def _rewrite_tensors(spec, edit, fix_checksum: bool = True) -> None:
    """Replace the tensor file of `spec` by edit(tensors); with a matching checksum: a forgery."""
    weights, sidecar = cache.paths(spec)
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, str(weights))
    if not fix_checksum:
        return
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    record["checksum"] = cache._record_sha256(record)  # a forgery that fixes every checksum
    sidecar.write_text(json.dumps(record))


def _edit_sidecar(spec, edit) -> None:
    _, sidecar = cache.paths(spec)
    record = json.loads(sidecar.read_text())
    edit(record)
    sidecar.write_text(json.dumps(record))


def _poison(value: float):
    def edit(tensors):
        name = next(k for k in sorted(tensors) if k.startswith("model.") and "weight" in k)
        t = tensors[name].clone()
        t.view(-1)[3] = value
        tensors[name] = t

    return edit


def _truncate(spec) -> None:
    weights, _ = cache.paths(spec)
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])


DAMAGE = {
    "nan": lambda spec, mp: _rewrite_tensors(spec, _poison(float("nan"))),
    "inf": lambda spec, mp: _rewrite_tensors(spec, _poison(float("inf"))),
    "truncated": lambda spec, mp: _truncate(spec),
    # a well-formed file with finite values that is not the one the sidecar describes
    "modified": lambda spec, mp: _rewrite_tensors(spec, _poison(0.125), fix_checksum=False),
    "spec-mismatch": lambda spec, mp: _edit_sidecar(spec, lambda r: r["spec"].update(init_seed=7)),
    "version-in-sidecar": lambda spec, mp: _edit_sidecar(
        spec, lambda r: r.update(version=cache.VERSION - 1)
    ),
    "version-bump": lambda spec, mp: mp.setattr(cache, "VERSION", cache.VERSION + 1),
}


@pytest.mark.usefixtures("fashion_mnist")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_bad_checkpoints_are_never_loaded(count_epochs, damage, monkeypatch):
    cfg = TINY.replace(epochs=1)
    spec = train._spec(cfg, 0, [[0, 1]], CPU)
    ref, _ = train.train_model(cfg, 0, CPU)  # a fresh training
    ref_state = _state(ref)
    assert cache.load(spec) is not None

    DAMAGE[damage](spec, monkeypatch)
    if damage == "version-bump":
        # The key includes VERSION, so an old-version checkpoint is simply not found:
        # it can never be loaded (and there is nothing to warn about at the new key).
        with warnings.catch_warnings():
            warnings.simplefilter("error", cache.CheckpointWarning)
            assert cache.load(spec) is None
    else:
        with pytest.warns(cache.CheckpointWarning):
            assert cache.load(spec) is None

    epochs = count_epochs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cache.CheckpointWarning)
        model, _ = train.train_model(cfg, 0, CPU)
    assert epochs == [0], "the damaged checkpoint was loaded instead of retrained"
    assert _same_state(_state(model), ref_state)
    with warnings.catch_warnings():  # the rebuilt checkpoint is trusted again
        warnings.simplefilter("error", cache.CheckpointWarning)
        hit = cache.load(spec)
    assert hit is not None
    assert all(torch.isfinite(t).all() for t in hit[0].values() if t.is_floating_point())


# ---------------------------------------------------------------- 5 and 6: real processes

_CHILD = textwrap.dedent(
    """
    import hashlib, os, signal, sys, time
    from pathlib import Path

    import torch

    torch.set_num_threads(int(sys.argv[1]))
    from llfc_utils import config, train

    kill_at, barrier, n_procs = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    cfg = config.get("smoke", "mlp").replace(train_subset=512, test_subset=128, epochs=6)

    calls = []
    real = train.train_epoch

    def hooked(*args, **kwargs):
        calls.append(args[5])
        if kill_at and len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # dies like an OOM kill: no cleanup at all
        return real(*args, **kwargs)

    train.train_epoch = hooked

    if barrier != "-":  # start training at the same moment as the other processes
        train.make_optimizer(cfg, train.build_model(cfg, 0))  # one-time imports first
        Path(barrier, f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(Path(barrier).glob("ready-*"))) < n_procs:
            assert time.monotonic() < deadline, "the other process never started"
            time.sleep(0.01)

    model, history = train.train_model(cfg, 0, "cpu")
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    print("EPOCHS", ",".join(map(str, calls)))
    print("SHA256", h.hexdigest())
    """
)


def _child(cache_dir: Path, kill_at: int = 0, barrier: Path | None = None, n_procs: int = 1):
    env = {**os.environ, "LLFC_CACHE": str(cache_dir), "LLFC_PROGRESS": "0"}
    env["LLFC_RESUME_SECONDS"] = "0"  # a resume checkpoint after every epoch
    args = [str(torch.get_num_threads()), str(kill_at), str(barrier or "-"), str(n_procs)]
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(proc) -> tuple[list[int], str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{out}\n{err}"
    lines = dict(
        line.split(" ", 1) for line in out.splitlines() if line[:6] in ("EPOCHS", "SHA256")
    )
    epochs = [int(e) for e in lines["EPOCHS"].split(",") if e]
    return epochs, lines["SHA256"].strip()


@pytest.mark.usefixtures("fashion_mnist")
def test_killed_training_resumes_to_identical_weights(count_epochs, tmp_path, monkeypatch):
    killed = tmp_path / "killed"
    proc = _child(killed, kill_at=4)  # SIGKILL at the start of the 4th epoch (epochs 0-2 done)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"{proc.returncode}\n{out}\n{err}"

    monkeypatch.setenv("LLFC_CACHE", str(killed))
    spec = train._spec(SUB, 0, [[0, 6]], CPU)
    resume = cache.paths({**spec, "resume": True})
    assert all(p.exists() for p in resume), "no resume checkpoint survived the SIGKILL"
    assert json.loads(resume[1].read_text())["meta"]["epoch"] == 3
    assert not any(p.exists() for p in cache.paths(spec))

    epochs = count_epochs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CheckpointWarning)
        model, history = train.train_model(SUB, 0, CPU)
    assert epochs == [3, 4, 5], "did not resume from the last finished epoch"
    assert not any(p.exists() for p in resume)
    assert not [p for p in killed.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "uninterrupted"))
    ref, ref_history = train.train_model(SUB, 0, CPU)
    assert _same_state(_state(model), _state(ref))
    assert history["train_loss"] == ref_history["train_loss"]
    assert history["test_acc"] == ref_history["test_acc"]


@pytest.mark.usefixtures("fashion_mnist")
def test_concurrent_builders_agree(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [_child(shared, barrier=barrier, n_procs=2) for _ in range(2)]
    reports = [_report(p) for p in procs]
    (epochs_1, sha_1), (epochs_2, sha_2) = reports
    assert sha_1 == sha_2
    # the lock lets exactly one of them train; the other loads what it built
    assert sorted([epochs_1, epochs_2]) == [[], [0, 1, 2, 3, 4, 5]], reports

    monkeypatch.setenv("LLFC_CACHE", str(shared))
    spec = train._spec(SUB, 0, [[0, 6]], CPU)
    weights, sidecar = cache.paths(spec)
    names = sorted(p.name for p in shared.iterdir() if not p.name.endswith(".lock"))
    assert names == sorted([weights.name, sidecar.name]), (
        names
    )  # one checkpoint, no .tmp, no resume
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CheckpointWarning)
        tensors, meta = cache.load(spec)
    assert meta["epoch"] == 6
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    assert _sha256_of_state(state) == sha_1


# ---------------------------------------------------------------- 7. offline, no data


@pytest.fixture
def no_local_data(tmp_path, monkeypatch) -> Path:
    """An empty data root and no Debian package: only a download could find the data."""
    root = tmp_path / "empty_data_root"
    root.mkdir()
    monkeypatch.setenv("LLFC_DATA", str(root))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not_installed")
    return root


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_offline_without_data(no_local_data, monkeypatch):
    import torchvision

    calls = []

    class Unreachable:
        """Writes part of a file where torchvision would, then loses the network."""

        def __init__(self, root, train=True, download=False, **kw):
            calls.append(root)
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True)
            (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half a file")
            raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Unreachable)
    with pytest.raises(data.DataUnavailable) as e:
        data.load("fashion_mnist", "train")
    msg = str(e.value)
    for needle in ("dataset-fashion-mnist", "LLFC_DATA", "download", "Network is unreachable"):
        assert needle in msg, f"{needle!r} missing from:\n{msg}"
    assert len(calls) == 1, "the download was not attempted"
    assert Path(calls[0]).parent == no_local_data  # it downloaded into a folder of the root ...
    assert _leftovers(no_local_data) == []  # ... which is gone again, half file and all
    with pytest.raises(data.DataUnavailable):  # and nothing half-written is mistaken for data
        data.load("fashion_mnist", "test", download=False)


def test_offline_without_data_downloads_carry_checksums(no_local_data, monkeypatch):
    import torchvision
    from torchvision.datasets import utils as tv_utils

    md5 = re.compile(r"^[0-9a-f]{32}$")
    for cls in (torchvision.datasets.MNIST, torchvision.datasets.FashionMNIST):
        assert cls.resources, cls
        for filename, digest in cls.resources:
            assert isinstance(digest, str) and md5.match(digest), (cls.__name__, filename)

    recorded = []

    def record(url, download_root, *args, **kwargs):
        recorded.append(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", record)
    with pytest.raises(data.DataUnavailable):
        data.load("cifar10", "test")
    assert len(recorded) == 1 and md5.match(recorded[0].get("md5") or ""), recorded
    assert _leftovers(no_local_data) == []


@pytest.mark.parametrize("name", data.NAMES)
def test_offline_without_data_corrupt_download_fails_its_checksum(name, no_local_data, monkeypatch):
    """A download that returns the wrong bytes is refused by its md5, and nothing stays behind."""
    from torchvision.datasets import utils as tv_utils

    fetched = []

    def garbage(url, filename, *args, **kwargs):
        fetched.append(url)
        Path(filename).write_bytes(b"<html>captive portal</html>")

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", garbage)
    with pytest.raises(data.DataUnavailable) as e:
        data.load(name, "test")
    assert fetched, "nothing was downloaded"
    assert "corrupted" in str(e.value.__cause__), repr(e.value.__cause__)
    assert _leftovers(no_local_data) == []


# ---------------------------------------------------------------- 8. runner parameters


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["-p", "sead", "3"], "no parameter 'sead'"),
        (["--chapters", "00_training", "-p", "seed", "three"], "'seed' must be int"),
        (["--chapters", "00_training", "-p", "seed", "1.5"], "'seed' must be int"),
        (["--chapters", "00_training", "-p", "seed", "True"], "'seed' must be int"),
        (["--chapters", "01_lmc_basics", "-p", "n_alphas", "[3]"], "'n_alphas' must be int"),
        (["--chapters", "00_training", "-p", "profile", "tpu"], "unknown profile 'tpu'"),
        (["--chapters", "00_training", "05_commutativity", "-p", "seed", "3"], "no parameter"),
        (["--profile", "tpu"], "invalid choice"),
    ],
)
def test_runner_rejects_bad_parameters(argv, needle, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(run, "run_chapter", lambda *a, **kw: ran.append(a))
    with pytest.raises(SystemExit) as e:
        run.main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err
    assert ran == [], "a notebook was executed despite a bad parameter"

    with pytest.raises(ValueError, match="no parameter 'sead'; valid: profile, seed"):
        run.check_parameters("00_training", {"sead": 3})
    with pytest.raises(ValueError, match="'seed' must be int"):
        run.check_parameters("00_training", {"seed": "3"})
    run.check_parameters("00_training", {"profile": "smoke", "seed": 3})


# ---------------------------------------------------------------- 9. no unpickling

_UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _unsafe(source: str, where: str) -> list[str]:
    """Every place in `source` that can unpickle (or run arbitrary code on load)."""
    bad = []
    for node in ast.walk(ast.parse(source, where)):
        at = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            bad += [f"{at} import {a.name}" for a in node.names if a.name in _UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module in _UNPICKLING_MODULES:
            bad.append(f"{at} from {node.module} import ...")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        kw = {k.arg: k.value for k in node.keywords}

        def const(key, kw=kw):
            v = kw.get(key)
            return v.value if isinstance(v, ast.Constant) else ("<expr>" if v else None)

        if last == "load" and head.endswith("torch") and const("weights_only") is not True:
            bad.append(f"{at} {name}(...) without weights_only=True")
        elif head.split(".")[-1] in _UNPICKLING_MODULES and last in ("load", "loads"):
            bad.append(f"{at} {name}(...)")
        elif (
            last == "load"
            and head in ("np", "numpy")
            and const("allow_pickle") not in (None, False)
        ):
            bad.append(f"{at} {name}(..., allow_pickle=...)")
        elif last in ("load", "load_all") and head == "yaml":
            loader = kw.get("Loader", node.args[1] if len(node.args) > 1 else None)
            if loader is None or not _dotted(loader).endswith(("SafeLoader", "CSafeLoader")):
                bad.append(f"{at} {name}(...) without SafeLoader")
        elif last in ("unsafe_load", "full_load", "read_pickle"):
            bad.append(f"{at} {name}(...)")
    return bad


def _sources() -> list[tuple[str, str]]:
    out = []
    for folder in ("llfc_utils", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            out.append((path.read_text(), str(path.relative_to(ROOT))))
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                src = "\n".join(  # IPython magics become `pass`, keeping the indentation
                    line[: len(line) - len(line.lstrip())] + "pass"
                    if line.lstrip().startswith(("%", "!"))
                    else line
                    for line in src.splitlines()
                )
                out.append((src, f"{path.relative_to(ROOT)}[cell {i}]"))
    return out


def test_no_unsafe_deserialisation():
    # the scanner itself finds every pattern it is meant to find ...
    must_flag = [
        "torch.load(f)",
        "torch.load(f, weights_only=False)",
        "torch.load(f, map_location='cpu')",
        "import pickle",
        "from pickle import loads",
        "pickle.load(f)",
        "pickle.loads(b)",
        "np.load(f, allow_pickle=True)",
        "numpy.load(f, allow_pickle=flag)",
        "yaml.load(f)",
        "yaml.load(f, Loader=yaml.Loader)",
        "yaml.unsafe_load(f)",
    ]
    for snippet in must_flag:
        assert _unsafe(snippet, "<snippet>"), f"scanner misses {snippet!r}"
    must_pass = [
        "torch.load(f, weights_only=True)",
        "np.load(f)",
        "np.load(f, allow_pickle=False)",
        "yaml.safe_load(f)",
        "yaml.load(f, Loader=yaml.SafeLoader)",
        "json.load(f)",
        "safetensors.torch.load_file(p)",
        "data.load('mnist', 'train')",
    ]
    for snippet in must_pass:
        assert not _unsafe(snippet, "<snippet>"), f"scanner flags the safe {snippet!r}"
    # ... and the code has none of them
    sources = _sources()
    assert any(where.startswith("llfc_utils/") for _, where in sources)
    assert any(where.startswith("bench/") for _, where in sources)
    found = [hit for src, where in sources for hit in _unsafe(src, where)]
    assert found == [], "unsafe deserialisation:\n" + "\n".join(found)


# ---------------------------------------------------------------- 10. same seed, same numbers


@pytest.mark.usefixtures("fashion_mnist")
def test_same_seed_bit_identical_weights_and_metrics(tmp_path, monkeypatch):
    cfg = SUB.replace(epochs=3)
    results = []
    for name in ("one", "two"):
        monkeypatch.setenv("LLFC_CACHE", str(tmp_path / name))
        model, history = train.train_model(cfg, 0, CPU)
        a, b, _, _ = train.train_spawned_pair(cfg, 1, seed=0, child_seeds=(1, 2), device=CPU)
        assert any((tmp_path / name).glob("*.safetensors"))  # trained here, not reused
        x, y = train.dataset(cfg, "test", CPU)
        xtr, ytr = train.dataset(cfg, "train", CPU)
        llfc = metrics.llfc(a, b, x, [0.0, 0.25, 0.5, 1.0], batch_size=50, progress=False)
        curve = interpolate.lmc_curve(
            a, b, {"train": (xtr, ytr), "test": (x, y)}, [0.0, 0.5, 1.0], progress=False
        )
        results.append((_state(model), history, _state(a), _state(b), llfc, curve))
    (s1, h1, a1, b1, llfc1, curve1), (s2, h2, a2, b2, llfc2, curve2) = results
    assert _same_state(s1, s2)
    assert _same_state(a1, a2) and _same_state(b1, b2)
    assert not _same_state(a1, b1)  # a real pair, not one model twice
    for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert h1[k] == h2[k], k
    assert llfc1 == llfc2  # exact, every layer and alpha
    assert curve1 == curve2


# ---------------------------------------------------------------- 11. divergence


@pytest.mark.usefixtures("fashion_mnist")
def test_nan_training_stops_with_clear_error(_isolated_cache):
    cfg = TINY.replace(lr=100.0, epochs=3)
    with pytest.raises(train.TrainingDiverged) as e:
        train.train_model(cfg, 0, CPU)
    msg = str(e.value)
    epoch = re.search(r"\bepoch (\d+)\b", msg)
    assert epoch and 1 <= int(epoch.group(1)) <= cfg.epochs, msg
    assert "lr=100" in msg and "learning rate" in msg, msg
    spec = train._spec(cfg, 0, [[0, 3]], CPU)
    assert not any(p.exists() for p in cache.paths(spec))
    assert cache.load(spec) is None
    # whatever resume state was kept is finite (it would be rejected otherwise)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CheckpointWarning)
        cache.load({**spec, "resume": True})
    assert not [p for p in _isolated_cache.glob("*") if p.name.endswith(".tmp")]
