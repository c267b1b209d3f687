"""Where commands write: the ``--output DIR`` rule of every command that writes files into a
folder (:class:`OutputFolder`), and how image outputs are named after their inputs
(:func:`image_outputs`). Run and demo folders follow :func:`shared.run.replaces`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from shared.run import OWNER_FILE, RunError, not_a_file, refuse_existing

OUTPUT_RULE = (
    "DIR must be new, empty, or hold only what twostage wrote there (recorded in "
    f"DIR/{OWNER_FILE}); --overwrite writes beside other files and replaces only files "
    "twostage wrote, never deleting any"
)


class OutputFolder:
    """The ``--output DIR`` of a command that writes files into a folder (``vqgan reconstruct |
    decode | benchmark``, ``prior sample``, ``gan sample``, ``segment predict``, ``clip``).

    The rule (:data:`OUTPUT_RULE`): a new or empty DIR, or one holding only what twostage
    wrote there (the top-level names its ``.twostage.json`` records, as for run folders), is
    written into; one holding anything else is refused at once, before anything loads, unless
    ``overwrite``, which writes beside those files. A file the command is about to write that
    already exists is replaced only with ``overwrite`` and only if twostage recorded writing
    it; nothing is ever deleted."""

    def __init__(self, folder: str | Path, overwrite: bool = False):
        self.path = Path(folder)
        self.overwrite = overwrite
        not_a_file(self.path)
        self.kind, self.entries = _owner_record(self.path)
        if not overwrite:
            foreign = self.foreign()
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise RunError(
                    f"--output {self.path} holds files twostage did not write ({shown}); "
                    "choose a new or empty folder, or pass --overwrite to write beside them"
                )

    def foreign(self) -> list[str]:
        """Top-level names in the folder that twostage did not record writing, sorted (a
        folder holding no file, only empty folders, does not count)."""
        if not self.path.is_dir():
            return []
        found = []
        for p in self.path.iterdir():
            if p.name == OWNER_FILE or p.name in self.entries:
                continue
            if p.is_dir() and not p.is_symlink() and not _holds_a_file(p):
                continue
            found.append(p.name)
        return sorted(found)

    def claim(self, targets: Iterable[str | Path]) -> None:
        """:meth:`check` the files about to be written (paths inside the folder), then create
        the folder and record their top-level names, before any of them is written."""
        targets = [Path(t) for t in targets]
        self.check(targets)
        self.path.mkdir(parents=True, exist_ok=True)
        self.entries |= {self._top(t) for t in targets}
        record = {"kind": self.kind, "entries": sorted(self.entries)}
        temp = self.path / f".{OWNER_FILE}.tmp"
        temp.write_text(json.dumps(record, indent=1))
        os.replace(temp, self.path / OWNER_FILE)

    def check(self, targets: Iterable[str | Path]) -> None:
        """Refuse files about to be written that exist: always where twostage did not write
        them, else unless ``overwrite``."""
        for t in map(Path, targets):
            if not (t.exists() or t.is_symlink()):
                continue
            if self._top(t) not in self.entries:
                raise RunError(
                    f"{t} already exists and twostage did not write it; move it or choose "
                    "another --output"
                )
            refuse_existing(t, self.overwrite)

    def _top(self, target: Path) -> str:
        try:
            return target.relative_to(self.path).parts[0]
        except (ValueError, IndexError):
            raise ValueError(f"{target} is not inside {self.path}") from None


def _holds_a_file(folder: Path) -> bool:
    """Whether anything but folders lies under ``folder`` (stops at the first)."""
    for root, dirs, files in os.walk(folder):
        if files or any(os.path.islink(os.path.join(root, d)) for d in dirs):
            return True
    return False


def _owner_record(folder: Path) -> tuple[str, set[str]]:
    """(kind, recorded top-level names) of a folder's ``.twostage.json``; ("outputs", empty)
    where there is none or it cannot be read. A run or demo folder keeps its kind."""
    try:
        record = json.loads((folder / OWNER_FILE).read_text())
        return str(record["kind"]), {str(e) for e in record["entries"]}
    except (OSError, ValueError, KeyError, TypeError):
        return "outputs", set()


IMAGE_OUTPUT_RULE = (
    "each input keeps its path below --input with its extension replaced by .png "
    "(photos/a/cat.jpg -> DIR/a/cat.png); inputs that would share a name (cat.png and "
    "cat.jpg) are refused"
)


def image_outputs(
    paths: list[Path], source: Path, folder: Path, subfolder: str = ""
) -> dict[Path, Path]:
    """Input image -> output PNG by :data:`IMAGE_OUTPUT_RULE`: its path relative to ``source``
    (a folder; just its name for a single file) under ``folder`` (and ``subfolder``), with
    the suffix ``.png``. Two inputs that would share an output (same name up to the extension,
    compared without case) are a one-line error naming both."""
    root = folder / subfolder if subfolder else folder
    out: dict[Path, Path] = {}
    seen: dict[str, Path] = {}
    for p in paths:
        rel = p.relative_to(source) if source.is_dir() else Path(p.name)
        target = root / rel.with_suffix(".png")
        key = target.as_posix().casefold()
        if key in seen:
            raise RunError(
                f"{seen[key]} and {p} would both be written as {target} (outputs are named "
                "<stem>.png); rename one of them or give them separately"
            )
        seen[key] = p
        out[p] = target
    return out
