import pytest

from shared.config import ConfigError, build_config, preset_names, read_preset
from stage1_vqgan.config import VQGANConfig


def test_presets_are_shipped_and_valid():
    names = preset_names("stage1_vqgan")
    assert {"vqgan-tiny", "vqgan-f16-1024", "vqgan-f16-16384", "vqgan-f8-16384"} <= set(names)
    for name in names:
        build_config(VQGANConfig, read_preset(name, "stage1_vqgan"))


def test_overrides_apply_with_types():
    cfg = build_config(
        VQGANConfig,
        read_preset("vqgan-tiny", "stage1_vqgan"),
        overrides=[
            "model.n_embed=512",
            "model.ch_mult=[1,2]",
            "loss.gan_loss=vanilla",
            "train.lr=0.001",
            "model.codebook_dim=8",
        ],
    )
    assert cfg.model.n_embed == 512 and cfg.model.ch_mult == [1, 2]
    assert cfg.loss.gan_loss == "vanilla" and cfg.train.lr == 0.001 and cfg.model.codebook_dim == 8


@pytest.mark.parametrize(
    "override, words",
    [
        (["model.n_embd=3"], ["unknown key 'model.n_embd'", "n_embed"]),
        (["modle.ch=3"], ["unknown key 'modle'", "model, loss, data, train"]),
        (["model.n_embed=many"], ["model.n_embed", "many"]),
        (["loss.gan_loss=wgan"], ["loss.gan_loss", "hinge, vanilla, non_saturating"]),
        (["train.precision=fp8"], ["train.precision", "no, fp16, bf16"]),
        (["model.n_embed"], ["key=value"]),
    ],
)
def test_bad_overrides_are_one_line_errors(override, words):
    with pytest.raises(ConfigError) as e:
        build_config(VQGANConfig, {}, overrides=override)
    message = str(e.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_unknown_preset_lists_the_presets(tmp_path):
    with pytest.raises(ConfigError, match="vqgan-tiny"):
        read_preset("vqgan-huge", "stage1_vqgan")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_preset(str(bad), "stage1_vqgan")
    with pytest.raises(ConfigError, match="not found"):
        read_preset(str(tmp_path / "missing.yaml"), "stage1_vqgan")


def test_yaml_file_with_unknown_key_is_rejected(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  ch: 64\n  heads: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'model.heads'"):
        build_config(VQGANConfig, read_preset(str(path), "stage1_vqgan"))


def test_no_and_yes_stay_strings_in_yaml_and_overrides(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  precision: no\ndata:\n  source: yes\n")
    cfg = build_config(VQGANConfig, read_preset(str(path), "stage1_vqgan"))
    assert cfg.train.precision == "no" and cfg.data.source == "yes"
    cfg = build_config(
        VQGANConfig,
        {},
        overrides=["train.precision=no", "loss.adaptive_weight=false", "data.source=1e5"],
    )
    assert cfg.train.precision == "no" and cfg.loss.adaptive_weight is False
    assert cfg.data.source == "1e5"
