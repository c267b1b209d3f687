import json

import pytest
import torch

from shared.checkpoint import save_weights
from shared.config import build_config, read_preset
from stage1_vqgan.config import ModelConfig, VQGANConfig
from stage1_vqgan.discriminator import PatchDiscriminator
from stage1_vqgan.load import load_tokenizer_and_discriminator
from stage1_vqgan.model import VQModel


def test_encode_decode_shapes_and_factor(tiny_model_kwargs):
    model = VQModel(**tiny_model_kwargs).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    idx = model.encode(x)
    assert model.downsample_factor == 4
    assert idx.shape == (2, 8, 12) and idx.dtype == torch.long
    assert idx.min() >= 0 and idx.max() < 64
    assert model.decode(idx).shape == (2, 3, 32, 48)
    assert model.codebook.shape == (64, 16)


def test_any_number_of_channels(tiny_model_kwargs):
    model = VQModel(**{**tiny_model_kwargs, "in_channels": 5, "out_channels": 5})
    x = torch.randn(1, 5, 16, 16)
    rec, q = model(x)
    assert rec.shape == x.shape and q.indices.shape == (1, 4, 4)


def test_decode_of_encode_equals_forward_in_eval(tiny_model_kwargs):
    model = VQModel(**tiny_model_kwargs).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    rec, q = model(x)
    assert torch.allclose(model.decode(q.indices), rec, atol=1e-5)


def test_save_and_load_pretrained_round_trip(tmp_path, tiny_model_kwargs):
    model = VQModel(**{**tiny_model_kwargs, "codebook_dim": 4, "l2_normalize": True}).eval()
    model.save_pretrained(tmp_path / "tok")
    again = VQModel.from_pretrained(tmp_path / "tok")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(again.encode(x), model.encode(x))
    assert torch.allclose(again.decode(model.encode(x)), model.decode(model.encode(x)))
    assert (tmp_path / "tok" / "model.safetensors").is_file()


def test_taming_f16_layout_and_size():
    cfg = build_config(VQGANConfig, read_preset("vqgan-f16-1024", "stage1_vqgan"))
    model = VQModel.from_config(cfg.model)
    keys = model.state_dict().keys()
    for key in (
        "encoder.down.4.attn.1.proj_out.weight",
        "encoder.down.3.downsample.conv.weight",
        "decoder.up.3.block.0.nin_shortcut.weight",
        "decoder.up.1.upsample.conv.weight",
        "encoder.mid.attn_1.q.weight",
        "quantize.embedding.weight",
        "quant_conv.weight",
        "post_quant_conv.bias",
        "decoder.conv_out.weight",
    ):
        assert key in keys
    assert "encoder.down.3.attn.0.q.weight" not in keys  # attention at 16x16 only
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(72.1e6, rel=0.01)


def test_patch_discriminator_gives_30x30_logits_at_256():
    disc = PatchDiscriminator(3, ndf=8, n_layers=3)
    assert disc(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert [k for k in disc.state_dict() if k.endswith("weight")][:3] == [
        "main.0.weight",
        "main.2.weight",
        "main.3.weight",
    ]


@pytest.mark.parametrize("layout", ["discriminator/", "discriminator.safetensors (earlier)"])
def test_exported_discriminator_loads_from_either_layout(tmp_path, tiny_model_kwargs, layout):
    VQModel(**tiny_model_kwargs).save_pretrained(tmp_path)
    disc = PatchDiscriminator(3, ndf=8, n_layers=2)
    if layout == "discriminator/":
        disc.save_pretrained(tmp_path / "discriminator")
    else:  # as fmnist-vqgan ships it: raw weights and their kwargs beside the tokenizer
        save_weights(disc.state_dict(), tmp_path / "discriminator.safetensors")
        (tmp_path / "discriminator.json").write_text(json.dumps(disc.config))
    _, state = load_tokenizer_and_discriminator(tmp_path)
    own = disc.state_dict()
    assert state.keys() == own.keys() and all(torch.equal(state[k], own[k]) for k in own)


def test_model_config_defaults_are_taming_f16():
    cfg = ModelConfig()
    assert (cfg.ch, cfg.ch_mult, cfg.z_channels, cfg.n_embed) == (128, [1, 1, 2, 2, 4], 256, 1024)


def test_checkpointed_decoding_matches_plain_decoding(tiny_model_kwargs):
    torch.manual_seed(0)
    model = VQModel(**tiny_model_kwargs).eval()
    z = torch.randn(2, model.config["embed_dim"], 4, 4)
    grads = []
    for checkpointed in (False, True):
        zz = z.clone().requires_grad_(True)
        out = model.decode_latent(zz, checkpointed=checkpointed)
        out.square().mean().backward()
        grads.append((out.detach(), zz.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
