"""scripts/gpu_check.py on the CPU: every row of a --quick run, and the per-position decoding
that its CUDA-graph row captures, token for token against ``GPTPrior.sample``."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_window_decoder_gives_the_tokens_of_sample():
    net = gpu_check.build_gpt(4, "cpu")
    expected = net.sample(3, top_k=50, generator=torch.Generator().manual_seed(0))
    decoder = gpu_check.WindowDecoder(net, 3, 50, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = decoder.decode()
    assert tokens.shape == (3, 4, 4) and torch.equal(tokens, expected)
    other = gpu_check.WindowDecoder(net, 3, 50, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.equal(other.decode(), expected)


def test_quick_cpu_run_reports_every_row(tmp_path):
    table = tmp_path / "check.md"
    rows = gpu_check.main(["--device", "cpu", "--quick", "--markdown", str(table)])
    assert all("error" not in r for r in rows), [r for r in rows if "error" in r]
    train = {(r["model"], r["precision"]) for r in rows if r["check"] == "train"}
    models = ("tokenizer", "prior", "gan")
    assert train == {(m, p) for m in models for p in ("bf16", "fp32")}
    decode = [r for r in rows if r["check"] == "decode"]
    assert [(r["batch"], r["variant"]) for r in decode] == [
        (b, v) for b in (4, 16) for v in ("sample (static KV cache)", "CUDA graphs")
    ]
    assert [r["size"] for r in rows if r["check"] == "clip"] == [32, 64]
    for r in rows:
        if r.get("variant") == "CUDA graphs":
            assert r["status"] == "cuda only"
            continue
        value = r.get("steps_per_s", r.get("tokens_per_s", r.get("seconds")))
        assert value > 0 and r["peak_mib"] is None, r
    text = table.read_text()
    assert text.count("| bf16 |") == 3 and "cuda only" in text and "twostage clip" in text
