"""Loading taming-transformers ``VQModel`` checkpoints (Lightning ``last.ckpt`` + YAML config).

The checkpoints are written here the way taming/Lightning writes them (key layout, Lightning
extras, a callback class from ``pytorch_lightning`` as a dict key), without taming or Lightning
installed: a fake ``pytorch_lightning`` module exists only while the file is saved."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from taming_files import write_lightning_ckpt, write_yaml

from shared.checkpoint import CheckpointError, Placeholder, load_torch_checkpoint
from shared.config import ConfigError
from stage1_vqgan.discriminator import PatchDiscriminator
from stage1_vqgan.load import load_tokenizer, load_tokenizer_and_discriminator
from stage1_vqgan.model import VQModel

REPO = Path(__file__).resolve().parents[2]
CONVERT_SCRIPT = REPO / "scripts" / "convert_taming.py"

DDCONFIG = dict(
    double_z=False,
    z_channels=32,
    resolution=32,
    in_channels=3,
    out_ch=3,
    ch=32,
    ch_mult=[1, 2, 2],
    num_res_blocks=1,
    attn_resolutions=[8],
    dropout=0.0,
)
N_EMBED, EMBED_DIM = 64, 16
DISC = dict(in_channels=3, ndf=16, n_layers=2)
CONFIG_NAME = "2021-01-01T00-00-00-project.yaml"

# A few parameter names of a real taming f4 checkpoint with this ddconfig.
TAMING_KEYS = [
    "encoder.conv_in.weight",
    "encoder.down.0.block.0.norm1.weight",
    "encoder.down.1.block.0.nin_shortcut.weight",
    "encoder.down.1.downsample.conv.weight",
    "encoder.down.2.attn.0.q.weight",
    "encoder.mid.attn_1.proj_out.weight",
    "encoder.norm_out.bias",
    "decoder.mid.block_2.conv2.weight",
    "decoder.up.0.block.1.conv2.weight",
    "decoder.up.2.attn.1.k.weight",
    "decoder.up.2.upsample.conv.weight",
    "decoder.conv_out.weight",
    "quantize.embedding.weight",
    "quant_conv.weight",
    "post_quant_conv.bias",
]


def taming_config(ddconfig: dict = DDCONFIG, n_embed: int = N_EMBED) -> dict:
    loss = {
        "disc_conditional": False,
        "disc_in_channels": DISC["in_channels"],
        "disc_start": 10000,
        "disc_weight": 0.8,
        "codebook_weight": 1.0,
        "disc_ndf": DISC["ndf"],
        "disc_num_layers": DISC["n_layers"],
    }
    return {
        "model": {
            "base_learning_rate": 4.5e-6,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": EMBED_DIM,
                "n_embed": n_embed,
                "ddconfig": ddconfig,
                "lossconfig": {
                    "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                    "params": loss,
                },
            },
        },
        "data": {"target": "main.DataModuleFromConfig", "params": {"batch_size": 4}},
    }


def source_model() -> VQModel:
    torch.manual_seed(0)
    arch = {
        k: DDCONFIG[k]
        for k in (
            "in_channels",
            "ch",
            "ch_mult",
            "num_res_blocks",
            "attn_resolutions",
            "z_channels",
            "resolution",
        )
    }
    model = VQModel(
        **arch,
        out_channels=DDCONFIG["out_ch"],
        n_embed=N_EMBED,
        embed_dim=EMBED_DIM,
        beta=0.25,
        legacy_beta=True,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        # codes at the latents' scale, so that many different codes are picked
        z = model.encode_latent(torch.rand(4, 3, 32, 32) * 2 - 1)
        model.quantize.embedding.weight.copy_(torch.randn(N_EMBED, EMBED_DIM) * z.std() + z.mean())
    return model.eval()


def source_discriminator() -> PatchDiscriminator:
    torch.manual_seed(1)
    disc = PatchDiscriminator(**DISC)
    with torch.no_grad():
        for m in disc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(5)
    return disc.eval()


def adam_state(params: list[torch.nn.Parameter]) -> dict:
    opt = torch.optim.Adam(params, lr=4.5e-6, betas=(0.5, 0.9))
    sum(p.float().pow(2).sum() for p in params).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt.state_dict()


def write_taming_ckpt(path: Path, model: VQModel, disc: PatchDiscriminator) -> Path:
    """A Lightning ``last.ckpt`` of taming's ``VQModel``. Optimiser states are taken from copies,
    so the weights saved are exactly those of ``model`` and ``disc``."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.update({f"loss.discriminator.{k}": v.clone() for k, v in disc.state_dict().items()})
    state["loss.perceptual_loss.scaling_layer.shift"] = torch.tensor([-0.03, -0.088, -0.188])[
        None, :, None, None
    ]
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.rand(1, 64, 1, 1)
    ae, d = copy.deepcopy(model), copy.deepcopy(disc)
    ae_params = [p for n, p in ae.named_parameters() if not n.startswith("quantize.")]
    callback_state = {
        "monitor": "val/rec_loss",
        "best_model_score": torch.tensor(0.1234),
        "best_model_path": "logs/x.ckpt",
    }
    optimizers = [adam_state(ae_params), adam_state(list(d.parameters()))]
    return write_lightning_ckpt(path, state, optimizers, callback_state, 12, 34567)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """taming's log layout: ``logs/RUN/{checkpoints/last.ckpt, configs/*-project.yaml}``."""
    root = tmp_path_factory.mktemp("taming") / "logs" / "2021-01-01T00-00-00_custom_vqgan"
    model, disc = source_model(), source_discriminator()
    ckpt = write_taming_ckpt(root / "checkpoints" / "last.ckpt", model, disc)
    config = write_yaml(root / "configs" / CONFIG_NAME, taming_config())
    write_yaml(
        root / "configs" / "2021-01-01T00-00-00-lightning.yaml",
        {"lightning": {"trainer": {"gpus": "0,"}}},
    )
    return types.SimpleNamespace(root=root, ckpt=ckpt, config=config, model=model, disc=disc)


