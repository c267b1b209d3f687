"""How a folder's files are split into train and val: by a stable hash of each path."""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "all")


def split_items(items: list[tuple], val_fraction: float, split: str) -> list[tuple]:
    """Assign each item (last element a relative path) to val with probability
    ``val_fraction`` by a hash of its path; with >= 2 items and val_fraction > 0, both train
    and val get at least one."""
    if split == "all":
        return items
    keys = [path_hash(it[-1].as_posix()) for it in items]
    val = {i for i, k in enumerate(keys) if k < val_fraction}
    if len(items) >= 2 and val_fraction > 0:
        order = sorted(range(len(items)), key=keys.__getitem__)
        if not val:
            val = {order[0]}
        if len(val) == len(items):
            val.discard(order[-1])
    return [it for i, it in enumerate(items) if (i in val) == (split == "val")]


def path_hash(text: str) -> float:
    """A stable pseudo-random number in [0, 1) for ``text`` (a path; a file name that is not
    UTF-8 reaches Python with surrogate escapes, which encode back to its own bytes)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
