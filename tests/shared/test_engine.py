import json
import math
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from shared.config import TrainConfig
from shared.engine import StepBatchSampler, Task, Trainer, TrainingDiverged, lr_factor
from shared.run import RunError, checkpoints, latest_checkpoint, prepare_run_dir, read_metrics


class Points(torch.utils.data.Dataset):
    """y = 3x - 1 with noise; keys may be (index, epoch) like the project's datasets."""

    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True) * 3 - 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        return {"x": self.x[i], "y": self.y[i]}


class Regression(Task):
    ema_model = "net"

    def __init__(self, nan_at=None, log_nan_at=None):
        self.models = {"net": nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.1), nn.Linear(8, 1))}
        self.nan_at, self.log_nan_at = nan_at, log_nan_at

    def configure_optimizers(self):
        return {"net": torch.optim.Adam(self.models["net"].parameters(), lr=5e-2)}

    def training_step(self, batch, step, trainer):
        loss = (self.models["net"](batch["x"]) - batch["y"]).pow(2).mean()
        if self.nan_at is not None and step + 1 >= self.nan_at:
            loss = loss * float("nan")
        norm = trainer.optimize("net", loss, grad_norm=True)
        logs = {"loss": loss.detach(), "lr": 5e-2}  # a tensor and a number
        if norm is not None:  # None inside an accumulation window
            logs["grad_norm"] = norm
        if self.log_nan_at is not None:  # a logged value that is non-finite at one step only
            logs["aux"] = torch.tensor(float("nan") if step + 1 == self.log_nan_at else 0.0)
        return logs

    def evaluate(self, loader, trainer):
        net = trainer.model("net", ema=True)
        errs = [(net(b["x"]) - b["y"]).pow(2).mean() for b in loader]
        return {"mse": torch.stack(errs).mean().item()}


def fit(run_dir, max_steps, resume=False, nan_at=None, log_nan_at=None, make_task=None, **kw):
    torch.manual_seed(0)
    kw = dict(checkpoint_every=5, sample_every=1000, eval_every=5, log_every=1) | kw
    cfg = TrainConfig(
        batch_size=8,
        max_steps=max_steps,
        num_workers=0,
        progress=False,
        ema_decay=0.9,
        grad_clip=1.0,
        **kw,
    )
    if not resume:
        prepare_run_dir(run_dir)
    task = make_task() if make_task else Regression(nan_at, log_nan_at)  # built after seeding
    trainer = Trainer(task, cfg, run_dir, Points(), Points(16), resume=resume)
    trainer.fit()
    return trainer


def test_training_reduces_the_loss_and_logs(tmp_path):
    fit(tmp_path / "run", 60)
    records = read_metrics(tmp_path / "run")
    losses = [r["loss"] for r in records if "loss" in r]
    assert all(type(r["grad_norm"]) is float for r in records if "loss" in r)
    evals = [r["val/mse"] for r in records if "val/mse" in r]
    assert losses[-1] < 0.2 * losses[0] and evals[-1] < evals[0]
    assert latest_checkpoint(tmp_path / "run")[0] == 60
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 2  # keep_checkpoints
    assert any((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))