def images(*shape: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def assert_same_outputs(loaded: VQModel, source: VQModel) -> None:
    for shape in [(2, 3, 32, 32), (2, 3, 32, 48)]:
        x = images(*shape)
        with torch.no_grad():
            idx = source.encode(x)
            assert idx.unique().numel() > 4  # the comparison is not trivial
            assert torch.equal(loaded.encode(x), idx)
            assert torch.equal(loaded.decode(idx), source.decode(idx))
            (rec_a, q_a), (rec_b, q_b) = loaded(x), source(x)
            assert torch.equal(rec_a, rec_b)
            assert torch.equal(q_a.z_q, q_b.z_q)
            assert torch.equal(q_a.loss, q_b.loss)


def test_checkpoint_looks_like_lightning(run):
    assert all(k in run.model.state_dict() for k in TAMING_KEYS)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(run.ckpt, map_location="cpu", weights_only=True)
    raw = load_torch_checkpoint(run.ckpt)
    (key,) = raw["callbacks"]
    assert issubclass(key, Placeholder)
    assert key.pickled_name == "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    assert "pytorch_lightning" not in sys.modules


def test_load_taming_checkpoint_matches_source(run):
    loaded = load_tokenizer(run.ckpt, run.config)
    assert not loaded.training
    assert "pytorch_lightning" not in sys.modules
    cfg = loaded.config
    assert (cfg["n_embed"], cfg["embed_dim"], cfg["ch_mult"]) == (N_EMBED, EMBED_DIM, [1, 2, 2])
    assert cfg["beta"] == 0.25 and cfg["legacy_beta"] is True
    assert loaded.downsample_factor == 4
    own = run.model.state_dict()
    assert loaded.state_dict().keys() == own.keys()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())
    assert_same_outputs(loaded, run.model)


def test_quantizer_loss_is_taming_legacy_form(run):
    """taming (legacy=True): mean((sg[z_q]-z)^2) + beta * mean((z_q-sg[z])^2)."""
    loaded = load_tokenizer(run.ckpt, run.config)
    z = loaded.encode_latent(images(2, 3, 32, 32)).detach().requires_grad_(True)
    q = loaded.quantize(z)
    codes = loaded.codebook[q.indices].permute(0, 3, 1, 2)
    torch.testing.assert_close(q.z_q, codes)  # straight-through: z + sg[z_q - z]
    expected = (codes.detach() - z).pow(2).mean() + 0.25 * (codes - z.detach()).pow(2).mean()
    torch.testing.assert_close(q.loss, expected, rtol=1e-6, atol=0)
    (g,) = torch.autograd.grad(q.loss, z)
    torch.testing.assert_close(g, 2 * (z - codes).detach() / z.numel())


