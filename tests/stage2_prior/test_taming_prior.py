"""Loading taming-transformers ``Net2NetTransformer`` checkpoints (Lightning ``last.ckpt`` + YAML).

The checkpoints are written here in taming's layout with random weights: minGPT keys under
``transformer.*`` (with the ``attn.mask`` buffers), the VQGANs under ``first_stage_model.*`` /
``cond_stage_model.*``, and Lightning's extras (a callback class from ``pytorch_lightning`` as a
dict key, optimiser states). The loaded prior is compared with a reference written here from
minGPT's definition (separate query/key/value Linears, masked softmax, pre-LN blocks, GELU MLP,
learned positions, ln_f, head), run on the same taming-layout tensors, and with taming's
``Net2NetTransformer.forward`` + ``shared_step`` loss: ``logits = gpt(cat(c, z)[:, :-1])[:,
len(c)-1:]``, cross-entropy against z."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from taming_files import write_lightning_ckpt, write_yaml

from shared.checkpoint import CheckpointError
from shared.config import ConfigError
from stage1_vqgan.model import VQModel
from stage2_prior.gpt import coord_tokens
from stage2_prior.taming import (
    is_taming_prior_file,
    load_taming_prior,
    taming_prior_setup,
)

VOCAB, N_LAYER, N_HEAD, N_EMBD = 40, 2, 2, 32
N_EMBED, EMBED_DIM = 32, 8  # first stage
COND_N_EMBED, N_LABELS = 24, 5  # segmentation cond stage
N_CLASSES, SOS, COORD_N_EMBED = 10, 37, 36
RES = 16  # image size; f4 -> a 4x4 token grid
GRID = (4, 4)
CONFIG_NAME = "2021-01-01T00-00-00-project.yaml"


def ddconfig(channels: int = 3) -> dict:
    return dict(
        double_z=False,
        z_channels=8,
        resolution=RES,
        in_channels=channels,
        out_ch=channels,
        ch=32,
        ch_mult=[1, 2, 2],
        num_res_blocks=1,
        attn_resolutions=[],
        dropout=0.0,
    )


def vq_entry(channels: int, n_embed: int, target: str = "taming.models.vqgan.VQModel") -> dict:
    params = {"embed_dim": EMBED_DIM, "n_embed": n_embed, "ddconfig": ddconfig(channels)}
    params["lossconfig"] = {"target": "taming.modules.losses.DummyLoss"}
    params["ckpt_path"] = "logs/some_vqgan/checkpoints/last.ckpt"
    return {"target": target, "params": params}


def vqgan(channels: int, n_embed: int, seed: int) -> VQModel:
    torch.manual_seed(seed)
    dd = ddconfig(channels)
    model = VQModel(
        in_channels=channels,
        out_channels=channels,
        ch=dd["ch"],
        ch_mult=dd["ch_mult"],
        num_res_blocks=dd["num_res_blocks"],
        attn_resolutions=dd["attn_resolutions"],
        z_channels=dd["z_channels"],
        resolution=RES,
        n_embed=n_embed,
        embed_dim=EMBED_DIM,
        beta=0.25,
        legacy_beta=True,
    )
    with torch.no_grad():  # codes at the latents' scale, so that encodings use many codes
        z = model.encode_latent(torch.rand(4, channels, RES, RES) * 2 - 1)
        model.quantize.embedding.weight.copy_(torch.randn(n_embed, EMBED_DIM) * z.std() + z.mean())
    return model.eval()


def mingpt_state(block_size: int, seed: int) -> dict[str, torch.Tensor]:
    """minGPT's state_dict layout (taming.modules.transformer.mingpt.GPT), random weights large
    enough that attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    c = N_EMBD
    sd = {"pos_emb": rand(1, block_size, c, scale=0.5), "tok_emb.weight": rand(VOCAB, c)}
    for i in range(N_LAYER):
        p = f"blocks.{i}."
        sd[p + "ln1.weight"], sd[p + "ln1.bias"] = rand(c, scale=0.2, shift=1), rand(c, scale=0.1)
        sd[p + "ln2.weight"], sd[p + "ln2.bias"] = rand(c, scale=0.2, shift=1), rand(c, scale=0.1)
        mask = torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        sd[p + "attn.mask"] = mask
        for name in ("key", "query", "value", "proj"):
            sd[p + f"attn.{name}.weight"] = rand(c, c, scale=1.5 / math.sqrt(c))
            sd[p + f"attn.{name}.bias"] = rand(c, scale=0.1)
        sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"] = rand(4 * c, c, scale=c**-0.5), rand(4 * c)
        sd[p + "mlp.2.weight"] = rand(c, 4 * c, scale=(4 * c) ** -0.5)
        sd[p + "mlp.2.bias"] = rand(c, scale=0.1)
    sd["ln_f.weight"], sd["ln_f.bias"] = rand(c, scale=0.2, shift=1), rand(c, scale=0.1)
    sd["head.weight"] = rand(VOCAB, c, scale=2 / math.sqrt(c))
    return sd


