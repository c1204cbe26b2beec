"""Every `LLFC_*` environment variable: name, default, meaning, and the one place that reads it.

An empty value counts as unset. `python -m llfc_utils.settings` prints the table the README shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, its default (None: the reader decides) and its meaning."""

    name: str
    default: str | None
    meaning: str


HOME = "$LLFC_HOME/"  # a default that starts with this lies under LLFC_HOME
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("LLFC_HOME", "~/.cache/llfc_book", "base folder for data, checkpoints and timings"),
        Setting("LLFC_DATA", HOME + "data", "the data root, in torchvision's layout"),
        Setting("LLFC_CACHE", HOME + "checkpoints", "the checkpoint cache"),
        Setting("LLFC_TIMINGS", HOME + "epoch_seconds.json", "measured seconds per epoch"),
        Setting("LLFC_RESULTS", None, "where chapters write their results (default: book/results)"),
        Setting(
            "LLFC_PROFILE", None, "the profile a chapter runs when its `profile` parameter is None"
        ),
        Setting("LLFC_PROGRESS", "1", "0 hides the progress bars"),
        Setting(
            "LLFC_AMP",
            None,
            "precision: bf16 (16-bit autocast where the device has it) or fp16 or fp32",
        ),
        Setting("LLFC_DATASET", None, "train every role on this data set (e.g. fashion_mnist)"),
        Setting("LLFC_SCALE", None, "tiny shrinks every role to seconds (tests)"),
        Setting("LLFC_COMPILE", "0", "1 trains with torch.compile where it works"),
        Setting(
            "LLFC_RESUME_SECONDS",
            "30",
            "least seconds between two resume checkpoints (0: after every epoch)",
        ),
        Setting(
            "LLFC_TRAIN_LOG",
            None,
            "a file each trained epoch's seconds are appended to (the runner sets it)",
        ),
        Setting("LLFC_CHROMIUM", "/usr/bin/chromium", "the browser of the site check"),
        Setting("LLFC_CHROMEDRIVER", "/usr/bin/chromedriver", "its driver"),
    )
}


def _setting(name: str) -> Setting:
    """The declared setting `name`; a name not in the table is a programming error."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a declared setting; valid: {', '.join(SETTINGS)}")
    return SETTINGS[name]


def get(name: str) -> str | None:
    """The value of $name, stripped, or None when it is unset or empty."""
    _setting(name)
    value = os.environ.get(name, "").strip()
    return value or None


def value(name: str) -> str | None:
    """The value of $name, else its default (None for a setting whose reader decides)."""
    return get(name) or _setting(name).default


def path(name: str) -> Path:
    """$name as a path (`~` expanded); its default under $LLFC_HOME when unset."""
    given = get(name)
    if given is not None:
        return Path(given).expanduser()
    default = _setting(name).default
    if default is None:
        raise ValueError(f"{name} has no default path; its reader must supply one")
    if default.startswith(HOME):
        return path("LLFC_HOME") / default[len(HOME) :]
    return Path(default).expanduser()


def folder(name: str) -> Path:
    """$name as a folder (`path`); ValueError with what to do if it names a file."""
    p = path(name)
    if p.exists() and not p.is_dir():
        raise ValueError(
            f"{p} (from ${name} or its default) is a file, not a folder; set {name} to a folder"
        )
    return p


def flag(name: str) -> bool:
    """$name as a switch: off for 0, false, no or off (any case), else on; its default when unset."""
    return str(value(name)).lower() not in ("0", "false", "no", "off")


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw progress bars: `progress` if given, else $LLFC_PROGRESS."""
    return flag("LLFC_PROGRESS") if progress is None else progress


def markdown() -> str:
    """The table of every setting, as the README shows it."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS.values():
        rows.append(
            f"| `{s.name}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.meaning} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
