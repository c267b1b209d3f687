"""The class names a model keeps with its export (``classes.json``), and ``--class`` read as a
name or an id."""

from __future__ import annotations

import json
from pathlib import Path

from shared.data.errors import DataError
from shared.data.fashion_mnist import FASHION_MNIST_CLASSES
from shared.data.summary import DATA_FILE
from shared.release import RELEASE_DIR

CLASSES_FILE = "classes.json"  # in an exported model folder: the class names of its data
# shipped models trained before class names were stored (shared/release/NAME)
RELEASE_CLASSES = {
    name: FASHION_MNIST_CLASSES for name in ("fmnist-gpt", "fmnist-adatgan", "fmnist-dcgan")
}


def save_class_names(folder: str | Path, names: list[str]) -> None:
    """Store the class names of a model's data (id = position) as ``classes.json`` in its
    exported ``folder``; nothing for no names."""
    if names:
        text = json.dumps({"class_names": list(names)}, indent=2, ensure_ascii=False)
        (Path(folder) / CLASSES_FILE).write_text(text + "\n", encoding="utf-8")


def load_class_names(folder: str | Path, num_classes: int) -> list[str] | None:
    """The class names stored with the model in ``folder`` (:func:`save_class_names`), the
    data summary of a run folder, or those of a shipped release model; None when the model
    has none (or they do not fit its ``num_classes``)."""
    folder = Path(folder)
    for path in (folder / CLASSES_FILE, folder / DATA_FILE):
        if path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                names = record.get("class_names") or [c["name"] for c in record["classes"]]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if names and len(names) == num_classes and all(isinstance(n, str) for n in names):
                return list(names)
    release = RELEASE_CLASSES.get(folder.name)
    if release and folder.resolve().parent == RELEASE_DIR.resolve():
        return list(release) if len(release) == num_classes else None
    return None


def class_id(value: str | int, names: list[str] | None, num_classes: int) -> int:
    """``--class`` as given, a class name (exact, else case-insensitive) or an id, -> the id.
    Anything else is a one-line :class:`DataError` listing the valid names with their ids."""
    text = str(value).strip()
    if names:
        if text in names:
            return names.index(text)
        folded = [i for i, n in enumerate(names) if n.casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
    if text.isdigit() and int(text) < num_classes:
        return int(text)
    if names:
        choices = "choose one of " + ", ".join(f"{i}={n}" for i, n in enumerate(names))
    else:
        choices = f"choose an id in 0..{num_classes - 1} (the model stores no class names)"
    raise DataError(f"--class {text}: {choices}")
