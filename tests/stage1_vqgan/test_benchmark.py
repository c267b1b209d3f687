"""The reconstruction benchmark end to end on builtin:photos with a tiny tokenizer."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from stage1_vqgan.benchmark import (
    BenchmarkProtocol,
    benchmark_data,
    benchmark_tokenizer,
    codebook_stats,
)
from stage1_vqgan.cli import main as vqgan_main
from stage1_vqgan.model import VQModel


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_model_kwargs):
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    VQModel(**tiny_model_kwargs).save_pretrained(root / "tok_a")
    torch.manual_seed(1)
    VQModel(**{**tiny_model_kwargs, "n_embed": 128}).save_pretrained(root / "tok_b")
    args = [
        "benchmark",
        "--checkpoint",
        str(root / "tok_a"),
        "--checkpoint",
        str(root / "tok_b"),
        "--data",
        "builtin:photos",
        "--resolution",
        "32",
        "--batch-size",
        "5",
        "--lpips-backbone",
        "random",
        "--inception",
        "random",
        "--output",
        str(root / "out"),
    ]
    assert vqgan_main(args) == 0
    return root


def test_results_hold_every_metric_for_each_tokenizer(report_dir):
    results = json.loads((report_dir / "out" / "results.json").read_text())
    assert results["protocol"]["round_trip_8bit"] and results["protocol"]["resolution"] == 32
    names = [t["name"] for t in results["tokenizers"]]
    assert names == ["tok_a", "tok_b"]
    for t in results["tokenizers"]:
        for key in (
            "psnr",
            "ssim",
            "lpips_vgg",
            "lpips_alex",
            "rfid",
            "kid_mean",
            "is_mean",
            "mse",
            "mae",
            "usage",
            "entropy_bits",
            "perplexity",
            "tokens_per_image",
            "bits_per_image",
            "encode_img_s",
            "decode_img_s",
        ):
            assert t[key] is not None, key
        assert t["num_images"] == 17 and t["tokens_per_image"] == 64
    assert results["tokenizers"][1]["bits_per_image"] == 64 * 7
    table = (report_dir / "out" / "results.md").read_text()
    assert table.count("\n| tok_") == 2 and "RANDOM weights" in table


def test_usage_is_counted_over_the_whole_set_not_per_batch(tmp_path, tiny_model_kwargs):
    torch.manual_seed(0)
    tok = VQModel(**tiny_model_kwargs).eval()
    tok.quantize.embedding.weight.data.normal_()
    protocol = BenchmarkProtocol(resolution=32, lpips_backbone="off", inception="off")
    data = benchmark_data("builtin:photos", protocol)
    codes = torch.cat([tok.encode(data[i]["image"][None]).flatten() for i in range(len(data))])
    counts = torch.bincount(codes, minlength=64)
    stats = codebook_stats(counts)
    assert stats["usage"] == pytest.approx((counts > 0).float().mean().item())
    p = counts[counts > 0].double() / counts.sum()
    assert stats["perplexity"] == pytest.approx(torch.exp(-(p * p.log()).sum()).item())
    for batch in (1, 17):
        protocol.batch_size = batch
        result = benchmark_tokenizer(tok, "t", "t", data, protocol, torch.device("cpu"))
        assert result.metrics["usage"] == pytest.approx(stats["usage"])
        assert result.code_counts == counts.tolist()


def test_missing_weights_are_reported_while_other_metrics_run(
    tmp_path, no_weights, tiny_model_kwargs
):
    VQModel(**tiny_model_kwargs).save_pretrained(tmp_path / "tok")
    out = tmp_path / "out"
    assert (
        vqgan_main(
            [
                "benchmark",
                "--checkpoint",
                str(tmp_path / "tok"),
                "--data",
                "builtin:photos",
                "--resolution",
                "32",
                "--num-images",
                "4",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    t = json.loads((out / "results.json").read_text())["tokenizers"][0]
    assert t["psnr"] is not None and t["rfid"] is None and t["lpips_vgg"] is None
    assert "pt_inception-2015-12-05-6726825d.pth" in json.dumps(t["unavailable"])
    assert "unavailable" in (out / "results.md").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_html_report_renders_in_headless_chromium(report_dir, tmp_path):
    html = (report_dir / "out" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    shot = tmp_path / "shot.png"
    cmd = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        "--window-size=1280,1600",
        (report_dir / "out" / "report.html").as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.std() > 20  # text, table, charts and images, not a blank page
    assert (pixels.reshape(-1, 3).std(1) > 30).mean() > 0.01  # coloured content is present
