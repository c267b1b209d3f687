"""Sampling benchmark for the priors, each figure a ratio against baselines run here.

1. ``decode``: one 16x16 window of tokens (batch 4 and 64 at 4 layers x 256, batch 4 at the
   ``gpt-taming`` size, 24 x 1024 over 16384 codes): taming-transformers' own
   ``sample_with_past`` on its own minGPT (read from a local taming checkout, ``--taming DIR``;
   our :class:`GPTPrior` holds the same weights, converted), our recomputing reference (one
   forward of each token's prefix), and our fast path (a static key/value cache);
2. ``window``: 32x64, 64x64 and 36x64 token grids through a 16x16 sliding window: the reference
   rule, the previous release's fast path (transformers' cache reused while the window stays
   put, the prefix recomputed when it moves; kept here as the baseline), and our two schedules:
   ``raster`` (the same order over the static cache, a moving window's prefix through the
   last-token forward; the default on CPU) and ``wavefront`` (all prefixes of a wave in one
   forward; the default on GPU);
3. ``adatgan``: images/s of a 16x16 grid from the AdatGAN prior (``adatgan-prior-16x16``
   widths, one forward) vs. the GPT prior's fast path (decoding left out of both).

Each measurement runs in a fresh subprocess (its peak memory: CUDA allocations, or the resident
set size on CPU) with top-k 100 and one seed; "same tokens" compares every variant with our
reference (taming's multinomial draws differ by construction: its tokens are compared with ours
greedily, temperature 0, on the same window). Times are single runs.

    python scripts/bench_sampling.py [--device cpu|cuda] [--taming DIR] [--quick]
        [--cases decode,window,adatgan] [--grids 32x64,64x64,36x64]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from stage1_vqgan.benchmark import PeakMemory
from stage2_prior.adatgan_prior import AdatPriorGenerator
from stage2_prior.gpt import GPTPrior
from stage2_prior.sampling import draw, window_origin
from stage2_prior.taming import mingpt_to_gpt2

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOP_K = 100
SIZES = {"4x256": (4, 8, 256, 1024), "gpt-taming": (24, 16, 1024, 16384)}  # layers, heads, C, V
DECODE = [("4x256", 4), ("4x256", 64), ("gpt-taming", 4)]
WINDOWS = [(32, 64), (64, 64), (36, 64)]


def taming_mingpt(folder: Path):
    """taming's ``mingpt`` module from a local checkout (its old ``transformers`` import of
    ``top_k_top_p_filtering`` is given a top-k stand-in when the installed version lacks it)."""
    import transformers

    path = folder / "taming" / "modules" / "transformer" / "mingpt.py"
    if not path.is_file():
        raise SystemExit(f"--taming: {path} not found (give a taming-transformers checkout)")
    if not hasattr(transformers, "top_k_top_p_filtering"):

        def top_k_only(logits, top_k=0, top_p=1.0, filter_value=-float("inf")):
            kth = torch.topk(logits, top_k)[0][..., -1, None]
            return logits.masked_fill(logits < kth, filter_value)

        transformers.top_k_top_p_filtering = top_k_only
    spec = importlib.util.spec_from_file_location("taming_mingpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def networks(size: str, window, device, taming: Path | None):
    """Our GPT prior (unconditional, start token 0 sharing ids with the codes, as in taming) and
    taming's minGPT with the same weights (None without ``taming``)."""
    layers, heads, width, vocab = SIZES[size]
    torch.manual_seed(0)
    kw = dict(n_codes=vocab, window=list(window), n_layer=layers, n_head=heads, n_embd=width)
    ours = GPTPrior(**kw, cond_offset=0, vocab_size=vocab)
    theirs = None
    if taming is not None:
        block = ours.spec.block_size
        theirs = taming_mingpt(taming).GPT(vocab, block, n_layer=layers, n_head=heads, n_embd=width)
        ours.load_state_dict(mingpt_to_gpt2(theirs.state_dict()))
        theirs = theirs.to(device).eval()
    return ours.to(device).eval(), theirs


def previous_fast_path(net: GPTPrior, batch: int, grid, generator) -> torch.Tensor:
    """The previous release's sliding window: transformers' dynamic key/value cache reused while
    the window stays put (one token per forward), the prefix recomputed when it moves; the
    uniforms are drawn as :meth:`GPTPrior.sample` draws them, so the tokens are comparable."""
    (H, W), (wh, ww) = grid, net.window
    ctx = net.context(None, batch, grid)
    u = torch.rand(H, W, batch, generator=generator, device=ctx.device)
    canvas = torch.zeros(batch, H, W, dtype=torch.long, device=ctx.device)
    past, last = None, None
    for i in range(H):
        i0 = window_origin(i, H, wh)
        for j in range(W):
            j0 = window_origin(j, W, ww)
            pos = (i - i0) * ww + (j - j0)
            win = canvas[:, i0 : i0 + wh, j0 : j0 + ww].reshape(batch, -1)
            if last == (i0, j0, pos - 1):
                logits, past = net(win[:, pos - 1 : pos], past=past, use_cache=True)
            else:
                logits, past = net(torch.cat([ctx, win[:, :pos]], 1), use_cache=True)
            canvas[:, i, j] = draw(logits[:, -1], top_k=TOP_K, uniform=u[i, j])
            last = (i0, j0, pos)
    return canvas