def test_resume_gives_exactly_the_uninterrupted_weights(tmp_path):
    fit(tmp_path / "a", 20)
    fit(tmp_path / "b", 10)
    with open(
        tmp_path / "b" / "metrics.jsonl", "a"
    ) as f:  # a killed run logged past its checkpoint
        f.write(json.dumps({"step": 13, "loss": 1.0}) + "\n")
    fit(tmp_path / "b", 20, resume=True)
    steps = [r["step"] for r in read_metrics(tmp_path / "b") if "loss" in r]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 20
    for name in ("model.safetensors",):
        a = load_file(tmp_path / "a" / "checkpoints" / "step_000020" / name)
        b = load_file(tmp_path / "b" / "checkpoints" / "step_000020" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_lr_factor_ramps_up_then_follows_the_cosine_down_to_a_tenth():
    cosine = TrainConfig(max_steps=100, lr_schedule="cosine", warmup=0.1)
    assert lr_factor(0, cosine) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + 1)))
    assert lr_factor(9, cosine) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.09)))
    assert lr_factor(50, cosine) == pytest.approx(0.55)
    assert lr_factor(100, cosine) == pytest.approx(0.1)
    values = [lr_factor(s, cosine) for s in range(9, 101)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    ramp = TrainConfig(max_steps=1000, warmup=0.004)
    assert [lr_factor(s, ramp) for s in (0, 3, 500)] == [0.25, 1.0, 1.0]
    assert lr_factor(0, TrainConfig(max_steps=60, warmup=0.01)) == 1.0  # under one step: none
    assert lr_factor(7, TrainConfig()) == 1.0


def test_a_scheduled_run_sets_each_step_rate_and_resumes_on_the_same_curve(tmp_path):
    kw = dict(lr_schedule="cosine", warmup=0.15)
    whole = fit(tmp_path / "a", 20, **kw)
    with pytest.raises(TrainingDiverged):  # interrupted after its step-10 checkpoint
        fit(tmp_path / "b", 20, nan_at=13, **kw)
    fit(tmp_path / "b", 20, resume=True, **kw)
    assert whole.optimizers["net"].param_groups[0]["lr"] == pytest.approx(
        5e-2 * lr_factor(19, whole.cfg)
    )
    logged = {r["step"]: r["lr_factor"] for r in read_metrics(tmp_path / "b") if "loss" in r}
    assert logged[1] == pytest.approx(1 / 3) and logged[20] == pytest.approx(
        lr_factor(19, whole.cfg)
    )
    a = load_file(tmp_path / "a" / "checkpoints" / "step_000020" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step_000020" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_runs_and_counts_optimizer_steps(tmp_path):
    fit(tmp_path / "acc", 6, grad_accum=2)
    state = json.loads((tmp_path / "acc/checkpoints/step_000006/trainer_state.json").read_text())
    assert state["step"] == 6


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="step 8.*step_000005"):
        fit(tmp_path / "nan", 20, nan_at=8)
    assert latest_checkpoint(tmp_path / "nan")[0] == 5
    weights = load_file(tmp_path / "nan/checkpoints/step_000005/model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.parametrize("nan_at, log_nan_at, name", [(8, None, "loss"), (None, 6, "aux")])
def test_nan_guard_between_sparse_checks_names_the_first_bad_step(
    tmp_path, nan_at, log_nan_at, name
):
    """Checks only at steps 5, 7 and 10 (log_every=7, checkpoint_every=5): a value non-finite
    at step 8 (and on), or at step 6 alone, is still reported with its step, and the
    checkpoint of step 10 is never written."""
    run = tmp_path / "nan"
    message = f"loss '{name}' became non-finite at step {nan_at or log_nan_at};.*step_000005"
    with pytest.raises(TrainingDiverged, match=message):
        fit(run, 20, nan_at=nan_at, log_nan_at=log_nan_at, log_every=7, eval_every=0)
    assert [s for s, _ in checkpoints(run)] == [5]
    assert [r["step"] for r in read_metrics(run)] == ([7] if nan_at else [])


def test_steps_between_logs_do_not_fetch_values_from_the_device(tmp_path, monkeypatch):
    """The project's host syncs (Tensor.item/tolist/float/bool called outside torch, the NaN
    guard's included) happen at the log steps only: 2 per log (guard, values), plus the
    evaluation and the final values of ``fit`` at the end."""
    calls = []
    for method in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *a, _original=original, _method=method, **k):
            if "/torch/" not in sys._getframe(1).f_code.co_filename:  # not Adam's CPU step count
                calls.append(_method)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    fit(tmp_path / "few", 30, log_every=10, checkpoint_every=0, eval_every=0)
    assert len(calls) == 3 * 2 + 2
    calls.clear()
    fit(tmp_path / "every", 30, log_every=1, checkpoint_every=0, eval_every=0)
    assert len(calls) == 30 * 2 + 2


def test_run_folder_is_never_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run)
    (run / "config.yaml").write_text("x: 1")
    with pytest.raises(RunError, match="--resume.*--overwrite"):
        prepare_run_dir(run)
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.yaml").exists()
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(RunError, match="not a twostage run"):
        prepare_run_dir(mine, overwrite=True)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


def test_step_sampler_is_resumable_and_shards_across_processes():
    full = StepBatchSampler(10, 3, seed=1)
    it = iter(full)
    stream = [next(it) for _ in range(8)]
    resumed = iter(StepBatchSampler(10, 3, seed=1, start=5))
    assert [next(resumed) for _ in range(3)] == stream[5:8]
    first_epoch = [i for b in stream for i, e in b if e == 0]
    assert sorted(first_epoch) == list(range(10))
    r0, r1 = StepBatchSampler(10, 2, 1, 0, 2), StepBatchSampler(10, 2, 1, 1, 2)
    assert r0.batch(0) + r1.batch(0) == StepBatchSampler(10, 4, seed=1).batch(0)