def reference_logits(sd: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """minGPT's forward, written from its definition, on the taming-layout tensors."""
    b, t = idx.shape
    x = sd["tok_emb.weight"][idx] + sd["pos_emb"][:, :t]
    c, hs = x.shape[-1], x.shape[-1] // N_HEAD
    i = 0
    while f"blocks.{i}.ln1.weight" in sd:
        p = f"blocks.{i}."
        h = F.layer_norm(x, (c,), sd[p + "ln1.weight"], sd[p + "ln1.bias"])
        q, k, v = (
            F.linear(h, sd[p + f"attn.{n}.weight"], sd[p + f"attn.{n}.bias"])
            .view(b, t, N_HEAD, hs)
            .transpose(1, 2)
            for n in ("query", "key", "value")
        )
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(sd[p + "attn.mask"][:, :, :t, :t] == 0, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(x, (c,), sd[p + "ln2.weight"], sd[p + "ln2.bias"])
        h = F.gelu(F.linear(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"]))
        x = x + F.linear(h, sd[p + "mlp.2.weight"], sd[p + "mlp.2.bias"])
        i += 1
    x = F.layer_norm(x, (c,), sd["ln_f.weight"], sd["ln_f.bias"])
    return x @ sd["head.weight"].t()


def taming_forward(sd, c: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Net2NetTransformer.forward (logits) and the per-sample mean cross-entropy."""
    logits = reference_logits(sd, torch.cat([c, z], dim=1)[:, :-1])[:, c.shape[1] - 1 :]
    nll = F.cross_entropy(logits.reshape(-1, VOCAB), z.reshape(-1), reduction="none")
    return logits, nll.view(z.shape).mean(1)


def taming_coord_reference(h: int, w: int, f: int, n_embed: int) -> torch.Tensor:
    """taming.data.faceshq's coordinate map through get_input and CoordStage.encode."""
    coord = np.arange(h * w).reshape(h, w, 1) / (h * w)
    x = torch.from_numpy(coord)[None].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, scale_factor=1 / f, mode="area").clamp(0.0, 1.0)
    return (n_embed * x).round().long().view(1, -1)


def write_ckpt(path: Path, state: dict[str, torch.Tensor]) -> Path:
    params = [v.clone().requires_grad_(True) for k, v in state.items() if k.startswith("transf")]
    opt = torch.optim.AdamW(params[:4], lr=4.5e-6, betas=(0.9, 0.95))
    sum(p.pow(2).sum() for p in params[:4]).backward()
    opt.step()
    callback_state = {"monitor": "val/loss", "best_model_score": torch.tensor(4.2)}
    return write_lightning_ckpt(path, state, [opt.state_dict()], callback_state)


def net2net_config(block_size: int, cond_stage, **params) -> dict:
    transformer = dict(vocab_size=VOCAB, block_size=block_size, n_layer=N_LAYER, n_head=N_HEAD)
    transformer["n_embd"] = N_EMBD
    return {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {
                "transformer_config": {
                    "target": "taming.modules.transformer.mingpt.GPT",
                    "params": transformer,
                },
                "first_stage_config": vq_entry(3, N_EMBED),
                "cond_stage_config": cond_stage,
                **params,
            },
        },
        "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 2}},
    }


CASES = {
    # name: (block_size, cond_stage_config, extra Net2NetTransformer params)
    "unconditional": (16, "__is_unconditional__", {"sos_token": SOS}),
    "unconditional_flag": (
        16,
        vq_entry(N_LABELS, COND_N_EMBED),
        {"unconditional": True, "sos_token": SOS},
    ),
    "class": (
        17,
        {"target": "taming.modules.util.Labelator", "params": {"n_classes": N_CLASSES}},
        {"cond_stage_key": "class_label"},
    ),
    "spatial": (
        32,
        vq_entry(N_LABELS, COND_N_EMBED),
        {"cond_stage_key": "segmentation", "downsample_cond_size": RES},
    ),
    "segmentation_model": (
        32,
        vq_entry(N_LABELS, COND_N_EMBED, "taming.models.vqgan.VQSegmentationModel"),
        {"cond_stage_key": "segmentation"},
    ),
    "first_stage": (32, "__is_first_stage__", {"cond_stage_key": "image"}),
    "coord": (
        32,
        {
            "target": "taming.modules.misc.coord.CoordStage",
            "params": {"n_embed": COORD_N_EMBED, "down_factor": 4},
        },
        {"cond_stage_key": "coord"},
    ),
}


@pytest.fixture(scope="module")
def first_stage() -> VQModel:
    return vqgan(3, N_EMBED, seed=0)


@pytest.fixture(scope="module")
def cond_stage() -> VQModel:
    return vqgan(N_LABELS, COND_N_EMBED, seed=1)


def make_run(root: Path, name: str, first: VQModel, cond: VQModel) -> types.SimpleNamespace:
    """taming's log layout: ``logs/RUN/{checkpoints/last.ckpt, configs/*-project.yaml}``."""
    block, cond_cfg, params = CASES[name]
    gpt = mingpt_state(block, seed=len(name))
    state = {f"first_stage_model.{k}": v.clone() for k, v in first.state_dict().items()}
    vq_cond = isinstance(cond_cfg, dict) and cond_cfg["target"].startswith("taming.models.vqgan")
    if vq_cond and not params.get("unconditional"):  # else taming uses an SOSProvider
        state.update({f"cond_stage_model.{k}": v.clone() for k, v in cond.state_dict().items()})
        if cond_cfg["target"].endswith("VQSegmentationModel"):
            state["cond_stage_model.colorize"] = torch.randn(3, N_LABELS, 1, 1)
    if cond_cfg == "__is_first_stage__":
        state.update({f"cond_stage_model.{k}": v.clone() for k, v in first.state_dict().items()})
    state.update({f"transformer.{k}": v.clone() for k, v in gpt.items()})
    run_dir = root / "logs" / f"2021-01-01T00-00-00_{name}"
    ckpt = write_ckpt(run_dir / "checkpoints" / "last.ckpt", state)
    config = write_yaml(
        run_dir / "configs" / CONFIG_NAME, net2net_config(block, cond_cfg, **params)
    )
    return types.SimpleNamespace(ckpt=ckpt, config=config, gpt=gpt, name=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, first_stage, cond_stage) -> dict[str, types.SimpleNamespace]:
    root = tmp_path_factory.mktemp("taming_prior")
    return {name: make_run(root, name, first_stage, cond_stage) for name in CASES}


def codes(batch: int, high: int, seed: int) -> torch.Tensor:
    return torch.randint(0, high, (batch, *GRID), generator=torch.Generator().manual_seed(seed))


def check_against_reference(prior, gpt: dict, z: torch.Tensor, c: torch.Tensor, condition):
    """Our logits and NLL vs. the minGPT reference fed taming's sequence cat(c, z)[:, :-1]."""
    ref_logits, ref_nll = taming_forward(gpt, c, z.flatten(1))
    with torch.no_grad():
        ctx = prior.net.context(condition, z.shape[0], GRID)
        logits = prior.net.logits(z, ctx)
    assert logits.shape == ref_logits.shape == (z.shape[0], z[0].numel(), VOCAB)
    assert ref_logits.std() > 1  # the comparison is not trivial
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    nll = prior.nll(z, condition)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-5, atol=1e-5)
    # taming's shared_step: one cross-entropy over the batch
    loss = F.cross_entropy(ref_logits.reshape(-1, VOCAB), z.reshape(-1))
    torch.testing.assert_close(nll.mean(), loss, rtol=1e-5, atol=1e-5)


def assert_same_tokenizer(loaded: VQModel, source: VQModel) -> None:
    own = source.state_dict()
    assert loaded.state_dict().keys() == own.keys()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("name", ["unconditional", "unconditional_flag"])
def test_unconditional_matches_reference(runs, first_stage, name):
    run = runs[name]
    prior = load_taming_prior(run.ckpt)  # config found in the log layout
    assert "pytorch_lightning" not in sys.modules
    assert prior.condition == "none" and prior.window == GRID and prior.cond_tokenizer is None
    assert prior.net.spec.sos_token == SOS and prior.net.spec.cond_offset == 0
    assert_same_tokenizer(prior.tokenizer, first_stage)
    z = codes(3, N_EMBED, seed=5)
    check_against_reference(prior, run.gpt, z, torch.full((3, 1), SOS), None)
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    assert torch.equal(prior.tokenizer.encode(x), first_stage.encode(x))


def test_class_conditional_matches_reference(runs, first_stage):
    run = runs["class"]
    prior = load_taming_prior(run.ckpt, run.config)
    spec = prior.net.spec
    assert prior.condition == "class" and spec.num_classes == N_CLASSES
    assert not spec.has_null_class and spec.cond_offset == 0 and prior.window == GRID
    assert_same_tokenizer(prior.tokenizer, first_stage)
    labels = torch.tensor([0, 3, 9])
    z = codes(3, N_EMBED, seed=6)
    # Labelator.encode: the label itself is the condition token
    check_against_reference(prior, run.gpt, z, labels[:, None], labels)


@pytest.mark.parametrize("name", ["spatial", "segmentation_model"])
def test_spatial_matches_reference(runs, first_stage, cond_stage, name):
    run = runs[name]
    prior = load_taming_prior(run.ckpt, run.config)
    assert prior.condition == "spatial" and prior.net.spec.n_cond_codes == COND_N_EMBED
    assert prior.cond_tokenizer.config["kind"] == "segmentation"
    assert_same_tokenizer(prior.tokenizer, first_stage)
    assert_same_tokenizer(prior.cond_tokenizer, cond_stage)
    # label maps twice the image size: taming resizes them (nearest) with downsample_cond_size
    size = 2 * RES if name == "spatial" else RES
    labels = torch.randint(0, N_LABELS, (2, size, size), generator=torch.Generator().manual_seed(7))
    onehot = F.one_hot(labels, N_LABELS).permute(0, 3, 1, 2).float()
    if name == "spatial":
        assert prior.cond_resize == RES
        onehot = F.interpolate(onehot, size=(RES, RES))  # encode_to_c
    with torch.no_grad():
        c = cond_stage.encode(onehot)
        assert torch.equal(prior.encode_condition(labels), c)
    assert c.unique().numel() > 2
    z = codes(2, N_EMBED, seed=8)
    check_against_reference(prior, run.gpt, z, c.flatten(1), c)


def test_first_stage_as_condition(runs, first_stage):
    run = runs["first_stage"]
    prior = load_taming_prior(run.ckpt, run.config)
    assert prior.condition == "spatial" and prior.cond_tokenizer is prior.tokenizer
    assert_same_tokenizer(prior.tokenizer, first_stage)
    c = codes(2, N_EMBED, seed=9)
    check_against_reference(prior, run.gpt, codes(2, N_EMBED, seed=10), c.flatten(1), c)


def test_coord_matches_coord_stage(runs):
    run = runs["coord"]
    prior = load_taming_prior(run.ckpt, run.config)
    assert prior.condition == "coord" and prior.net.spec.n_cond_codes == COORD_N_EMBED
    c = taming_coord_reference(RES, RES, 4, COORD_N_EMBED)
    assert torch.equal(coord_tokens(*GRID, COORD_N_EMBED, 4).view(1, -1), c)
    z = codes(2, N_EMBED, seed=11)
    # no condition given: the prior builds taming's coordinate tokens itself
    check_against_reference(prior, run.gpt, z, c.expand(2, -1), None)
    # the faceshq setup (256px, f16, n_embed 1024): 64 i + 30 + round(j/4 + 0.117)
    big = taming_coord_reference(256, 256, 16, 1024).view(16, 16)
    assert torch.equal(coord_tokens(16, 16, 1024, 16), big)
    assert big[0].tolist() == [30, 30, 31, 31, 31, 31, 32, 32, 32, 32, 33, 33, 33, 33, 34, 34]


def test_sampling_runs(runs):
    prior = load_taming_prior(runs["class"].ckpt, runs["class"].config)
    g = torch.Generator().manual_seed(0)
    out = prior.sample(2, condition=torch.tensor([1, 2]), top_k=5, generator=g)
    assert out.shape == (2, *GRID) and out.max() < VOCAB


def test_is_taming_prior_file(runs, tmp_path):
    assert is_taming_prior_file(runs["class"].ckpt)
    assert is_taming_prior_file(runs["class"].ckpt, runs["class"].config)
    other = write_yaml(tmp_path / "vqgan.yaml", {"model": vq_entry(3, N_EMBED)})
    assert not is_taming_prior_file(runs["class"].ckpt, other)
    with pytest.raises(ConfigError, match="load it as a tokenizer"):
        load_taming_prior(runs["class"].ckpt, other)


def test_window_from_block_size(tmp_path):
    # nominal resolution 64 (16x16 tokens) does not fit block_size 16: the block's 4x4 grid
    cfg = net2net_config(16, "__is_unconditional__")
    cfg["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["resolution"] = 64
    setup = taming_prior_setup(write_yaml(tmp_path / "a.yaml", cfg))
    assert setup.spec["window"] == [4, 4] and setup.spec["block_size"] == 16


def _permuter(p):
    p["permuter_config"] = {"target": "taming.modules.transformer.permuter.Subsample"}
    p["permuter_config"]["params"] = {"H": 4, "W": 4}


def _unmasked(p):
    p["transformer_config"]["params"]["n_unmasked"] = 16


def _dummy_cond(p):
    p["cond_stage_config"] = {"target": "taming.models.dummy_cond_stage.DummyCondStage"}
    p["cond_stage_config"]["params"] = {"conditional_key": "objects_bbox"}


def _bad_coord(p):
    p["cond_stage_config"] = {
        "target": "taming.modules.misc.coord.CoordStage",
        "params": {"n_embed": 8, "down_factor": 8},
    }


@pytest.mark.parametrize(
    "change, word",
    [
        (_permuter, "permuter"),
        (_unmasked, "n_unmasked"),
        (_dummy_cond, "DummyCondStage"),
        (_bad_coord, "down_factor"),
    ],
    ids=["permuter", "n_unmasked", "cond_stage", "coord_grid"],
)
def test_unsupported_config_is_one_line_config_error(runs, tmp_path, change, word):
    cfg = net2net_config(32, "__is_first_stage__")
    change(cfg["model"]["params"])
    with pytest.raises(ConfigError) as err:
        load_taming_prior(runs["first_stage"].ckpt, write_yaml(tmp_path / "c.yaml", cfg))
    assert word in str(err.value) and "\n" not in str(err.value)


def test_weights_not_fitting_config_is_checkpoint_error(runs, tmp_path):
    cfg = yaml.safe_load(runs["class"].config.read_text())
    cfg["model"]["params"]["transformer_config"]["params"]["n_embd"] = 64
    with pytest.raises(CheckpointError) as err:
        load_taming_prior(runs["class"].ckpt, write_yaml(tmp_path / "c.yaml", cfg))
    assert "\n" not in str(err.value)


def test_missing_config_is_config_error(runs, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(runs["class"].ckpt.read_bytes())
    with pytest.raises(ConfigError, match="--config"):
        load_taming_prior(ckpt)
