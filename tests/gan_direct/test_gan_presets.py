"""Every pixel-GAN preset: the networks the issue fixes have their published parameter counts,
and each preset, shrunk, trains two real steps through ``twostage gan train`` (losses,
regularisers, conditioning and progressive growing included) and exports a generator that
``twostage gan sample`` loads."""

import pytest
import torch

from gan_direct.cli import main
from gan_direct.presets import preset_networks
from gan_direct.sample import load_generator
from shared.config import preset_names
from shared.run import read_metrics

# the counts the spec verified (gan_chapter_and_cifar_thesis.md §3.1, §3.2, §3.7, §3.8)
PARAMS = {
    "toy2d": (11_234, 10_753),
    "cgan-mnist": (1_484_976, 1_476_769),
    "dcgan-cifar64": (3_576_704, 2_765_568),
    "dcgan-cifar64-fixed": (3_576_704, 2_765_568),  # spectral norm adds no parameters
    "transgan-hybrid-cifar64": (11_478_851, 2_765_568),
}

# widths that make each network tiny (keys of its spec)
TINY = {
    "dcgan": {"base": 4},
    "transgan-hybrid": {"base": 4, "heads": 2, "ff_dim": 16, "layers": 1},
    "sagan": {"base": 4, "attention": [8]},
    "progan": {"channel_base": 64, "max_channels": 8},
    "stylegan": {"channel_base": 64, "max_channels": 8},
    "vitgan": {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32, "tokens": 4},
    "adatgan": {},
    "mlp": {},
}
TINY_G = {
    "progan": {"z_dim": 8},
    "stylegan": {"z_dim": 8, "w_dim": 8, "mapping_layers": 2},
    "vitgan": {"z_dim": 16, "inr_dim": 16, "mapping_layers": 2},
    "adatgan": {"z_dim": 16, "dims": [16, 8, 8], "heads": 2, "mlp_dim": 16},
}
TINY_D = {
    "adatgan": {"stem": [4, 8], "down_factor": 2, "heads": 2, "mlp_dim": 16, "out_dims": [8, 8]}
}


def tiny_overrides(name: str) -> list[str]:
    cfg, _, _ = preset_networks(name, num_classes=4)
    out = []
    for role, extra in (("generator", TINY_G), ("discriminator", TINY_D)):
        kind = getattr(cfg, role)["name"]
        for key, value in {**TINY[kind], **extra.get(kind, {})}.items():
            out.append(f"{role}.{key}={value}")
    if cfg.data.source == "builtin:shapes":
        kind = cfg.generator["name"]
        out.append(f"data.resolution={32 if kind == 'adatgan' else 16}")
    return out


def test_every_preset_is_covered():
    assert set(preset_names("gan_direct")) >= set(PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_the_spec(name):
    _, g, d = preset_networks(name, num_classes=10)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(g), count(d)) == PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", preset_names("gan_direct"))
def test_preset_trains_two_steps_and_samples(name, tmp_path):
    run = tmp_path / "run"
    steps = 2
    argv = ["train", "--config", name, "--output", str(run), "--max-steps", str(steps)]
    argv += ["--batch-size", "4", "train.progress=false", "train.num_workers=0"]
    argv += ["train.eval_every=0", "train.sample_every=0", "train.log_every=1"]
    argv += ["train.grow_steps=1"] if name == "progan" else []
    assert main(argv + tiny_overrides(name)) == 0
    logs = [r for r in read_metrics(run) if "g_loss" in r]
    assert [r["step"] for r in logs] == [1, 2]
    assert all(r["grad_norm_g"] > 0 and r["grad_norm_d"] > 0 for r in logs)
    if name == "progan":  # 16 px: stage 0 at step 0, fading into 8x8 at step 1
        assert [(r["stage"], r["alpha"]) for r in logs][-1] == (1, 0.0)
    gen = load_generator(run)
    z = torch.randn(2, gen.z_dim)
    labels = torch.tensor([0, 1]) if gen.num_classes else None
    with torch.no_grad():
        out = gen(z) if labels is None else gen(z, labels)
    assert torch.isfinite(out).all()
    assert (
        main(["sample", "--checkpoint", str(run), "--num", "2", "--output", str(tmp_path / "s")])
        == 0
    )
