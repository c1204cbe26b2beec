"""Checkpoints keyed by the hash of everything that made them.

A checkpoint is two files in `$LLFC_CACHE` (default `~/.cache/llfc_book/checkpoints`):
`<key>.safetensors` (the tensors) and `<key>.json` (the spec that made it, the sha256 of the
tensor file, metadata such as the training history, and the sha256 of all of that, so an edited
epoch count or history is caught like an edited tensor). The key is the hash of the spec plus
`VERSION`, the version of the training semantics: bump it whenever a code change alters what a
given spec trains, and every old checkpoint stops matching.

Writes are atomic (temporary file, then rename; the sidecar is written last and is the commit
mark); they create files with the user's umask, so a cache shared by a group stays readable. A
checkpoint whose sidecar is missing, whose spec or version does not match its key, whose sidecar
or file does not match its checksum (sidecars written before the sidecar had its own checksum
included), or whose tensors are not finite is reported and treated as absent, so the caller
retrains it: it is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from llfc_utils import settings

VERSION = 1  # training semantics; bump when the same spec would now train something else


class CheckpointWarning(UserWarning):
    """A cached file was found but could not be trusted; it will be rebuilt."""


def cache_dir() -> Path:
    """The checkpoint folder: $LLFC_CACHE, default ~/.cache/llfc_book/checkpoints."""
    return settings.folder("LLFC_CACHE")


def _canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` as it reads back from JSON (tuples become lists), so a stored spec compares equal."""
    return json.loads(json.dumps(spec, sort_keys=True))


def key_of(spec: dict[str, Any]) -> str:
    """The cache key of `spec`: sha256 of its canonical JSON together with VERSION."""
    blob = json.dumps({"spec": spec, "version": VERSION}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call write(tmp_path), then rename tmp_path onto path (same folder, so atomic).

    The file gets the permissions the user's umask gives new files (safetensors, like mkstemp,
    would make it 0600). Any failure to write is raised as OSError naming `path`, and leaves
    nothing behind.
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, OSError):  # e.g. safetensors' own error
            raise OSError(f"could not write {path}: {type(e).__name__}: {e}") from e
        raise


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _record_sha256(record: dict[str, Any]) -> str:
    """The sha256 of a sidecar record without its own "checksum" entry (canonical JSON)."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def paths(spec: dict[str, Any]) -> tuple[Path, Path]:
    """(tensor file, sidecar) of the checkpoint of `spec`."""
    key = key_of(spec)
    return cache_dir() / f"{key}.safetensors", cache_dir() / f"{key}.json"


def stored(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar record of spec's checkpoint if it is there and describes spec, else None.

    Cheap (the tensors are not read or hashed): for asking what the cache holds; `load` checks all.
    """
    weights, sidecar = paths(spec)
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(record, dict)
        and record.get("version") == VERSION
        and record.get("key") == key_of(spec)
        and record.get("spec") == _canonical(spec)
        and weights.is_file()
    )
    return record if ok else None


def save(spec: dict[str, Any], tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Store `tensors` (moved to CPU) and `meta` under the key of `spec`; return the tensor file."""
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"refusing to save a checkpoint with non-finite values in {name!r}")
    weights, sidecar = paths(spec)
    weights.parent.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(weights, lambda tmp: save_file(cpu, tmp))
    record = {
        "key": key_of(spec),
        "version": VERSION,
        "spec": _canonical(spec),
        "sha256": _sha256(weights),
        "meta": meta,
    }
    record["checksum"] = _record_sha256(record)
    atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    return weights


def load(spec: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The (tensors, meta) stored for `spec`, or None if absent or untrustworthy (with a warning)."""
    weights, sidecar = paths(spec)
    if not sidecar.is_file():
        return None

    def reject(why: str) -> None:
        warnings.warn(
            f"ignoring checkpoint {weights.name}: {why}; it will be rebuilt",
            CheckpointWarning,
            stacklevel=3,
        )

    try:
        record = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return reject(f"unreadable sidecar ({e})")
    if not isinstance(record, dict):
        return reject("the sidecar is not a JSON object")
    if record.get("version") != VERSION:
        return reject(
            f"written by training-semantics version {record.get('version')}, not {VERSION}"
        )
    if record.get("spec") != _canonical(spec) or record.get("key") != key_of(spec):
        return reject("its sidecar describes a different run than its key")
    if "checksum" not in record:
        return reject("its sidecar has no checksum of its own (written by an older version)")
    if record["checksum"] != _record_sha256(record):
        return reject("its sidecar does not match its checksum (edited or damaged metadata)")
    if not weights.is_file():
        return reject("tensor file missing")
    if _sha256(weights) != record.get("sha256"):
        return reject("tensor file does not match its checksum (truncated or modified)")
    try:
        tensors = load_file(weights)
    except Exception as e:  # noqa: BLE001 - any parse failure means "do not trust"
        return reject(f"unreadable tensor file ({e})")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            return reject(f"non-finite values in {name!r}")
    if not isinstance(record.get("meta"), dict):
        return reject("its sidecar has no metadata")
    return tensors, record["meta"]


def remove(spec: dict[str, Any]) -> None:
    """Delete the checkpoint of `spec`, if any."""
    for p in paths(spec):
        p.unlink(missing_ok=True)


def lock(spec: dict[str, Any]) -> FileLock:
    """An inter-process lock for building the checkpoint of `spec` (use as a context manager)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return FileLock(str(cache_dir() / f"{key_of(spec)}.lock"))
