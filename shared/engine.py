"""The training engine: one loop on ``accelerate.Accelerator`` that any :class:`Task` plugs into.

The loop owns devices, mixed precision, gradient accumulation, clipping, EMA, checkpoints
(atomic, resumable, bit-exact on CPU), logs, sample grids, evaluation and the NaN guard; the task
owns the models and the losses and knows nothing of processes or files."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import SAFE_MODEL_NAME, ProjectConfiguration
from accelerate.utils import load as accelerate_load
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from shared.checkpoint import (
    CheckpointError,
    load_torch_checkpoint,
    load_weights,
    save_weights,
    split_prefix,
)
from shared.config import TrainConfig, save_yaml, to_dict
from shared.data import DATA_FILE, data_summary, format_data_summary
from shared.ema import EMA
from shared.errors import one_line
from shared.images import save_grid
from shared.pretrained import load_state
from shared.run import (
    EXPORT_DIR,
    RunError,
    checkpoints,
    latest_checkpoint,
    prepare_run_dir,
    read_metrics,
)

EXTRA_STATE = "extra_state.safetensors"  # EMA weights and task state of a checkpoint
NEVER = 2**62  # the first non-finite step of a value that stayed finite

Scalar = torch.Tensor | float  # a logged value: a detached 0-dim tensor (no host sync) or a number


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the last good checkpoint is left untouched."""


class Task:
    """What a training job provides. Subclasses set ``models`` (trainable modules, prepared by
    accelerate) and may set ``ema_model`` (a key of ``models`` whose weights get an EMA copy) and
    ``state`` (other checkpointable objects with ``state_dict``/``load_state_dict``), and
    ``overfit_watch`` = (training loss key, validation metric key, "min" or "max" = its better
    direction) for the overfitting warning (:func:`overfitting`)."""

    models: dict[str, nn.Module]
    ema_model: str | None = None
    state: dict[str, Any] = {}
    overfit_watch: tuple[str, str, str] | None = None

    def setup(self, trainer: Trainer) -> None:
        """Called once the models are on their device (move auxiliary modules here)."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        """Compute losses, ``trainer.optimize(name, loss)`` per optimizer; return the scalars to
        log, as detached 0-dim tensors (the engine fetches them only when it logs) or numbers."""
        raise NotImplementedError

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor | None:
        """Images (B,C,H,W) in [-1,1] for the periodic grid, or None."""
        return None

    def evaluate(self, loader: DataLoader, trainer: Trainer) -> dict[str, float]:
        return {}

    def export(self, folder: Path, trainer: Trainer) -> None:
        """Write the final weights in the project's own format."""


class StepBatchSampler(Sampler):
    """Infinite, resumable batches: the stream of dataset indices is the concatenation of seeded
    permutations (one per epoch); batch ``j`` of rank ``r`` is a fixed slice of it. Yields lists of
    ``(index, epoch)`` so datasets can seed their augmentations from the key."""

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def batch(self, j: int) -> list[tuple[int, int]]:
        first = (j * self.world + self.rank) * self.batch_size
        keys = []
        for p in range(first, first + self.batch_size):
            epoch, i = divmod(p, self.n)
            keys.append((int(self._perm(epoch)[i]), epoch))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        j = self.start
        while True:
            yield self.batch(j)
            j += 1

    def __len__(self) -> int:
        return math.ceil(self.n / (self.batch_size * self.world))


