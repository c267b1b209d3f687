"""Writing a tokenizer benchmark: ``results.json``, ``results.md`` and a self-contained
``report.html`` (table, a bar chart per metric, best/worst crops with error heat-maps, code-usage
histograms; images inlined as PNG data, no external resources)."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from shared.images import quantize_8bit, to_uint8
from stage1_vqgan.benchmark import BenchmarkProtocol, TokenizerResult, round_trip

# key, label, +1 higher is better / -1 lower is better / 0 neither
METRICS = [
    ("psnr", "PSNR (dB)", 1),
    ("ssim", "SSIM", 1),
    ("lpips_vgg", "LPIPS VGG", -1),
    ("lpips_alex", "LPIPS Alex", -1),
    ("rfid", "rFID", -1),
    ("kid_mean", "KID", -1),
    ("is_mean", "IS", 1),
    ("mse", "MSE", -1),
    ("mae", "MAE", -1),
    ("usage", "code usage", 1),
    ("entropy_bits", "code entropy (bits)", 1),
    ("perplexity", "perplexity", 1),
    ("tokens_per_image", "tokens/img", 0),
    ("bits_per_image", "bits/img", 0),
    ("encode_img_s", "encode img/s", 1),
    ("decode_img_s", "decode img/s", 1),
    ("peak_memory_mib", "enc+dec peak MiB", -1),
]


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 100:
        return f"{int(value)}"
    return f"{value:.4g}"


def write_json(
    results: list[TokenizerResult], protocol: BenchmarkProtocol, data: str, path: Path
) -> None:
    payload = {
        "data": data,
        "protocol": asdict(protocol),
        "tokenizers": [
            {"name": r.name, "source": r.source, **r.metrics, "unavailable": r.unavailable}
            for r in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2))


def markdown_table(results: list[TokenizerResult]) -> str:
    head = "| tokenizer | " + " | ".join(label for _, label, _ in METRICS) + " |"
    rule = "|---" * (len(METRICS) + 1) + "|"
    rows = [
        f"| {r.name} | " + " | ".join(fmt(r.metrics.get(k)) for k, _, _ in METRICS) + " |"
        for r in results
    ]
    notes = [f"- {note}" for note in result_notes(results)]
    return "\n".join([head, rule, *rows, "", *notes]).rstrip() + "\n"


def result_notes(results: list[TokenizerResult]) -> list[str]:
    """Metrics that are missing, or that came from random weights (not comparable numbers)."""
    notes = []
    for r in results:
        by_reason: dict[str, list[str]] = {}
        for key, why in r.unavailable.items():
            by_reason.setdefault(why, []).append(key)
        notes += [f"{r.name}: {', '.join(k)} unavailable: {why}" for why, k in by_reason.items()]
    notes += [
        f"{r.name}: {', '.join(r.metrics['random_weights'])} computed with RANDOM weights "
        "(testing only, not comparable)"
        for r in results
        if r.metrics.get("random_weights")
    ]
    return notes


def png_data(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def figure_data(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def metric_charts(results: list[TokenizerResult]) -> str:
    """One bar chart per metric available for at least one tokenizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [
        (k, label, d)
        for k, label, d in METRICS
        if any(r.metrics.get(k) is not None for r in results)
    ]
    cols = 4
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    names = [r.name for r in results]
    for ax, (key, label, direction) in zip(axes.flat, shown, strict=False):
        values = [r.metrics.get(key) or 0.0 for r in results]
        ax.bar(range(len(values)), values, color="#4c72b0")
        ax.set_xticks(range(len(values)), names, rotation=20, fontsize=7)
        arrow = {1: " (higher better)", -1: " (lower better)", 0: ""}[direction]
        ax.set_title(label + arrow, fontsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    data = figure_data(fig)
    plt.close(fig)
    return data


def usage_histogram(result: TokenizerResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(np.asarray(result.code_counts))[::-1]
    fig, ax = plt.subplots(figsize=(5, 2.2))
    ax.bar(np.arange(len(counts)), np.maximum(counts, 0.5), width=1.0, color="#dd8452")
    ax.set_yscale("log")
    ax.set_xlabel("code (sorted by frequency)")
    ax.set_ylabel("count")
    ax.set_title(
        f"{result.name}: {int((counts > 0).sum())} of {len(counts)} codes used", fontsize=9
    )
    fig.tight_layout()
    data = figure_data(fig)
    plt.close(fig)
    return data


def error_heatmap(x: torch.Tensor, rec: torch.Tensor) -> np.ndarray:
    """Mean absolute error over channels as an RGB heat-map (H, W, 3) uint8."""
    from matplotlib import colormaps

    err = ((x - rec).abs().mean(0) / 2).clamp(0, 1).cpu().numpy()
    return (colormaps["inferno"](err / max(err.max(), 1e-6))[..., :3] * 255).astype(np.uint8)


def crops_html(
    result: TokenizerResult, tok, data, device, protocol: BenchmarkProtocol, k: int = 3
) -> str:
    """Best and worst images by PSNR: original, reconstruction, error heat-map."""
    scores = result.per_image.get("psnr") or []
    if not scores:
        return ""
    order = np.argsort(scores)
    picks = [("best", int(i)) for i in order[::-1][:k]] + [("worst", int(i)) for i in order[:k]]
    cells = []
    for kind, i in picks:
        x = data[i]["image"].to(device)
        with torch.inference_mode():
            rec = round_trip(tok, x[None])[0].clamp(-1, 1)
        if protocol.round_trip_8bit:
            rec = quantize_8bit(rec)
        imgs = [to_uint8(x), to_uint8(rec), error_heatmap(x, rec)]
        tiles = "".join(f'<img src="{png_data(a)}">' for a in imgs)
        cells.append(
            f"<figure>{tiles}<figcaption>{kind}: image {i}, "
            f"PSNR {scores[i]:.2f} dB</figcaption></figure>"
        )
    return "".join(cells)


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
figure{display:inline-block;margin:6px;text-align:center}figure img{width:128px;height:128px;
image-rendering:pixelated;margin:1px}figcaption{font-size:12px}.note{color:#a33;font-size:13px}
"""


def write_html(
    results: list[TokenizerResult],
    protocol: BenchmarkProtocol,
    data_source: str,
    path: Path,
    crops: dict[str, str],
) -> None:
    header = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in METRICS)
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td>"
        + "".join(f"<td>{fmt(r.metrics.get(k))}</td>" for k, _, _ in METRICS)
        + "</tr>"
        for r in results
    )
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in result_notes(results))
    sections = "".join(
        f"<h3>{html.escape(r.name)}</h3><p><small>{html.escape(r.source)}</small></p>"
        f'<div>{crops.get(r.name, "")}</div><img src="{usage_histogram(r)}">'
        for r in results
    )
    protocol_text = html.escape(json.dumps(asdict(protocol)))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Tokenizer benchmark</title>
<style>{STYLE}</style></head><body>
<h1>Tokenizer benchmark</h1>
<p>Data: <code>{html.escape(data_source)}</code>, {fmt(results[0].metrics.get("num_images"))}
images. Protocol: <code>{protocol_text}</code></p>
<table><tr><th>tokenizer</th>{header}</tr>{rows}</table>{notes}
<h2>Metrics</h2><img src="{metric_charts(results)}" alt="metric charts">
<h2>Best and worst reconstructions (original, reconstruction, error)</h2>{sections}
</body></html>"""
    path.write_text(page)
