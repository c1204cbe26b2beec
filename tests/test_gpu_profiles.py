"""The GPU path on the CPU: the `gpu` and `paper` profiles' roles through every chapter, at tiny scale.

Nothing on the GPU path runs on this project's machines otherwise, so a crash in a paper role
(VGG-16, ResNet-20 with BN or LayerNorm, the MNIST MLPs, their schedules) would first be found by a
Colab user. Here every chapter runs with every role of the profile, shrunk by $LLFC_SCALE=tiny
(`config.tiny`), on synthetic files in the MNIST (IDX) and CIFAR-10 (binary) formats made here;
the chapters' check cells (claims about real data) are left out. Chapters that permute get the
roles that can be permuted (not `resnet20`, whose zero-padding shortcuts the paper does not permute
either: its permutation ResNet is `resnet20_ln`).
"""

from __future__ import annotations

import gzip
import json
import os
import time

import numpy as np
import pytest

from llfc_utils import config, permute, timings, train
from llfc_utils.tools import run

N_TRAIN, N_TEST = 60, 40  # more than tiny's 32 images


def _idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_synthetic_data(root) -> None:
    """Random images in the files of MNIST (IDX, gzipped) and CIFAR-10 (binary) under `root`."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        _idx(raw / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    cifar = root / "cifar-10-batches-bin"
    cifar.mkdir()
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name, n in zip(names, [N_TRAIN // 5] * 5 + [N_TEST], strict=True):
        records = np.concatenate(
            [rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3 * 32 * 32))], axis=1
        )
        records.astype(np.uint8).tofile(cifar / name)


def permutable(cfg: config.TrainConfig) -> bool:
    """Whether cfg's model has a permutation spec (a ResNet's zero-padding shortcuts have none)."""
    try:
        permute.spec_for(train.build_model(config.tiny(cfg), 0))
    except ValueError:
        return False
    return True


def tiny_params(chapter: str, profile: str) -> dict[str, object]:
    """The chapter's parameters for the roles of `profile` at tiny scale (2 epochs).

    `roles`: every architecture of the profile once, and in the permutation chapter every role
    that can be permuted; a per-role dict gets every role: spawn epochs within the tiny
    schedule (a grid [0, 1], one spawn epoch 1), other values as the chapter's own role of the
    same kind (MLP or CNN). Three points on the interpolation path (0, 0.5, 1), chapter 01's
    spawn epoch 1, and chapter 03's width sweep at the smoke profile's widths (the gpu profile's
    reach a full-width VGG-16, a minute of this test for no path the smoke widths miss).
    """
    defaults = run.parameters(chapter)
    params: dict[str, object] = {"n_alphas": 3} if "n_alphas" in defaults else {}
    if isinstance(defaults.get("spawn_epoch"), int):
        params["spawn_epoch"] = 1
    if "widths" in defaults:  # chapter 03's sweep at smoke widths: the gpu sweep's are not tiny
        params["widths"] = {r: list(w) for r, w in config.WIDTHS["smoke"].items()}
    if "roles" not in defaults:
        return params
    cfgs = config.profile(profile)
    # One role per recipe in the permutation chapter (Git Re-Basin's are its roles), one per
    # architecture elsewhere (vgg16 is cnn's recipe, mlp_rebasin the mlp's net)
    distinct = {}
    for r, c in cfgs.items():
        what = c.to_dict() if chapter == "03_permutation" else (c.model, c.model_kwargs)
        distinct.setdefault(json.dumps(what, sort_keys=True), r)
    roles = list(distinct.values())
    if "permute.align(" in (run.NOTEBOOKS / f"{chapter}.ipynb").read_text():
        roles = [r for r in roles if permutable(cfgs[r])]
    params["roles"] = roles

    def is_mlp(role: str) -> bool:
        return (
            config.PROFILES["cpu" if role in config.PROFILES["cpu"] else profile][role].model
            == "mlp"
        )

    for name, value in defaults.items():
        if isinstance(value, dict) and set(defaults["roles"]) <= set(value):
            # a role the chapter does not name takes the value of its first role of the same kind
            like = {r: next(k for k in value if is_mlp(k) == is_mlp(r)) for r in roles}
            value = {r: value[r] if r in value else value[like[r]] for r in roles}
            if "spawn" in name:
                value = {r: [0, 1] if isinstance(v, list) else 1 for r, v in value.items()}
            params[name] = value
    return params


def _without_check_cells(src, dst) -> None:
    nb = json.loads(src.read_text())
    nb["cells"] = [c for c in nb["cells"] if "check" not in c["metadata"].get("tags", [])]
    dst.write_text(json.dumps(nb))


def test_tiny_scale_keeps_every_role_and_gpu_and_paper_share_their_tiny_nets(monkeypatch):
    assert set(config.PROFILES["gpu"]) == set(config.PROFILES["paper"])
    assert set(config.PROFILES["cpu"]) <= set(config.PROFILES["gpu"])
    monkeypatch.setenv("LLFC_SCALE", "tiny")
    for role, cfg in config.PROFILES["paper"].items():
        small = config.get("paper", role)
        assert (small.model, small.dataset, small.optimizer) == (
            cfg.model,
            cfg.dataset,
            cfg.optimizer,
        )
        assert small.train_subset == 32 and small.epochs <= 2
        # so running the gpu profile's chapters at tiny scale runs the paper's nets too
        assert small == config.get("gpu", role), role
    monkeypatch.setenv("LLFC_SCALE", "huge")
    with pytest.raises(ValueError, match="LLFC_SCALE='huge'"):
        config.get("gpu", "mlp")


@pytest.mark.slow
def test_every_chapter_runs_the_gpu_profiles_roles_at_tiny_scale(tmp_path, monkeypatch):
    import papermill as pm

    write_synthetic_data(tmp_path / "data")
    monkeypatch.setenv("LLFC_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LLFC_SCALE", "tiny")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    seconds = {}
    for chapter in run.chapters():
        params = {"profile": "gpu", **tiny_params(chapter, "gpu")}
        run.check_parameters(chapter, params)
        src = tmp_path / f"{chapter}.ipynb"
        _without_check_cells(run.NOTEBOOKS / src.name, src)
        t0 = time.perf_counter()
        pm.execute_notebook(
            str(src),
            str(tmp_path / f"{chapter}.out.ipynb"),
            parameters=params,
            cwd=str(tmp_path),
            progress_bar=False,
            kernel_name="python3",
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
        seconds[chapter] = round(time.perf_counter() - t0, 1)
        record = json.loads((tmp_path / "results" / f"{chapter}.json").read_text())
        assert record["profile"] == "gpu"
    print("seconds per chapter:", seconds)
    # every role trained, on the synthetic files, in the tiny configs
    trained = {key for key in json.loads(timings.timings_path().read_text())["devices"]["cpu"]}
    tiny = {timings.timing_key(config.tiny(c)) for c in config.PROFILES["gpu"].values()}
    assert tiny <= trained, "a role of the gpu profile was never trained"
    assert os.environ["LLFC_SCALE"] == "tiny"