def measure(job: dict, args) -> dict:
    """One variant of one case, in this process: seconds, peak MiB and the tokens."""
    device = args.device
    taming = Path(args.taming) if args.taming and job["variant"] == "taming" else None
    case = job["case"]
    if case == "adatgan" and job["variant"] == "adatgan":
        torch.manual_seed(0)
        dims = [1024, 256, 128]
        net = AdatPriorGenerator(n_codes=1024, window=[16, 16], dims=dims, embed_dim=256)
        net = net.to(device).eval()
    else:
        window = (16, 16)
        net, theirs = networks(job.get("size", "4x256"), window, device, taming)
    batch, grid = job["batch"], tuple(job["grid"])
    g = torch.Generator(device=device).manual_seed(0)

    def run():
        variant = job["variant"]
        if variant == "taming":
            torch.manual_seed(0)
            start = torch.zeros(batch, 1, dtype=torch.long, device=device)
            steps = grid[0] * grid[1]
            return taming_mingpt(taming).sample_with_past(start, theirs, steps, top_k=TOP_K)
        if variant == "previous":
            return previous_fast_path(net, batch, grid, g)
        if variant == "adatgan":
            return net.sample(batch, grid, generator=g, top_k=TOP_K)
        waves = {"raster": False, "wavefront": True}.get(variant)
        fast = variant in ("fast", "raster", "wavefront")
        return net.sample(batch, grid, generator=g, cached=fast, top_k=TOP_K, waves=waves)

    with torch.no_grad(), PeakMemory(torch.device(device)) as mem:
        if job["variant"] == "adatgan":
            run()  # one forward is short: time a second call, after a warm-up
        sync(device)
        start = time.perf_counter()
        tokens = run()
        sync(device)
        seconds = time.perf_counter() - start
    out = {"seconds": seconds, "peak_mib": mem.peak_mib, "tokens": tokens.flatten().tolist()}
    if taming is not None:  # greedy agreement with taming on a short prefix
        start = torch.zeros(batch, 1, dtype=torch.long, device=device)
        mod = taming_mingpt(taming)
        greedy = mod.sample_with_past(start, theirs, grid[0] * grid[1], sample_logits=False)
        ours = net.sample(batch, grid, temperature=0)
        out["greedy_equal"] = torch.equal(greedy.flatten(1), ours.flatten(1))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def in_subprocess(job: dict, args) -> dict:
    cmd = [sys.executable, __file__, "--measure", json.dumps(job), "--device", args.device]
    cmd += ["--taming", args.taming] if args.taming else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{job}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(title: str, results: dict, baselines: list[str], fast: list[str], per: str, n: int):
    """A JSON row: rate of each variant, each fast one's speed-up over each baseline, peak MiB
    and whether its tokens equal the reference's."""
    out = {"case": title}
    for name, r in results.items():
        out[f"{name} {per}/s"] = round(n / r["seconds"], 2)
    for f in fast:
        for name in baselines:
            if name in results:
                ratio = results[name]["seconds"] / results[f]["seconds"]
                out[f"{f} x {name}"] = round(ratio, 2)
    for name, r in results.items():
        out[f"{name} peak MiB"] = None if r["peak_mib"] is None else round(r["peak_mib"], 1)
    if "reference" in results:
        out["same tokens"] = all(
            results["reference"]["tokens"] == results[f]["tokens"] for f in fast
        )
    if "greedy_equal" in results.get("taming", {}):
        out["greedy tokens = taming's"] = results["taming"]["greedy_equal"]
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--taming", help="a taming-transformers checkout (for its sample_with_past)")
    p.add_argument("--cases", default="decode,window,adatgan")
    p.add_argument("--quick", action="store_true", help="batch 4 at 4x256 and a 32x64 window only")
    p.add_argument("--grids", help="sliding-window grids, e.g. 36x64,64x64 (rows x columns)")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure), args)))
        return
    print(
        f"# {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"top-k {TOP_K}; taming: {args.taming or 'not given'}",
        flush=True,
    )
    cases = args.cases.split(",")
    if "decode" in cases:
        for size, batch in DECODE[:1] if args.quick else DECODE:
            job = {"case": "decode", "size": size, "batch": batch, "grid": [16, 16]}
            variants = ["taming"] if args.taming else []
            variants += ["reference"] if (size, batch) == DECODE[0] else []
            results = {v: in_subprocess({**job, "variant": v}, args) for v in [*variants, "fast"]}
            title = f"16x16 window, {size}, batch {batch}"
            row(title, results, ["taming", "reference"], ["fast"], "tokens", batch * 256)
    if "window" in cases:
        grids = (
            [tuple(map(int, g.split("x"))) for g in args.grids.split(",")] if args.grids else None
        )
        for grid in grids or (WINDOWS[:1] if args.quick else WINDOWS):
            job = {"case": "window", "batch": 4, "grid": list(grid)}
            names = ["reference", "previous", "raster", "wavefront"]
            results = {v: in_subprocess({**job, "variant": v}, args) for v in names}
            title = f"{grid[0]}x{grid[1]} grid, sliding 16x16 window, 4x256, batch 4"
            fast = ["raster", "wavefront"]
            row(title, results, ["reference", "previous"], fast, "tokens", 4 * grid[0] * grid[1])
    if "adatgan" in cases:
        job = {"case": "adatgan", "batch": 4, "grid": [16, 16]}
        results = {v: in_subprocess({**job, "variant": v}, args) for v in ("fast", "adatgan")}
        title = "16x16 grid: AdatGAN prior vs GPT prior (4x256, fast path), batch 4"
        row(title, results, ["fast"], ["adatgan"], "images", 4)


if __name__ == "__main__":
    main()
