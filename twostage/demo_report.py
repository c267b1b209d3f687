"""``index.html`` of a demo folder: each stage's pictures, figures and the commands that made
them, with relative links (the folder can be moved or served as it is)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from shared.data import FASHION_MNIST_CLASSES

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}h1{margin-bottom:.2em}section{border-top:1px solid #ddd;padding:.6em 0}
pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:12px;white-space:pre-wrap}
img{image-rendering:pixelated;max-width:100%;margin:.3em .6em .3em 0;border:1px solid #ccc}
figure{display:inline-block;margin:0 1em 0 0;vertical-align:top}figcaption{font-size:12px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}
.note{color:#a33}.row{display:flex;flex-wrap:wrap;align-items:flex-start;gap:.5em}"""


def _pictures(out: Path, key: str, record: dict) -> list[tuple[str, str, int]]:
    """(relative path, caption, display width) of the pictures of one stage that exist."""
    runs = {  # run folder, what its last sample grid shows
        "tokenizer": ("tokenizer", "images (top half) above their reconstructions"),
        "class_prior": ("prior-class", "decoded training codes above samples of their classes"),
        "adatgan_prior": ("prior-adatgan", "decoded training codes above samples of their classes"),
        "texture_tokenizer": ("texture-tokenizer", "crops (top half) above their reconstructions"),
        "texture_prior": ("prior-texture", "decoded training codes above unconditional samples"),
        "benchmark": ("tokenizer", "what is measured: images (top half), reconstructions"),
    }
    found = []
    if key in runs:
        grids = sorted((out / runs[key][0] / "samples").glob("step_*.png"))
        if grids:
            found.append((grids[-1], runs[key][1], 384))
    names = ", ".join(f"{i} {n}" for i, n in enumerate(record["classes"]))
    garments = ", ".join(f"{i} {n}" for i, n in enumerate(FASHION_MNIST_CLASSES))
    photo = f"the photograph '{record.get('texture', '')}' at the crops' scale"
    by_key = {
        "fmnist_gpt_samples": [("fmnist_gpt_samples.png", f"a row per class ({garments})", 320)],
        "fmnist_adatgan_samples": [
            ("fmnist_adatgan_samples.png", f"a row per class ({garments})", 320)
        ],
        "class_samples": [("class_samples.png", f"a row per class ({names})", 384)],
        "adatgan_samples": [("adatgan_samples.png", f"a row per class ({names})", 384)],
        "texture_tokenizer": [
            ("texture_crops.png", "training crops", 384),
            ("texture_photo.png", photo, 256),
        ],
        "wide": [("wide.png", "sampled wide image", 768), ("texture_photo.png", photo, 256)],
        "clip": [("clip.png", record["figures"].get("clip", {}).get("prompt", ""), 256)],
    }
    found += [(out / p, c, w) for p, c, w in by_key.get(key, [])]
    return [(p.relative_to(out).as_posix(), c, w) for p, c, w in found if p.is_file()]


def _figures(value) -> str:
    if isinstance(value, dict) and "skipped" in value:
        return f'<p class="note">{html.escape(value["skipped"])}</p>'
    rows = _flatten(value)
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>" if rows else ""


def _flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [kv for i, v in enumerate(value) for kv in _flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), value)]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_index(out: Path, record: dict) -> Path:
    """Write ``out/index.html`` from the demo's record; returns its path."""
    parts = [
        f"<!doctype html><meta charset=utf-8><title>twostage demo</title><style>{STYLE}</style>",
        "<h1>twostage demo</h1>",
        f"<p>scale <b>{record['scale']}</b>, {record.get('minutes', '?')} minutes; trained on "
        f"<b>{html.escape(record['data'])}</b> ({html.escape(record['data_note'])}) and on crops "
        f"of the photograph <b>{html.escape(record['texture'])}</b>. Every command "
        "below ran as shown, with <code>DEMO</code> this folder: paste it into a shell "
        f"(<code>DEMO={html.escape(str(out))}</code>) to run that stage again.</p>",
    ]
    for key, step in record["steps"].items():
        parts.append(f"<section><h2>{html.escape(step['title'])}</h2>")
        parts.append(f"<p>{step['seconds']} s</p><div class=row>")
        for path, caption, width in _pictures(out, key, record):
            parts.append(
                f'<figure><img src="{html.escape(path)}" width="{width}" alt="">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        if key in record["figures"]:
            parts.append(_figures(record["figures"][key]))
        parts.append("</div>")
        parts.append("<pre>" + html.escape("\n".join(step["commands"])) + "</pre></section>")
    parts.append(f"<details><summary>record</summary><pre>{html.escape(json.dumps(record))}")
    parts.append("</pre></details>")
    path = out / "index.html"
    path.write_text("\n".join(parts))
    return path
