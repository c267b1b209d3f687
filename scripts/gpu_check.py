"""GPU check: training steps/s and peak memory in bf16 and fp32, GPT decoding tokens/s with and
without CUDA graphs, and the peak memory of ``twostage clip``, in one short run.

Rows (JSON lines on stdout; ``--markdown FILE`` writes them as a table for the README):

- ``train``: a tokenizer, a GPT prior over its codes and a pixel GAN, each trained through the
  project's own ``train`` (real engine, data pipeline and checkpoints, ``builtin:shapes``,
  random weights) with ``train.precision`` bf16 and no (fp32). steps/s is measured between the
  log record after ``warmup`` steps and the last one (both read back from ``metrics.jsonl``), so
  start-up, cuDNN autotuning and the final evaluation/export are left out. GPU presets:
  ``vqgan-f16-1024`` (256 px), ``gpt-base`` over its 16x16 codes, ``dcgan-cifar64`` (64 px);
  ``--quick``: ``vqgan-tiny``, ``gpt-tiny``, ``dcgan-cifar64`` at 32 px.
- ``decode``: a GPT prior (4 layers x 256, 1024 codes, 16x16 window; ``--quick`` 8x8) sampling
  one window with ``GPTPrior.sample`` (static key/value cache, batch 4 and 64), and on CUDA the
  same decoding with one CUDA graph per position (the :class:`StaticCache` step plus the draw of
  its token, replayed in order; capture time reported apart), checked to give the same tokens.
- ``clip``: ``twostage clip`` run in-process for ``--clip-steps`` steps at 256 and 512 px
  (``--quick``: 32 and 64) through the tokenizer trained above, with open_clip ``ViT-B-32`` at
  random weights (``--quick``: a one-layer CLIP), which costs what the released weights cost.

Peak memory is ``torch.cuda.max_memory_allocated`` (None on CPU). ``--device cpu`` hides the
GPUs (``CUDA_VISIBLE_DEVICES=``) before CUDA starts, so the engine runs on the CPU too.

    python scripts/gpu_check.py [--device cuda|cpu] [--steps 20] [--quick] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

PRECISIONS = {"bf16": "bf16", "fp32": "no"}
NO_EXTRAS = [  # nothing but the training steps, the last log record and the final checkpoint
    "train.eval_every=0",
    "train.sample_every=0",
    "train.checkpoint_every=0",
    "train.eval_images=8",
    "train.progress=false",
    "train.num_workers=0",
]
PROMPT = "a lighthouse in a storm"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def presets(quick: bool) -> dict[str, tuple[str, list[str]]]:
    """{model: (preset, overrides)} of the three trainings."""
    if quick:
        small = ["train.batch_size=4"]
        return {
            "tokenizer": ("vqgan-tiny", small),
            "prior": ("gpt-tiny", small),
            "gan": ("dcgan-cifar64", ["data.resolution=32", *small]),
        }
    return {
        "tokenizer": ("vqgan-f16-1024", []),
        "prior": ("gpt-base", []),
        "gan": ("dcgan-cifar64", []),
    }


def train_model(model: str, preset: str, overrides: list[str], out: Path, tokenizer: Path | None):
    """Train ``model`` (tokenizer | prior | gan) from ``preset`` into ``out`` with the project's
    own ``train`` function; the prior trains over the codes of the ``tokenizer`` run."""
    from shared.config import build_config, read_preset

    if model == "tokenizer":
        from stage1_vqgan.config import VQGANConfig
        from stage1_vqgan.train import train

        extra = [
            "data.source=builtin:shapes",
            "loss.perceptual_backbone=random",
            "loss.disc_start=0",
        ]
        cfg = build_config(
            VQGANConfig, read_preset(preset, "stage1_vqgan"), overrides=[*extra, *overrides]
        )
    elif model == "prior":
        from stage2_prior.config import PriorConfig
        from stage2_prior.train import train

        extra = [
            "data.source=builtin:shapes",
            f"tokenizer={tokenizer}",
            "codes.max_images=64",
            f"codes.cache_dir={out.parent / 'codes'}",
        ]
        cfg = build_config(
            PriorConfig, read_preset(preset, "stage2_prior"), overrides=[*extra, *overrides]
        )
    else:
        from gan_direct.config import GANConfig
        from gan_direct.train import train

        extra = ["data.source=builtin:shapes", "train.ema_decay=0"]
        cfg = build_config(
            GANConfig, read_preset(preset, "gan_direct"), overrides=[*extra, *overrides]
        )
    train(cfg, out)


def steady_rate(run_dir: Path, warmup: int) -> float:
    """Steps/s between the log record at step ``warmup`` and the last one (each record's
    ``steps_per_s`` is steps / seconds since the loop started)."""
    records = [r for r in _metrics(run_dir) if "steps_per_s" in r]
    first = next(r for r in records if r["step"] == warmup)
    last = records[-1]
    seconds = last["step"] / last["steps_per_s"] - first["step"] / first["steps_per_s"]
    return (last["step"] - first["step"]) / seconds


def _metrics(run_dir: Path) -> list[dict]:
    from shared.run import read_metrics

    return read_metrics(run_dir)


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, which pins one mixed precision per process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def train_rows(args, work: Path) -> tuple[list[dict], Path]:
    """A row per (model, precision); also the fp32 tokenizer run, for the clip rows."""
    warmup = 1 if args.quick else 5
    loop = [f"train.max_steps={warmup + args.steps}", f"train.log_every={warmup}", *NO_EXTRAS]
    rows = []
    for precision, value in PRECISIONS.items():
        reset_accelerate()
        tokenizer = work / precision / "tokenizer"
        for model, (preset, overrides) in presets(args.quick).items():
            row = {"check": "train", "model": model, "preset": preset, "precision": precision}
            out = work / precision / model
            options = [*loop, f"train.precision={value}", *overrides]

            def fit(model=model, preset=preset, options=options, out=out, tokenizer=tokenizer):
                train_model(model, preset, options, out, tokenizer)
                return {"steps_per_s": round(steady_rate(out, warmup), 3)}

            rows.append({**row, **measured(fit, args.device)})
            print(json.dumps(rows[-1]), flush=True)
    return rows, work / "fp32" / "tokenizer"


def measured(fn: Callable[[], dict], device: str) -> dict:
    """``fn()``'s figures and its peak CUDA allocation in MiB (None on CPU), or its error."""
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        out = fn()
    except Exception as e:  # a failed row is reported, the other rows still run
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    if cuda:
        torch.cuda.synchronize()
    out["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    return out


class WindowDecoder:
    """``GPTPrior.sample`` of one window (no condition, ``top_k``, temperature 1) split into one
    function per position over static tensors, so that each can be captured as a CUDA graph.

    ``first()`` prefills the start token and draws position 0; ``step(n)`` (n >= 1) feeds the
    token at n-1 through :meth:`StaticCache.step` and draws position n into ``canvas`` (B,H,W)
    from the same uniforms (H,W,B) ``sample`` draws with the same generator."""

    def __init__(self, net, batch: int, top_k: int | None, generator: torch.Generator):
        from stage2_prior.decoding import StaticCache

        grid, self.ctx = net.prepare_sample(batch, None, None, 1.0, top_k=top_k)
        device = self.ctx.device
        self.uniforms = torch.rand(*grid, batch, generator=generator, device=device)
        self.canvas = torch.zeros(batch, *grid, dtype=torch.long, device=device)
        self.width, self.length, self.top_k = grid[1], grid[0] * grid[1], top_k
        self.cache = StaticCache(net, batch, self.ctx.shape[1] + self.length - 1)

    def first(self) -> None:
        self._put(0, self.cache.prefill(self.ctx))

    def step(self, n: int) -> None:
        i, j = divmod(n - 1, self.width)
        self._put(n, self.cache.step(self.canvas[:, i, j], self.ctx.shape[1] + n - 1))

    def _put(self, n: int, logits: torch.Tensor) -> None:
        from stage2_prior.sampling import draw

        i, j = divmod(n, self.width)
        self.canvas[:, i, j] = draw(logits, 1.0, self.top_k, uniform=self.uniforms[i, j])

    def decode(self) -> torch.Tensor:
        """Eager decoding of the whole window: the tokens (B,H,W)."""
        self.first()
        for n in range(1, self.length):
            self.step(n)
        return self.canvas


def capture(decoder: WindowDecoder) -> list[torch.cuda.CUDAGraph]:
    """One CUDA graph per position 1..H*W-1 (each reads and writes only the decoder's static
    tensors; intermediates share one memory pool, replays run in order on one stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: cuBLAS handles, kernel choices
        decoder.first()
        decoder.step(1)
    torch.cuda.current_stream().wait_stream(side)
    graphs, pool = [], None
    for n in range(1, decoder.length):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            decoder.step(n)
        pool = graph.pool()
        graphs.append(graph)
    return graphs


def build_gpt(window: int, device: str):
    from stage2_prior.gpt import GPTPrior

    torch.manual_seed(0)
    net = GPTPrior(n_codes=1024, window=[window, window], n_layer=4, n_head=4, n_embd=256)
    return net.to(device).eval()


def timed(fn: Callable[[], torch.Tensor], device: str) -> tuple[float, torch.Tensor]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


@torch.no_grad()
def decode_rows(args) -> list[dict]:
    """tokens/s of ``GPTPrior.sample`` and of its CUDA-graph replay, per batch size."""
    window, top_k, device = (8 if args.quick else 16), 100, args.device
    net = build_gpt(window, device)
    rows = []
    for batch in (4, 16) if args.quick else (4, 64):
        row = {"check": "decode", "window": f"{window}x{window}", "batch": batch}
        tokens, reference = batch * window * window, []

        def sample(batch=batch, tokens=tokens, reference=reference):
            net.sample(batch, top_k=top_k, generator=_generator(device))  # warm-up
            seconds, out = timed(
                partial(net.sample, batch, top_k=top_k, generator=_generator(device)), device
            )
            reference.append(out)
            return {"tokens_per_s": round(tokens / seconds, 1)}

        def graphed(batch=batch, tokens=tokens, reference=reference):
            decoder = WindowDecoder(net, batch, top_k, _generator(device))
            capture_s, graphs = timed(lambda: capture(decoder), device)

            def replay():
                decoder.first()
                for graph in graphs:
                    graph.replay()
                return decoder.canvas

            seconds, out = timed(replay, device)
            same = bool(reference) and torch.equal(out, reference[0])
            figures = {"tokens_per_s": round(tokens / seconds, 1), "same_tokens": same}
            return {**figures, "capture_s": round(capture_s, 2)}

        rows.append({**row, "variant": "sample (static KV cache)", **measured(sample, device)})
        graph_row = {**row, "variant": "CUDA graphs"}
        if device.startswith("cuda"):
            rows.append({**graph_row, **measured(graphed, device)})
        else:
            rows.append({**graph_row, "status": "cuda only"})
        for r in rows[-2:]:
            print(json.dumps(r), flush=True)
    return rows


def _generator(device: str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


def clip_command(tokenizer: Path | str, size: int, steps: int, output: str, device: str) -> list:
    """Arguments of ``twostage clip`` for one size (the CLIP model is added by the caller)."""
    return [
        PROMPT,
        "--tokenizer",
        str(tokenizer),
        "--size",
        f"{size}x{size}",
        "--steps",
        str(steps),
        "--save-every",
        "0",
        "--device",
        device,
        "--output",
        output,
        "--no-progress",
    ]


def clip_rows(args, tokenizer: Path, work: Path) -> list[dict]:
    """Peak memory and seconds of ``twostage clip`` per image size."""
    from stage2_prior.clip.cli import main as clip_main

    spec, extra = "ViT-B-32:random", []
    if args.quick:
        config = work / "tiny-clip.json"
        config.write_text(json.dumps(TINY_CLIP))
        spec, extra = f"{config}:random", ["--cutn", "4", "--chunk", "2"]
    rows = []
    for size in (32, 64) if args.quick else (256, 512):
        row = {"check": "clip", "size": size, "steps": args.clip_steps}
        argv = clip_command(
            tokenizer, size, args.clip_steps, str(work / f"clip{size}"), args.device
        )

        def run(argv=argv):
            seconds, code = timed(lambda: clip_main([*argv, "--clip", spec, *extra]), args.device)
            if code:
                raise RuntimeError(f"twostage clip exited with {code}")
            return {"seconds": round(seconds, 2)}

        rows.append({**row, **measured(run, args.device)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], args) -> str:
    """The rows as README tables, one per check, and the command for released CLIP weights."""
    title = {"train": "Training", "decode": "GPT decoding", "clip": "`twostage clip`"}
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    lines = [f"GPU check on {device} (`python scripts/gpu_check.py{' --quick' * args.quick}`)."]
    for check in title:
        group = [{k: v for k, v in r.items() if k != "check"} for r in rows if r["check"] == check]
        keys = list(dict.fromkeys(k for r in group for k in r))
        lines += ["", f"{title[check]}:", "", "| " + " | ".join(keys) + " |"]
        lines.append("|" + " --- |" * len(keys))
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in group]
    real = clip_command("TOKENIZER_RUN", 512, args.clip_steps, "OUT", "cuda")
    lines += [
        "",
        "CLIP runs at random weights (memory and time do not depend on them); with the released",
        f"weights: `twostage clip {' '.join(_quote(a) for a in real)}`",
    ]
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    return "" if v is None else str(v)


def _quote(a: str) -> str:
    return f'"{a}"' if " " in a else a


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda if available")
    p.add_argument("--steps", type=int, help="timed training steps (default 20, --quick 2)")
    p.add_argument("--clip-steps", type=int, help="twostage clip steps (default 5, --quick 1)")
    p.add_argument("--quick", action="store_true", help="tiny presets and sizes: a smoke run")
    p.add_argument("--markdown", type=Path, help="also write the rows as Markdown tables here")
    args = p.parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA starts: the engine uses the CPU
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    if args.device == "cpu" and torch.cuda.is_available():
        p.error("--device cpu: CUDA started before the GPUs could be hidden")
    args.steps = args.steps or (2 if args.quick else 20)
    args.clip_steps = args.clip_steps or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows, tokenizer = train_rows(args, work)
        rows += decode_rows(args)
        rows += clip_rows(args, tokenizer, work)
    if args.markdown:
        args.markdown.write_text(markdown(rows, args))
    return rows


if __name__ == "__main__":
    main()
