import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from shared import weights
from shared.weights import (
    WeightsUnavailable,
    available,
    build_lpips,
    download,
    resolve,
    spec,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VGG_FILE = "vgg16-397923af.pth"


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """Point every searched cache at empty temporary folders."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    return tmp_path


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(weights.ENV_VAR, str(folder))
    return folder


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_explicit_path(tmp_path):
    file = _touch(tmp_path / "elsewhere" / "my-vgg.pth")
    assert resolve("vgg16", file) == file
    folder_file = _touch(tmp_path / "folder" / VGG_FILE)
    assert resolve("vgg16", folder_file.parent) == folder_file
    with pytest.raises(WeightsUnavailable, match=VGG_FILE):
        resolve("vgg16", tmp_path / "nothing-here")


def test_env_folder_and_user_cache(weights_dir, tmp_path):
    assert not available("vgg16")
    home_copy = _touch(tmp_path / "home" / ".cache" / "twostage" / "weights" / VGG_FILE)
    assert resolve("vgg16") == home_copy
    env_copy = _touch(weights_dir / VGG_FILE)
    assert resolve("vgg16") == env_copy
    assert available("vgg16")


def test_torch_hub_cache(tmp_path):
    name = "pt_inception-2015-12-05-6726825d.pth"
    cached = _touch(tmp_path / "torch" / "hub" / "checkpoints" / name)
    assert resolve("inception-fid") == cached
    assert spec("inception-fid-fidelity").filename == "weights-inception-2015-12-05-6726825d.pth"


def test_missing_message_names_file_and_folders(weights_dir):
    with pytest.raises(WeightsUnavailable) as info:
        resolve("alexnet")
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(weights_dir) in message
    assert "\n" not in message and "http" not in message


def test_lpips_heads_come_from_the_lpips_package():
    path = resolve("lpips-vgg-heads")
    assert path.name == "vgg.pth" and path.parent.parts[-3:] == ("lpips", "weights", "v0.1")
    assert resolve("lpips-alex-heads").name == "alex.pth"


def test_clip_locations(weights_dir, tmp_path):
    name = "clip:ViT-B-32:openai"
    assert not available(name)
    url_cache = _touch(tmp_path / "home" / ".cache" / "clip" / "ViT-B-32.pt")
    assert resolve(name) == url_cache
    own = _touch(weights_dir / "clip" / "ViT-B-32" / "openai" / "open_clip_model.safetensors")
    assert resolve(name) == own
    with pytest.raises(WeightsUnavailable, match="open_clip_model.safetensors"):
        resolve("clip:ViT-B-32:laion2b_s34b_b79k")


def test_unknown_names():
    with pytest.raises(KeyError):
        spec("resnet9000")
    with pytest.raises(KeyError):
        spec("clip:ViT-B-32")


def test_download_failures_become_weights_unavailable(weights_dir, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailable, match=VGG_FILE):
        download("vgg16")
    with pytest.raises(WeightsUnavailable, match="no download source"):
        download("clip:ViT-B-32:laion2b_s34b_b79k")


def test_random_backbone_lpips():
    model = build_lpips("vgg", "random")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    heads = torch.load(resolve("lpips-vgg-heads"), map_location="cpu", weights_only=True)
    assert torch.equal(model.lin2.model[1].weight, heads["lin2.model.1.weight"])

    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    b = torch.rand(2, 3, 32, 32) * 2 - 1
    same, different = model(a, a), model(a, b)
    assert same.shape == different.shape == (2, 1, 1, 1)
    assert same.abs().max() < 1e-6
    assert (different > 10 * same.abs().max() + 1e-4).all()


def test_auto_warns_and_falls_back_without_vgg_file(weights_dir):
    with pytest.warns(UserWarning, match=f"RANDOM vgg backbone.*{VGG_FILE}"):
        model = build_lpips("vgg", "auto")
    assert model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).shape == (1, 1, 1, 1)


def test_pretrained_requires_the_file(weights_dir):
    with pytest.raises(WeightsUnavailable, match=VGG_FILE):
        build_lpips("vgg", "pretrained")


def test_pretrained_backbone_loads_the_resolved_file(weights_dir):
    cfg = torchvision.models.vgg.cfgs["D"]
    features = torchvision.models.vgg.make_layers(cfg)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, weights_dir / VGG_FILE)

    model = build_lpips("vgg", "pretrained")
    assert torch.equal(getattr(model.net.slice1, "0").weight, state["features.0.weight"])
    assert torch.equal(getattr(model.net.slice3, "12").weight, state["features.12.weight"])
    assert torch.equal(getattr(model.net.slice5, "28").bias, state["features.28.bias"])
    assert not any(p.requires_grad for p in model.parameters())
