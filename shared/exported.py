"""Finding an exported network in whatever a user points at: a release name, an exported model
folder (``config.json`` + ``model.safetensors``), a file inside one, or a run folder whose
``model/`` holds the export. The stages add what is theirs (taming files, a run's latest
checkpoint, the tokenizer a prior needs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from shared.checkpoint import CheckpointError
from shared.pretrained import CONFIG_FILE, Pretrained, read_json
from shared.release import resolve_checkpoint
from shared.run import EXPORT_DIR

P = TypeVar("P", bound=Pretrained)


def locate(path: str | Path) -> Path:
    """``path`` on disk (a release name becomes its shipped folder); one-line
    :class:`CheckpointError` ``checkpoint not found: PATH`` when it does not exist."""
    found = resolve_checkpoint(path)
    if not found.exists():
        raise CheckpointError(f"checkpoint not found: {found}")
    return found


def find_exported(path: Path, subfolders: Sequence[str] = (EXPORT_DIR,)) -> Path | None:
    """The first of ``path`` (its folder, for a file) and its ``subfolders`` that holds a
    ``config.json``, or None."""
    folder = path.parent if path.is_file() else path
    for candidate in (folder, *(folder / sub for sub in subfolders)):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def load_exported(folder: Path, accepted: Iterable[type[P]], what: str) -> P:
    """The network exported in ``folder``, in eval mode, built by the ``accepted`` class whose
    ``model_type`` its ``config.json`` names; any other type is a one-line
    :class:`CheckpointError` ``FOLDER holds a 'TYPE' model, not WHAT (accepted types)``."""
    by_type = {cls.model_type: cls for cls in accepted}
    kind = read_json(folder / CONFIG_FILE).get("model_type")
    cls = by_type.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CheckpointError(f"{folder} holds a '{kind}' model, not {what} ({', '.join(by_type)})")
    return cls.from_pretrained(folder)


def named_export(path: Path, name: str, what: str) -> Path:
    """The folder of the network a run exports as ``model/NAME/``, given the run folder, its
    ``model/`` or that folder itself; a one-line :class:`CheckpointError` naming ``what`` when
    the run has not exported it (yet)."""
    found = find_exported(path, (name, f"{EXPORT_DIR}/{name}"))
    if found is None:
        raise CheckpointError(
            f"{path} holds no exported {what} ({EXPORT_DIR}/{name}/{CONFIG_FILE}); "
            "finish the run (or --resume it) to export one"
        )
    return found
