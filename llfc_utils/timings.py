"""Measured seconds per epoch, per device kind and recipe: written by the trainer, read by the planner.

One JSON file (`$LLFC_TIMINGS`) maps a device kind ("cpu", a CUDA device's name, "+compile") to the
recipes trained there, each keyed by the hash of its cache identity, with the last few epoch times.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import warnings
from pathlib import Path

import torch

from llfc_utils import cache, settings
from llfc_utils.config import TrainConfig


def timings_path() -> Path:
    """The file of measured seconds per epoch: $LLFC_TIMINGS, default ~/.cache/llfc_book/epoch_seconds.json."""
    return settings.path("LLFC_TIMINGS")


def device_kind(device: torch.device | str, compiled: bool = False) -> str:
    """What a timing was measured on: "cpu", or the CUDA device's name; " +compile" if compiled."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return name + (" +compile" if compiled else "")


def timing_key(cfg: TrainConfig) -> str:
    """The key of cfg's timings: the hash of its cache identity (no seeds, no device)."""
    return cache.key_of({"config": cfg.identity()})


def read_timings() -> dict:
    """{device kind: {timing key: {"run": description, "seconds": [...]}}}; {} if absent or unreadable."""
    path = timings_path()
    try:
        record = json.loads(path.read_text())
        devices = record["devices"]
        if not isinstance(devices, dict) or not all(isinstance(v, dict) for v in devices.values()):
            raise ValueError("not a {device: {key: entry}} map")
        return devices
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:  # corrupt: start afresh, never fail
        warnings.warn(f"ignoring unreadable timings file {path} ({e})", stacklevel=2)
        return {}


def epoch_seconds(cfg: TrainConfig, kind: str) -> float | None:
    """The measured seconds per epoch of cfg on device kind `kind` (median of the last few), or None."""
    seconds = _seconds(read_timings().get(kind, {}).get(timing_key(cfg)))
    return statistics.median(seconds) if seconds else None


def _seconds(entry: object) -> list[float]:
    """The valid measurements of one timings entry (anything malformed counts as none)."""
    values = entry.get("seconds") if isinstance(entry, dict) else None
    if not isinstance(values, list):
        return []
    return [float(s) for s in values if isinstance(s, (int, float)) and math.isfinite(s) and s > 0]


def record_epoch_seconds(cfg: TrainConfig, kind: str, seconds: float, keep: int = 5) -> None:
    """Add one measured epoch to the timings file (atomic write; a failure to write is ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a corrupt file is simply replaced
        devices = read_timings()
    entries = devices.setdefault(kind, {})
    key = timing_key(cfg)
    entries[key] = {
        "run": f"{cfg.model} {cfg.model_kwargs} on {cfg.dataset}",
        "seconds": [*_seconds(entries.get(key)), round(float(seconds), 4)][-keep:],
    }
    path = timings_path()
    text = json.dumps({"version": 1, "devices": devices}, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache.atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    except OSError:  # a read-only home must not stop training
        pass


def log_training_seconds(seconds: float) -> None:
    """Append one epoch's seconds to the file $LLFC_TRAIN_LOG names, if set (the runner sums them)."""
    path = settings.get("LLFC_TRAIN_LOG")
    if path:
        with contextlib.suppress(OSError), open(path, "a") as f:
            f.write(f"{seconds:.4f}\n")
