"""Checks on the paths a user passes, done before any work: outputs never land on inputs, inside a
file, on a read-only file system, or over a folder that holds something else; and which checkpoint
a folder names."""

import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cache.runtime.errors import UserError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
Target = Path | str
"""A cache as users name it: a Path for a folder, a str for a URL (`cache.format.location`)."""


def is_url(target: Target) -> bool:
    return bool(URL.match(str(target)))


def as_target(text: str | Path) -> Target:
    """A command-line value as a cache target: URLs stay strings (a Path would fold their //); a
    file:// URL is the folder it names (kept to the kernel's rename and lock)."""
    if str(text).startswith("file://"):
        return Path(str(text).removeprefix("file://"))
    return str(text) if is_url(text) else Path(text)


def check_output_dir(path: Path, option: str, ours: Iterable[str] = ()) -> None:
    """A folder a command creates or fills. It may exist only empty or holding what the command
    itself leaves there (entries whose names start with one of `ours`)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option}: {path} is a file, not a folder")
    check_writable(path, option)
    ours = tuple(ours)
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not (ours and p.name.startswith(ours)))
        if foreign:
            raise UserError(f"{option}: {path} already holds other files ({', '.join(foreign[:3])}"
                            f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder")


def check_writable(path: Path, option: str) -> None:
    """`path` can be created or written: its nearest existing ancestor is a writable folder."""
    ancestor = Path(os.path.abspath(path))
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option}: {path} lies inside {ancestor}, which is a file")
    try:  # os.access says yes to root everywhere, /proc included: try it
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=ancestor))
    except OSError:
        raise UserError(f"{option}: {ancestor} is not writable (read-only file system or no permission)") from None


def check_not_input(output: Path, inputs: Iterable[Path], option: str) -> None:
    """An output file that would replace one of the command's inputs is refused."""
    for source in inputs:
        if output.exists() and source.exists() and os.path.samefile(output, source):
            raise UserError(f"{option}: writing {output} would overwrite the input {source}; choose another folder")


def check_existing(path: Path, option: str) -> None:
    if not path.exists():
        raise UserError(f"{option}: {path} does not exist")


def check_number(value: float, option: str, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False) -> None:
    """A finite number in the interval from `low` to `high`: NaN and infinity never pass."""
    below = value < low or (low_open and value == low)
    above = value > high or (high_open and value == high)
    if not math.isfinite(value) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UserError(f"{option}: {value:g} is not a finite number in {interval}")


def model_folder(folder: Path, option: str) -> Path:
    """A model folder, or the student a training run saved in it: its `best/`, else its `last/`."""
    if (folder / "config.json").is_file():
        return folder
    for saved in ("best", "last"):
        if (folder / saved / "config.json").is_file():
            return folder / saved
    raise UserError(f"{option}: {folder} holds no model (no config.json, nor a run's best/ or last/)")


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> None:
    """`--device` names one this tool runs on (auto, cpu, cuda, cuda:N), before torch is imported."""
    if not DEVICE.fullmatch(name):
        raise UserError(f"--device: {name!r} is not a device this tool runs on (auto, cpu, cuda, cuda:1, ...)")


def check_model_path(text: str | None, option: str) -> None:
    """A model named by a path that looks local (absolute, relative with ./ or ../, or under an
    existing folder) must exist: it is never tried as a hub id, which costs retries over the network."""
    if text is None or Path(text).exists():
        return
    path = Path(text).expanduser()
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or \
            (path.parent != Path(".") and path.parent.is_dir()):
        raise UserError(f"{option}: {text}: no such folder")
