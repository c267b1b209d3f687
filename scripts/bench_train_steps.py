"""Training steps/s and host syncs per step through the real engine, old sync pattern vs new.

Each preset is trained ``--steps`` optimizer steps on ``builtin:shapes`` (random-weight nets,
no evaluation, samples or checkpoints but the final one) twice per repeat, same ``log_every``
(the preset's):

- ``old``: the sync pattern before issue 17: every logged tensor turned into a Python float
  inside the training step (one device-to-host sync each) and the NaN flag all-reduced and read
  back (``.item()``) after every step;
- ``new``: the step returns detached 0-dim tensors; the NaN guard accumulates a device-side flag
  and reads it back, with the logged values in one transfer, only at log/checkpoint steps.

Rows: steps/s (median over ``--repeats``, from the run's last ``steps_per_s`` record), ``ratio``
= new / old, and ``syncs_per_step``: calls of ``Tensor.item/tolist/__float__/__bool__`` from
outside torch (Adam's CPU step counters are torch's own and cost no device sync); on CUDA also
``cuda_syncs_per_step``, the syncs ``torch.cuda.set_sync_debug_mode`` reports (all of them,
e.g. ``bincount`` in the quantizer too). On CPU there is no device queue to wait for, so the
steps/s gain there is only the Python overhead of the calls: expect a ratio near 1.

The device is the engine's own (CUDA when there is one; ``CUDA_VISIBLE_DEVICES=`` for CPU).

    python scripts/bench_train_steps.py [--steps 40] [--repeats 2] [--preset NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shared.config import build_config, read_preset  # noqa: E402
from shared.data import build_dataset  # noqa: E402
from shared.engine import Trainer  # noqa: E402
from shared.run import prepare_run_dir, read_metrics  # noqa: E402

SYNC_METHODS = ("item", "tolist", "__float__", "__bool__")


class RandomCodes(torch.utils.data.Dataset):
    """(h,w) code grids of ``n_codes`` and a class label: what a GPT prior trains on."""

    def __init__(self, n: int, window: tuple[int, int], n_codes: int, classes: int):
        g = torch.Generator().manual_seed(0)
        self.codes = torch.randint(n_codes, (n, *window), generator=g)
        self.labels = torch.randint(max(classes, 1), (n,), generator=g)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple | list) else key
        return {"codes": self.codes[i], "label": self.labels[i]}


def vqgan_tiny(overrides: list[str]):
    from stage1_vqgan.config import VQGANConfig
    from stage1_vqgan.task import VQGANTask

    extra = ["loss.perceptual_backbone=random", "loss.disc_start=0", *overrides]
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"), overrides=extra)
    return VQGANTask(cfg), cfg.train, build_dataset(cfg.data, "train", seed=0)


def gpt_tiny(overrides: list[str]):
    from stage1_vqgan.config import VQGANConfig
    from stage1_vqgan.model import VQModel
    from stage2_prior.config import PriorConfig
    from stage2_prior.gpt_task import GPTPriorTask
    from stage2_prior.train import build_prior

    tok_cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"))
    tokenizer = VQModel.from_config(tok_cfg.model)
    preset = read_preset("gpt-tiny", "stage2_prior")
    cfg = build_config(PriorConfig, preset, overrides=["data.resolution=32", *overrides])
    classes = build_dataset(cfg.data, "val", seed=0).num_classes
    prior = build_prior(cfg, tokenizer, None, classes)
    data = RandomCodes(512, tuple(prior.window), tokenizer.n_embed, classes)
    return GPTPriorTask(cfg, prior), cfg.train, data


def dcgan_32(overrides: list[str]):
    from gan_direct.config import GANConfig
    from gan_direct.presets import prepare
    from gan_direct.task import GANTask

    extra = ["data.resolution=32", "train.batch_size=16", "train.log_every=10", *overrides]
    cfg = build_config(GANConfig, read_preset("dcgan-cifar64", "gan_direct"), overrides=extra)
    cfg = prepare(cfg, 0)
    return GANTask(cfg), cfg.train, build_dataset(cfg.data, "train", seed=0)


PRESETS = {"vqgan-tiny": vqgan_tiny, "gpt-tiny": gpt_tiny, "dcgan-cifar64@32px": dcgan_32}


def with_old_syncs(task) -> None:
    """Give ``task`` the old sync pattern: its logged tensors read back one by one in the step
    and the NaN flag all-reduced and read back after every step."""
    step = task.training_step

    def training_step(batch, i, trainer):
        logs = {
            k: float(v) if torch.is_tensor(v) else v for k, v in step(batch, i, trainer).items()
        }
        flag = torch.tensor([0.0], device=trainer.device)
        trainer.accelerator.reduce(flag, reduction="sum").item()
        return logs

    task.training_step = training_step


@contextmanager
def counting_syncs(calls: list):
    """Append to ``calls`` each Tensor.item/tolist/__float__/__bool__ called from outside torch."""
    originals = {m: getattr(torch.Tensor, m) for m in SYNC_METHODS}

    def wrap(original):
        def counted(self, *a, **k):
            if "/torch/" not in sys._getframe(1).f_code.co_filename:
                calls.append(1)
            return original(self, *a, **k)

        return counted

    for m, original in originals.items():
        setattr(torch.Tensor, m, wrap(original))
    try:
        yield
    finally:
        for m, original in originals.items():
            setattr(torch.Tensor, m, original)


@contextmanager
def cuda_sync_warnings(records: list, device: str):
    """Collect the sync warnings of ``torch.cuda.set_sync_debug_mode`` into ``records``."""
    if not device.startswith("cuda"):
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    records.extend(w for w in caught if "synchroniz" in str(w.message))


def run(name: str, old: bool, steps: int) -> dict:
    """One training run of ``steps`` steps: steps/s and syncs per step."""
    torch.manual_seed(0)
    extra = [
        f"train.max_steps={steps}",
        "train.eval_every=0",
        "train.sample_every=0",
        "train.checkpoint_every=0",
        "train.progress=false",
        "train.num_workers=0",
        "train.ema_decay=0",
    ]
    task, train_cfg, data = PRESETS[name](extra)
    if old:
        with_old_syncs(task)
    calls, cuda_syncs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        prepare_run_dir(run_dir)
        trainer = Trainer(task, train_cfg, run_dir, data)
        device = str(trainer.device)
        with counting_syncs(calls), cuda_sync_warnings(cuda_syncs, device):
            trainer.fit()
        rate = [r["steps_per_s"] for r in read_metrics(run_dir) if "steps_per_s" in r][-1]
    out = {"device": device, "steps_per_s": rate, "syncs_per_step": len(calls) / steps}
    out["log_every"] = train_cfg.log_every
    if device.startswith("cuda"):
        out["cuda_syncs_per_step"] = len(cuda_syncs) / steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--preset", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    print(json.dumps({"steps": args.steps, "threads": torch.get_num_threads()}))
    for name in args.preset:
        run(name, False, 3)  # warm-up: allocator, kernels, thread pool
        results = {"old": [], "new": []}
        for _ in range(args.repeats):
            for mode in ("old", "new"):  # interleaved: drifting machine load hits both
                results[mode].append(run(name, mode == "old", args.steps))
        first = results["new"][0]
        row = {"preset": name, "device": first["device"], "log_every": first["log_every"]}
        for mode, runs in results.items():
            row[f"{mode}_steps_per_s"] = round(statistics.median(r["steps_per_s"] for r in runs), 3)
            row[f"{mode}_syncs_per_step"] = round(runs[0]["syncs_per_step"], 3)
            if "cuda_syncs_per_step" in runs[0]:
                row[f"{mode}_cuda_syncs_per_step"] = round(runs[0]["cuda_syncs_per_step"], 3)
        row["ratio"] = round(row["new_steps_per_s"] / row["old_steps_per_s"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
