"""Run folders: ``runs/NAME/{config.yaml, checkpoints/step_000500/, model/, samples/, logs/,
metrics.jsonl}``. Checkpoint folders appear only complete (written aside, then renamed).

Also the rule for an ``--output`` twostage may replace: a folder is replaced only with
``--overwrite`` and only when twostage made it and wrote all it holds (:func:`replaces`); an
existing file only with ``--overwrite`` (:func:`refuse_existing`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step_(\d{6,})$")
RUN_MARKERS = ("config.yaml", "checkpoints", "metrics.jsonl")
OWNER_FILE = ".twostage.json"  # written by the project into every folder it may later replace
EXPORT_DIR = "model"  # a run's exported networks (Task.export writes them there at the end)
RUN_ENTRIES = (
    "config.yaml",
    "checkpoints",
    "samples",
    "logs",
    EXPORT_DIR,
    "metrics.jsonl",
    "training.gif",
)


class RunError(ValueError):
    """A run-folder mistake a user can fix (one line)."""


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def claim(path: Path, kind: str, entries: list[str] | tuple[str, ...]) -> None:
    """Mark ``path`` as a ``kind`` folder ("run", "demo") made by twostage, whose top-level
    ``entries`` twostage wrote (or will write); only such a folder is ever replaced."""
    record = {"kind": kind, "entries": sorted(set(entries))}
    (path / OWNER_FILE).write_text(json.dumps(record, indent=1))


def check_replaceable(path: Path, kind: str) -> None:
    """Raise :class:`RunError` unless ``path`` is a ``kind`` folder twostage made and it holds
    nothing but what twostage wrote there (so ``--overwrite`` loses no file of the user's)."""
    try:
        record = json.loads((path / OWNER_FILE).read_text())
        entries = set(record["entries"]) | {OWNER_FILE}
        owned = record["kind"] == kind
    except (OSError, ValueError, KeyError, TypeError):
        owned = False
    if not owned:
        raise RunError(
            f"refusing to overwrite {path}: it is not a twostage {kind} folder "
            f"(no {OWNER_FILE} of kind '{kind}'); choose a new --output or delete it yourself"
        )
    foreign = sorted(p.name for p in path.iterdir() if p.name not in entries)
    if foreign:
        raise RunError(
            f"refusing to overwrite {path}: it holds files twostage did not write "
            f"({', '.join(foreign[:3])}); move them out or choose a new --output"
        )


def not_a_file(path: Path) -> None:
    """Refuse an ``--output`` folder that is a file."""
    if path.exists() and not path.is_dir():
        raise RunError(f"--output {path} is a file, not a folder")


def replaces(
    path: Path, kind: str, overwrite: bool, hint: str = "pass --overwrite to replace it"
) -> bool:
    """Whether writing a ``kind`` folder ("run", "demo") at ``path`` replaces an earlier one:
    False for a new or empty folder; True with ``overwrite`` for one twostage made that holds
    only what it wrote (:func:`check_replaceable`); else :class:`RunError` ``PATH already
    exists; HINT``."""
    not_a_file(path)
    if not (path.exists() and any(path.iterdir())):
        return False
    if not overwrite:
        raise RunError(f"{path} already exists; {hint}")
    check_replaceable(path, kind)
    return True


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Refuse a file about to be written that exists, unless ``overwrite``."""
    if not overwrite and (path.exists() or path.is_symlink()):
        raise RunError(f"{path} already exists; pass --overwrite to replace it")


def prepare_run_dir(
    path: str | Path, overwrite: bool = False, resume: bool = False, files: tuple[str, ...] = ()
) -> Path:
    """Create the run folder; refuse to reuse one unless ``resume`` or ``overwrite`` is given.

    ``overwrite`` replaces only a run folder twostage made that holds nothing else (see
    :func:`check_replaceable`); ``files`` are extra top-level names the run writes."""
    path = Path(path)
    if check_run_dir(path, overwrite, resume) == "replace":
        shutil.rmtree(path)
    for sub in ("checkpoints", "samples", "logs"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    if not resume or (path / OWNER_FILE).is_file():
        claim(path, "run", (*RUN_ENTRIES, *files))
    return path


def check_run_dir(path: Path, overwrite: bool = False, resume: bool = False) -> str:
    """Validate ``--output`` without touching it: "new", "resume" or "replace" (run it on every
    process, so a mistake stops them all)."""
    not_a_file(path)
    if resume:
        if not is_run_dir(path):
            raise RunError(f"--resume: {path} is not a run folder to resume from")
        return "resume"
    hint = "pass --resume to continue it or --overwrite"
    return "replace" if replaces(path, "run", overwrite, hint) else "new"


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as (step, folder)."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and p.is_dir() and (p / "trainer_state.json").is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> tuple[int, Path] | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def run_checkpoint(path: Path) -> tuple[Path, Path] | None:
    """(run folder, its latest complete checkpoint) when ``path`` (or the folder of a file
    ``path``) is a run folder that keeps its ``config.yaml``, else None."""
    run = path.parent if path.is_file() else path
    found = latest_checkpoint(run)
    if found is None or not (run / "config.yaml").is_file():
        return None
    return run, found[1]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of ``metrics.jsonl`` (a partly written last line is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