class Trainer:
    """Runs ``task`` for ``cfg.max_steps`` optimizer steps, writing into ``run_dir``."""

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        run_dir: str | Path,
        train_data: Dataset,
        val_data: Dataset | None = None,
        resume: bool = False,
        accelerator: Accelerator | None = None,
        hparams: dict | None = None,
    ):
        self.task, self.cfg, self.run_dir = task, cfg, Path(run_dir)
        self.accelerator = accelerator or make_accelerator(cfg, self.run_dir)
        acc = self.accelerator
        self.train_data = train_data
        self.val_data = val_data if val_data is not None and len(val_data) else None
        self.step = 0
        self.overfitting: str | None = None  # the warning, once the run has overfitted
        self.finite = FiniteWatch()
        names = list(task.models)
        if cfg.channels_last:
            for m in task.models.values():
                m.to(memory_format=torch.channels_last)
        prepared = acc.prepare(*task.models.values())
        prepared = prepared if isinstance(prepared, tuple) else (prepared,)
        task.models = dict(zip(names, prepared, strict=True))
        opts = task.configure_optimizers()
        self.optimizers = {name: acc.prepare(opt) for name, opt in opts.items()}
        self.base_lrs = {n: [g["lr"] for g in o.param_groups] for n, o in opts.items()}
        task.setup(self)
        self.ema = None
        if task.ema_model and cfg.ema_decay > 0:
            self.ema = EMA(acc.unwrap_model(task.models[task.ema_model]), cfg.ema_decay)
        if resume:
            found = latest_checkpoint(self.run_dir)
            if found is not None:
                self.step, folder = found
                self.load_checkpoint(folder)
                if acc.is_main_process:
                    self._drop_metrics_after(self.step)
                acc.print(f"resumed from {folder} (step {self.step})")
            else:
                acc.print(f"no complete checkpoint in {self.run_dir}; starting from step 0")
        if acc.is_main_process:
            acc.init_trackers("tensorboard", config=_flat_hparams(hparams or {}))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def model(self, name: str, ema: bool = False) -> nn.Module:
        """The unwrapped model ``name`` (its EMA copy when ``ema`` and one exists)."""
        if ema and self.ema is not None and name == self.task.ema_model:
            return self.ema.shadow
        return self.accelerator.unwrap_model(self.task.models[name])

    def optimize(
        self, name: str, loss: torch.Tensor, grad_norm: bool = False
    ) -> torch.Tensor | None:
        """Backward ``loss`` into optimizer ``name``'s parameters and step it when the accumulation
        window closes (clipping first when ``grad_clip`` > 0). With ``grad_norm``, returns the
        global L2 norm of the (unscaled, unclipped) gradients before the step as a detached 0-dim
        tensor, else None (and None inside an accumulation window)."""
        acc, opt = self.accelerator, self.optimizers[name]
        acc.backward(loss)
        norm = None
        if acc.sync_gradients and (grad_norm or self.cfg.grad_clip > 0):
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if self.cfg.grad_clip > 0:
                norm = acc.clip_grad_norm_(params, self.cfg.grad_clip)
            else:
                acc.unscale_gradients(opt)
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return norm.detach() if grad_norm and norm is not None else None

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        cfg, acc, task = self.cfg, self.accelerator, self.task
        sampler = StepBatchSampler(
            len(self.train_data),
            cfg.batch_size,
            cfg.seed,
            acc.process_index,
            acc.num_processes,
            start=self.step * cfg.grad_accum,
        )
        loader = DataLoader(
            self.train_data,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        batches = iter(loader)
        fixed = self.fixed_batch()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
            disable=not (acc.is_main_process and cfg.progress),
        )
        logs: dict[str, Scalar] = {}
        started, first_step = time.perf_counter(), self.step
        for m in task.models.values():
            m.train()
        while self.step < cfg.max_steps:
            self._schedule_learning_rates()
            for _ in range(cfg.grad_accum):
                batch = self._to_device(next(batches))
                with acc.accumulate(*task.models.values()), acc.autocast():
                    logs = task.training_step(batch, self.step, self)
                self.finite.add(logs, self.step + 1)
            self.step += 1
            if self.ema is not None:
                self.ema.update(self.model(task.ema_model))
            bar.update(1)
            last = self.step == cfg.max_steps
            log_now = due(self.step, cfg.log_every) or last
            sample_now = fixed is not None and (due(self.step, cfg.sample_every) or last)
            eval_now = self.val_data is not None and (due(self.step, cfg.eval_every) or last)
            save_now = due(self.step, cfg.checkpoint_every) or last
            if log_now or sample_now or eval_now or save_now:
                self._check_finite()  # the only host sync of the steps since the last one
            if log_now:
                rate = (self.step - first_step) / max(time.perf_counter() - started, 1e-9)
                values = scalars(logs)
                if cfg.lr_schedule != "constant" or cfg.warmup:
                    values["lr_factor"] = lr_factor(self.step - 1, cfg)
                self.log({**values, "steps_per_s": rate})
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(values.items())[:4]}, refresh=False)
            if sample_now:
                self.save_samples(fixed)
            if eval_now:
                self.log(self.evaluate(), prefix="val/")
                self.watch_overfitting()
            if save_now:
                self.save_checkpoint()
        bar.close()
        if acc.is_main_process:
            self.task.export(self.run_dir / EXPORT_DIR, self)
        acc.wait_for_everyone()
        acc.end_training()
        return scalars(logs)

    def _schedule_learning_rates(self) -> None:
        """Set every optimizer's learning rates for step ``self.step`` from the configured ones
        (derived from the step alone, so a resumed run continues the same curve)."""
        factor = lr_factor(self.step, self.cfg)
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * factor

    def evaluate(self) -> dict[str, float]:
        """The task's metrics on the validation data (main process), with models in eval mode."""
        if not self.accelerator.is_main_process:
            return {}
        with self.inference():
            return self.task.evaluate(self.val_loader(), self)

    @contextmanager
    def inference(self):
        """Eval mode and no gradients, with the random state of training left untouched (so
        evaluation and sampling never change what training does next)."""
        devices = [self.device] if self.device.type == "cuda" else []
        modes = {name: m.training for name, m in self.task.models.items()}
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for m in self.task.models.values():
                m.eval()
            try:
                yield
            finally:
                for name, m in self.task.models.items():
                    m.train(modes[name])

    def val_loader(self) -> DataLoader:
        n = min(len(self.val_data), self.cfg.eval_images)
        subset = torch.utils.data.Subset(self.val_data, range(n))
        return DataLoader(subset, batch_size=self.cfg.batch_size, num_workers=0)

    def log(self, values: dict[str, Scalar], prefix: str = "") -> None:
        if not values:
            return
        values = {f"{prefix}{k}": v for k, v in scalars(values).items()}
        self.accelerator.log(values, step=self.step)
        if self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **values}) + "\n")

    def watch_overfitting(self) -> None:
        """After an evaluation (main process): the first time :func:`overfitting` fires on the
        task's ``overfit_watch``, print its warning and add it to ``metrics.jsonl`` as
        ``{"step", "overfitting": text}`` (a resumed run finds it there and stays quiet)."""
        watch = self.task.overfit_watch
        if watch is None or self.overfitting or not self.accelerator.is_main_process:
            return
        records = read_metrics(self.run_dir)
        earlier = [r["overfitting"] for r in records if "overfitting" in r]
        message = earlier[0] if earlier else overfitting(records, *watch, len(self.train_data))
        if message and not earlier:
            self.accelerator.print(f"warning: {message}")
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, "overfitting": message}) + "\n")
        self.overfitting = message

    def save_samples(self, batch: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        with self.inference():
            images = self.task.sample(batch, self)
        if images is not None:
            save_grid(images, self.run_dir / "samples" / f"step_{self.step:06d}.png")

    def save_checkpoint(self) -> Path:
        """``save_state`` (weights as safetensors, optimizer and RNG states) plus the EMA and task
        state as ``extra_state.safetensors`` into a hidden folder, then rename it to
        ``step_NNNNNN`` (atomic). A failed write (disk full, read-only folder) removes the hidden
        folder and stops with a one-line :class:`RunError`; earlier checkpoints stay intact."""
        acc = self.accelerator
        root = self.run_dir / "checkpoints"
        final, tmp = root / f"step_{self.step:06d}", root / f".tmp_step_{self.step:06d}"
        try:
            if acc.is_main_process:
                for stale in root.glob(".tmp_step_*"):  # left by a killed run
                    shutil.rmtree(stale, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            acc.save_state(str(tmp), safe_serialization=True)
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_weights(self.extra_state(), tmp / EXTRA_STATE)
                (tmp / "trainer_state.json").write_text(json.dumps({"step": self.step}))
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            reason = _write_failure(exc, root)
            raise RunError(f"cannot write checkpoint {final}: {reason}") from None
        if acc.is_main_process:
            for _, old in checkpoints(self.run_dir)[: -max(self.cfg.keep_checkpoints, 1)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def extra_state(self) -> dict[str, torch.Tensor]:
        """The EMA weights (``ema.*``) and the task's state objects (``NAME.*``) as tensors."""
        out = {f"ema.{k}": v for k, v in self.ema.state_dict().items()} if self.ema else {}
        for name, obj in self.task.state.items():
            out.update({f"{name}.{k}": v for k, v in obj.state_dict().items()})
        return out

    def load_checkpoint(self, folder: Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint`. Nothing in it can run code:
        weights and the extra state are safetensors, the optimizer and RNG files are read by
        ``torch.load(weights_only=True)``; any bad file is a one-line :class:`CheckpointError`."""
        acc = self.accelerator
        rng = folder / f"random_states_{acc.process_index}.pkl"
        try:
            if rng.is_file():  # accelerate ignores a bad one silently: the run would change
                accelerate_load(rng)
            acc.load_state(str(folder))
        except Exception as exc:
            raise CheckpointError(f"cannot resume from {folder}: {one_line(exc)}") from None
        extra = folder / EXTRA_STATE
        state = load_weights(extra) if extra.is_file() else {}
        objects = {"ema": self.ema} if self.ema is not None else {}
        for i, (name, obj) in enumerate({**objects, **self.task.state}.items()):
            part = split_prefix(state, name)
            if not extra.is_file():  # written before extra_state: accelerate's numbered files
                part = dict(load_torch_checkpoint(folder / f"custom_checkpoint_{i}.pkl"))
            module = obj.shadow if isinstance(obj, EMA) else obj
            if isinstance(module, nn.Module):
                load_state(module, part, f"{folder} ({name})")
            else:
                module.load_state_dict(part)

    # -- helpers -------------------------------------------------------------------------------

    def _drop_metrics_after(self, step: int) -> None:
        """Forget ``metrics.jsonl`` records of steps that the resumed run will redo."""
        path = self.run_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= step]
        if path.is_file():
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def fixed_batch(self, n: int = 8) -> dict | None:
        data = self.val_data if self.val_data is not None else self.train_data
        items = [data[i] for i in range(min(len(data), n))]
        return self._to_device(torch.utils.data.default_collate(items)) if items else None

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if torch.is_tensor(v):
                v = v.to(self.device)
                if v.ndim == 4 and self.cfg.channels_last:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def _check_finite(self) -> None:
        """Stop with :class:`TrainingDiverged` when a value logged on any process since the last
        check was non-finite, naming it and its first such step; runs before every log, sample,
        evaluation and checkpoint, so no checkpoint holds a diverged step."""
        found = self.finite.check(self.accelerator, self.device)
        if found is not None:
            step, name = found
            last = latest_checkpoint(self.run_dir)
            where = f"last good checkpoint: {last[1]}" if last else "no checkpoint was written"
            raise TrainingDiverged(
                f"loss '{name}' became non-finite at step {step}; stopped ({where})"
            )


class FiniteWatch:
    """The NaN guard's memory between two checks, kept on the device: per set of logged names,
    the first step at which each value was non-finite (:data:`NEVER` while finite). Adding a
    step's values costs a few small kernels and no host sync; :meth:`check` syncs once."""

    def __init__(self):
        self.first: dict[tuple[str, ...], torch.Tensor] = {}  # names -> (len(names),) int64
        self.host: tuple[int, str] | None = None  # the first non-finite plain number

    def add(self, logs: dict[str, Scalar], step: int) -> None:
        """Record the values of optimizer step ``step`` (tensors: one element each)."""
        tensors = {k: v for k, v in logs.items() if torch.is_tensor(v)}
        for k, v in logs.items():
            if self.host is None and not torch.is_tensor(v) and not math.isfinite(float(v)):
                self.host = (step, k)
        if not tensors:
            return
        names = tuple(tensors)
        device = next(iter(tensors.values())).device
        values = torch.stack([v.detach().float().reshape(()).to(device) for v in tensors.values()])
        steps = torch.where(torch.isfinite(values), NEVER, step)
        earlier = self.first.get(names)
        self.first[names] = steps if earlier is None else torch.minimum(earlier, steps)

    def check(self, acc: Accelerator, device: torch.device) -> tuple[int, str] | None:
        """(first non-finite step over all processes, its name here or "a loss on another
        process"), or None when all stayed finite; forgets what it held."""
        names = [k for group in self.first for k in group] + [self.host[1] if self.host else ""]
        local = torch.cat(
            [t.to(device) for t in self.first.values()]
            + [torch.tensor([self.host[0] if self.host else NEVER], device=device)]
        )
        world = acc.gather(local.min().reshape(1)).min().reshape(1)
        first, *steps = torch.cat([world, local]).tolist()
        self.first, self.host = {}, None
        if first >= NEVER:
            return None
        mine = [name for name, s in zip(names, steps, strict=True) if s == first]
        return first, mine[0] if mine else "a loss on another process"


def scalars(values: dict[str, Scalar]) -> dict[str, float]:
    """``values`` as plain floats; the tensors among them are fetched in one transfer."""
    tensors = {k: v for k, v in values.items() if torch.is_tensor(v)}
    fetched = {}
    if tensors:
        device = next(iter(tensors.values())).device
        stacked = torch.stack([v.detach().float().reshape(()).to(device) for v in tensors.values()])
        fetched = dict(zip(tensors, stacked.tolist(), strict=True))
    return {k: fetched[k] if k in fetched else float(v) for k, v in values.items()}


def checkpoint_weights(
    step_dir: Path, index: int = 0, missing_ok: bool = False
) -> dict[str, torch.Tensor] | None:
    """The weights of the task's ``index``-th model (in the order of ``Task.models``) in a
    checkpoint folder of :meth:`Trainer.save_checkpoint`, where accelerate's ``save_state``
    names them ``model.safetensors``, ``model_1.safetensors``, ... A checkpoint without that
    model: None with ``missing_ok``, else a one-line :class:`CheckpointError`."""
    ending = f"_{index}" if index else ""
    path = Path(step_dir) / f"{SAFE_MODEL_NAME}{ending}.safetensors"
    if missing_ok and not path.is_file():
        return None
    return load_weights(path)


def train_run(
    task: Task,
    config: Any,
    output: Path,
    train_data: Dataset,
    val_data: Dataset | None,
    accelerator: Accelerator,
    resume: bool = False,
    overwrite: bool = False,
    files: dict[str, str] | None = None,
    data: dict | None = None,
) -> Path:
    """Create (or reuse) the run folder ``output`` with ``config.yaml`` (the dataclass
    ``config``, whose ``train`` field drives the loop), the data summary ``data.json`` and any
    extra text ``files``, then fit. The data summary (:func:`shared.data.data_summary`) is
    printed first, made of ``train_data`` and ``val_data``; a caller whose datasets are not the
    images (prior: code grids) passes ``data``, which it has printed itself. At the end, the
    overfitting warning (if any) is printed again as the run's summary."""
    if data is None:
        source = getattr(getattr(config, "data", None), "source", None)
        data = data_summary(train_data, val_data, source=source)
        accelerator.print(format_data_summary(data))
    files = {**(files or {}), DATA_FILE: json.dumps(data, indent=2, ensure_ascii=False) + "\n"}
    fresh = not resume and not (output.exists() and any(output.iterdir()))
    if accelerator.is_main_process:
        prepare_run_dir(output, overwrite=overwrite, resume=resume, files=tuple(files or ()))
        save_yaml(config, output / "config.yaml")
        for name, text in (files or {}).items():
            (output / name).write_text(text)
    accelerator.wait_for_everyone()
    trainer = Trainer(
        task,
        config.train,
        output,
        train_data,
        val_data,
        resume=resume,
        accelerator=accelerator,
        hparams=to_dict(config),
    )
    try:
        trainer.fit()
    except BaseException:
        if fresh and accelerator.is_main_process and latest_checkpoint(output) is None:
            shutil.rmtree(output, ignore_errors=True)  # nothing to resume: not in the retry's way
        raise
    if trainer.overfitting:
        accelerator.print(f"warning: {trainer.overfitting}")
    return output


def overfitting(
    records: list[dict],
    train_key: str,
    val_key: str,
    better: str = "min",
    examples: int | None = None,
    patience: int = 3,
    fall: float = 0.1,
    tolerance: float = 0.005,
) -> str | None:
    """The overfitting rule on ``metrics.jsonl`` records, as a one-line warning or None.

    It fires when the validation metric ``val/VAL_KEY`` has not beaten its best by more than
    ``tolerance`` (relative) for ``patience`` evaluations while the training loss ``TRAIN_KEY``
    fell by at least ``fall`` (relative) since that best evaluation. The training loss at an
    evaluation is the mean of its values logged since the previous one. ``better``: "min" or
    "max", the better direction of the metric; ``examples``: the training set size."""
    key, sign = f"val/{val_key}", 1.0 if better == "min" else -1.0
    evals = [(r["step"], float(r[key])) for r in records if key in r]
    losses = [(r["step"], float(r[train_key])) for r in records if train_key in r]
    if len(evals) <= patience:
        return None
    best = 0
    for i, (_, value) in enumerate(evals):
        if sign * (evals[best][1] - value) > tolerance * abs(evals[best][1]):
            best = i
    stalled = len(evals) - 1 - best

    def level(i: int) -> float | None:
        start = evals[i - 1][0] if i > 0 else -math.inf
        window = [v for s, v in losses if start < s <= evals[i][0]]
        window = window or [v for s, v in losses if s <= evals[i][0]][-1:]
        return sum(window) / len(window) if window else None

    then, now = level(best), level(len(evals) - 1)
    if stalled < patience or then is None or now is None or then <= 0 or now > then * (1 - fall):
        return None
    (best_step, best_value), (step, value) = evals[best], evals[-1]
    on = f" on {examples} training examples" if examples else ""
    loss = "loss" if train_key == "loss" else f"loss '{train_key}'"
    return (
        f"overfitting: {key} has not improved for {stalled} evaluations (best {best_value:.4g} "
        f"at step {best_step}, now {value:.4g} at step {step}) while the training {loss} "
        f"fell {1 - now / then:.0%} ({then:.4g} -> {now:.4g}){on}; the model memorises its "
        "training data: add more data, use a smaller preset, augment (data.flip=true) or train "
        f"fewer steps (train.max_steps={best_step})"
    )


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The multiplier of the configured learning rates at optimizer step ``step`` (0-based):
    a linear ramp over the first ``warmup * max_steps`` steps, times 1 (constant) or a cosine
    from 1 at step 0 to 0.1 at ``max_steps``."""
    warmup_steps = cfg.warmup * cfg.max_steps
    ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps >= 1 else 1.0
    if cfg.lr_schedule == "constant":
        return ramp
    progress = min(1.0, step / max(cfg.max_steps, 1))
    return ramp * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def due(step: int, every: int) -> bool:
    """Whether a periodic action falls on ``step``; ``every`` <= 0 switches it off."""
    return every > 0 and step % every == 0


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs"))
    return Accelerator(
        cpu=not torch.cuda.is_available(),  # so several CPU processes form a gloo group
        mixed_precision=cfg.precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with="tensorboard",
        project_config=project,
    )


def _write_failure(exc: Exception, folder: Path) -> str:
    """Why a write into ``folder`` failed, in words (torch hides ENOSPC in its own message)."""
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        free = None
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if free is not None and free < 64 * 2**20:
        return f"no space left on the disk ({free / 2**20:.1f} MiB free)"
    return one_line(exc)


def _flat_hparams(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_hparams(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, int | float | str | bool) else str(v)
    return out