def test_discriminator_weights(run):
    model, disc_state = load_tokenizer_and_discriminator(run.ckpt, run.config)
    saved = run.disc.state_dict()
    assert disc_state is not None and disc_state.keys() == saved.keys()
    assert all(torch.equal(disc_state[k], v) for k, v in saved.items())
    disc = PatchDiscriminator(**DISC).eval()
    disc.load_state_dict(disc_state)
    x = images(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(disc(x), run.disc(x))
    assert isinstance(model, VQModel)


def test_config_found_in_log_layout(run):
    loaded = load_tokenizer(run.ckpt)
    assert_same_outputs(loaded, run.model)


def test_latest_project_config_is_used(run, tmp_path):
    ckpt = tmp_path / "logs" / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(run.ckpt.read_bytes())
    configs = tmp_path / "logs" / "run" / "configs"
    write_yaml(configs / "2020-12-31T23-59-59-project.yaml", taming_config(n_embed=32))
    write_yaml(configs / CONFIG_NAME, taming_config())
    assert_same_outputs(load_tokenizer(ckpt), run.model)


def test_missing_config_is_one_line_config_error(run, tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(run.ckpt.read_bytes())
    with pytest.raises(ConfigError) as err:
        load_tokenizer(ckpt)
    message = str(err.value)
    assert "\n" not in message and "--config" in message


@pytest.mark.parametrize(
    "change",
    [
        {"n_embed": 32},
        {"ddconfig": {**DDCONFIG, "ch": 64}},
        {"ddconfig": {**DDCONFIG, "ch_mult": [1, 2, 2, 4]}},
        {"ddconfig": {**DDCONFIG, "num_res_blocks": 2}},
    ],
    ids=["n_embed", "ch", "ch_mult", "num_res_blocks"],
)
def test_weights_not_fitting_config_is_checkpoint_error(run, tmp_path, change):
    cfg = taming_config(
        ddconfig=change.get("ddconfig", DDCONFIG), n_embed=change.get("n_embed", N_EMBED)
    )
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(run.ckpt, write_yaml(tmp_path / "other.yaml", cfg))
    assert "\n" not in str(err.value)


def test_convert_script_round_trip(run, tmp_path):
    if not CONVERT_SCRIPT.is_file():
        pytest.skip("scripts/convert_taming.py does not exist")
    spec = importlib.util.spec_from_file_location("convert_taming", CONVERT_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "converted"
    # no --config: found in the run's configs/ folder
    assert script.main(["--checkpoint", str(run.ckpt), "--output", str(out)]) in (0, None)
    loaded, disc_state = load_tokenizer_and_discriminator(out)
    assert_same_outputs(loaded, run.model)
    saved = run.disc.state_dict()
    assert disc_state is not None and disc_state.keys() == saved.keys()
    assert all(torch.equal(disc_state[k], v) for k, v in saved.items())
    disc_kwargs = json.loads((out / "discriminator" / "config.json").read_text())["config"]
    PatchDiscriminator(**disc_kwargs).load_state_dict(disc_state)


def test_segmentation_model_loads_as_a_segmentation_tokenizer(tmp_path):
    """taming's ``VQSegmentationModel``: one-hot labels in and out, a ``colorize`` buffer, BCE
    loss without weights, no discriminator."""
    labels = 5
    dd = {**DDCONFIG, "in_channels": labels, "out_ch": labels}
    cfg = taming_config(ddconfig=dd)
    params = cfg["model"]["params"]
    cfg["model"]["target"] = "taming.models.vqgan.VQSegmentationModel"
    params.update(n_labels=labels, image_key="segmentation")
    params["lossconfig"] = {
        "target": "taming.modules.losses.segmentation.BCELossWithQuant",
        "params": {"codebook_weight": 1.0},
    }
    torch.manual_seed(3)
    source = VQModel(
        kind="segmentation",
        in_channels=labels,
        out_channels=labels,
        **{k: DDCONFIG[k] for k in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions")},
        z_channels=DDCONFIG["z_channels"],
        resolution=DDCONFIG["resolution"],
        n_embed=N_EMBED,
        embed_dim=EMBED_DIM,
    ).eval()
    state = {**source.state_dict(), "colorize": torch.randn(3, labels, 1, 1)}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"global_step": 10, "state_dict": state}, ckpt)
    model, disc_state = load_tokenizer_and_discriminator(
        ckpt, write_yaml(tmp_path / "seg.yaml", cfg)
    )
    assert model.kind == "segmentation" and disc_state is None
    assert (model.config["in_channels"], model.config["out_channels"]) == (labels, labels)
    own = source.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items())
