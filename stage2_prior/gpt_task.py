"""Training the GPT prior (:mod:`stage2_prior.gpt`) in the shared engine: next-token
prediction over cached code windows."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from shared.engine import Scalar, Task, Trainer
from stage2_prior.config import PriorConfig
from stage2_prior.gpt import GPTPrior, bits_per_dim
from stage2_prior.prior import Prior


class GPTPriorTask(Task):
    """Next-token cross-entropy on code windows (condition tokens first; labels drop to the null
    class at ``condition.class_dropout``); EMA of the GPT is what is sampled and exported."""

    ema_model = "gpt"
    overfit_watch = ("loss", "nll", "min")

    def __init__(self, cfg: PriorConfig, prior: Prior):
        self.cfg, self.prior = cfg, prior
        self.models = {"gpt": prior.net}

    def setup(self, trainer: Trainer) -> None:
        self.prior.tokenizer.to(trainer.device).eval()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """AdamW with weight decay on the matrices of the linear layers only (taming's rule:
        not on biases, LayerNorms, token or position embeddings)."""
        t, net = self.cfg.train, self.models["gpt"]
        decay, rest = [], []
        for name, p in net.named_parameters():
            embedding = name.endswith(("wte.weight", "wpe.weight"))
            (decay if p.ndim >= 2 and not embedding else rest).append(p)
        groups = [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        return {"gpt": torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.adam_betas))}

    def context(self, net: GPTPrior, batch: dict, train: bool) -> torch.Tensor:
        """Condition ids of a batch; in training, labels drop to the null class at random."""
        codes = batch["codes"]
        condition = batch.get("cond", batch["label"] if net.spec.condition == "class" else None)
        ctx = net.context(condition, codes.shape[0], tuple(codes.shape[1:]))
        if train and net.spec.has_null_class:
            drop = torch.rand(ctx.shape[0], 1, device=ctx.device) < net.spec.class_dropout
            ctx = torch.where(drop, net.null_context(ctx.shape[0]), ctx)
        return ctx

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        net = trainer.model("gpt")
        x = batch["codes"]
        inputs = x
        if self.cfg.train.pkeep < 1.0:  # taming's pkeep: corrupt inputs, keep clean targets
            keep = torch.rand(x.shape, device=x.device) < self.cfg.train.pkeep
            inputs = torch.where(keep, x, torch.randint_like(x, net.spec.n_codes))
        tokens, first = net.inputs(inputs, self.context(net, batch, train=True))
        logits, _ = self.models["gpt"](tokens)
        loss = F.cross_entropy(logits[:, first:].transpose(1, 2).float(), x.flatten(1))
        trainer.optimize("gpt", loss)
        return {"loss": loss.detach()}

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Decoded training codes above samples for the same conditions."""
        net, t = trainer.model("gpt", ema=True), self.cfg.train
        codes = batch["codes"]
        condition = batch.get("cond", batch["label"] if net.spec.condition == "class" else None)
        if net.spec.condition == "coord":
            condition = None  # coordinates of the whole window
        g = torch.Generator(device=trainer.device).manual_seed(t.seed)
        samples = net.sample(
            codes.shape[0],
            condition=condition,
            temperature=t.sample_temperature,
            top_k=t.sample_top_k,
            generator=g,
        )
        tok = self.prior.tokenizer
        return torch.cat([tok.decode(codes), tok.decode(samples)]).clamp(-1, 1)

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """Mean validation NLL in nats/token, and in bits per image dimension."""
        net = trainer.model("gpt", ema=True)
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(trainer.device) for k, v in batch.items()}
            nll = F.cross_entropy(
                net.logits(batch["codes"], self.context(net, batch, train=False))
                .transpose(1, 2)
                .float(),
                batch["codes"].flatten(1),
                reduction="sum",
            )
            total, count = total + nll.item(), count + batch["codes"].numel()
        nats = total / max(count, 1)
        h, w = net.window
        f = self.prior.downsample_factor
        channels = self.prior.tokenizer.config["in_channels"]
        return {"nll": nats, "bits_per_dim": bits_per_dim(nats, h * w, h * w * f * f, channels)}

    def export(self, folder: Path, trainer: Trainer) -> None:
        self.prior.with_network(trainer.model("gpt", ema=True)).save_pretrained(folder)
