"""What a training run will see of its data, as a record (``data.json`` in a run folder) and as
the lines a training command prints first."""

from __future__ import annotations

import math

from torch.utils.data import Dataset

MIN_VAL_IMAGES = 8  # fewer validation images: the data summary warns
DATA_FILE = "data.json"  # in a run folder: the data summary


def data_summary(train: Dataset, val: Dataset | None = None, source: str | None = None) -> dict:
    """What a training run will see, from each split's :meth:`ImageDataset.describe`: image
    counts, the split rule, image size, classes ``{"id", "name", "images"}`` (images over both
    splits, None where unknown), masks, skipped files and ``warnings`` (a tiny validation split).
    ``source`` names a dataset that cannot describe itself (2-D points). JSON-serialisable;
    :func:`format_data_summary` prints it."""
    t = _describe(train, source)
    v = _describe(val, source, mask_ids=False) if val is not None else {"images": 0}
    counts = t.get("class_counts")
    if counts is not None and val is not None:
        counts = [a + b for a, b in zip(counts, v.get("class_counts") or [], strict=False)]
        counts = counts if len(counts) == len(t["classes"]) else None
    classes = t.get("classes", [])
    masks = t.get("masks")
    if masks is not None:
        masks = {"images": masks["images"] + v["images"], "max_id": masks["max_id"]}
    summary = {
        "source": t["source"],
        "kind": t["kind"],
        "train_images": t["images"],
        "val_images": v["images"],
        "split_rule": t.get("split_rule"),
        "val_option": t.get("val_option"),
        **{k: t.get(k) for k in ("resolution", "channels", "crop", "flip")},
        "classes": [
            {"id": i, "name": name, "images": counts[i] if counts else None}
            for i, name in enumerate(classes)
        ],
        "masks": masks,
        "skipped": t.get("skipped", 0),
    }
    summary["warnings"] = [w for w in (_val_warning(summary),) if w]
    return summary


def _describe(dataset: Dataset, source: str | None, mask_ids: bool = True) -> dict:
    describe = getattr(dataset, "describe", None)
    if describe is not None:
        return describe(mask_ids)
    kind = "points" if hasattr(dataset, "points") else "other"
    return {"source": source or type(dataset).__name__, "kind": kind, "images": len(dataset)}


def _val_warning(s: dict) -> str | None:
    """A one-line warning when the validation split is too small to judge a run by."""
    n_val, total = s["val_images"], s["train_images"] + s["val_images"]
    if s["kind"] == "points" or n_val >= MIN_VAL_IMAGES:
        return None
    text = (
        "no validation images: validation metrics and the overfitting check are off"
        if n_val == 0
        else f"only {n_val} validation image{'s' * (n_val > 1)}: validation metrics are noise and "
        "overfitting goes unseen"
    )
    if s["val_option"] != "data.val_fraction":
        return f"{text} ({s['split_rule']})"
    need = math.ceil(100 * MIN_VAL_IMAGES / max(total, 1)) / 100
    if need <= 0.5:
        return f"{text}; set data.val_fraction={need:g} (about {MIN_VAL_IMAGES} of {total} images)"
    return f"{text}; {total} images are too few to hold out {MIN_VAL_IMAGES}: add images"


def format_data_summary(s: dict) -> str:
    """:func:`data_summary` as the lines a training command prints first."""
    n_train, n_val = s["train_images"], s["val_images"]
    what = "2-D points" if s["kind"] == "points" else "images"
    head = f"data: {s['source']} ({s['kind']}): {n_train} training and {n_val} validation {what}"
    if s["skipped"]:
        head += f"; {s['skipped']} unreadable file{'s' * (s['skipped'] > 1)} skipped"
    lines = [head]
    if s.get("split_rule"):
        lines.append(f"  split: {s['split_rule']}")
    if s.get("resolution"):
        res, colour = s["resolution"], "RGB" if s["channels"] == 3 else "grayscale"
        crop = "random crops" if s["crop"] == "random" else "centre crops"
        flip = ", random horizontal flips" if s["flip"] else ""
        lines.append(f"  images: {res}x{res} px {colour} (data.resolution; {crop}{flip})")
    if s["kind"] != "points":
        named = [
            f"{c['id']}={c['name']}" + (f" ({c['images']})" if c["images"] is not None else "")
            for c in s["classes"]
        ]
        hint = " (one sub-folder per class gives labels)" if s["kind"] == "folder" else ""
        lines.append("  classes: " + (", ".join(named) if named else f"no labels{hint}"))
    if s["masks"]:
        m = s["masks"]
        lines.append(f"  masks: {m['images']} (ids 0..{m['max_id']})")
    lines += [f"warning: {w}" for w in s["warnings"]]
    return "\n".join(lines)
