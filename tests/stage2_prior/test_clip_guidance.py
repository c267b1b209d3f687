"""CLIP guidance (VQGAN+CLIP) with open_clip models at random weights: a tiny architecture
registered from a JSON config, and ViT-B-32 from a weights file the test writes."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import ConfigError
from stage1_vqgan import load_tokenizer
from stage2_prior.clip.cli import main as clip_main
from stage2_prior.clip.cutouts import Cutouts
from stage2_prior.clip.guidance import Guide, GuideConfig
from stage2_prior.clip.model import load_clip
from stage2_prior.clip.prompts import Prompt, parse_prompts, prompt_loss, spherical_distance

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """``CONFIG.json:WEIGHTS.pt`` of a tiny open_clip model with fixed random weights."""
    folder = tmp_path_factory.mktemp("clip")
    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(TINY))
    torch.manual_seed(0)
    torch.save(load_clip(f"{config}:random").model.state_dict(), folder / "tiny.pt")
    return f"{config}:{folder / 'tiny.pt'}"


def test_prompt_syntax():
    a, b, c, d = parse_prompts("a red: house:2 | fog:-1:0.5 |  plain | http://x.org/y:3")
    assert a == Prompt("a red: house", 2.0)
    assert b == Prompt("fog", -1.0, 0.5)
    assert c == Prompt("plain", 1.0, -math.inf)
    assert d == Prompt("http://x.org/y", 3.0)
    with pytest.raises(ConfigError, match="no text"):
        parse_prompts(":2")


def test_spherical_distance_is_half_the_squared_angle():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    y = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    expected = torch.tensor([0.0, (math.pi / 2) ** 2 / 2, math.pi**2 / 2, (math.pi / 4) ** 2 / 2])
    assert torch.allclose(spherical_distance(x, y), expected, atol=1e-5)


def test_weight_sign_and_stop():
    emb = torch.randn(5, 8, requires_grad=True)
    target = torch.randn(8)
    d = spherical_distance(emb, target[None]).mean()
    assert torch.allclose(prompt_loss(emb, target, 2.0, -math.inf), 2 * d)
    assert torch.allclose(prompt_loss(emb, target, -1.0, -math.inf), -d)
    prompt_loss(emb, target, 1.0, 10.0).backward()  # every distance is below the stop
    assert emb.grad.abs().sum() == 0
    prompt_loss(emb, target, 1.0, 0.0).backward()
    assert emb.grad.abs().sum() > 0


def test_cutouts_shapes_and_content():
    image = torch.full((1, 3, 40, 56), 0.25)
    plain = Cutouts(24, augment=False)(image, 5)
    assert plain.shape == (5, 3, 24, 24) and torch.allclose(plain, torch.tensor(0.25))
    torch.manual_seed(0)
    aug = Cutouts(24)(torch.rand(1, 3, 40, 56, requires_grad=True), 7)
    assert aug.shape == (7, 3, 24, 24) and aug.requires_grad


def guide(tokenizer_run, clips, **kw):
    tok = load_tokenizer(tokenizer_run[0])
    cfg = GuideConfig(size=(32, 32), cutn=8, chunk=3, **kw)
    return Guide(tok, clips, cfg, "cpu")


def test_loss_falls_and_stop_freezes_the_latent(tokenizer_run, tiny_clip):
    torch.manual_seed(0)
    clip = load_clip(tiny_clip)
    g = guide(tokenizer_run, [clip], prompts=[Prompt("a red square")], lr=1.0)
    target = g.targets[0][0][0]

    def distance():  # of the whole decoded image, without cutout or augmentation noise
        with torch.no_grad():
            return spherical_distance(clip.encode_image(g.decode(g.z)), target[None]).item()

    before = distance()
    losses = [g.step()["loss"] for _ in range(30)]
    assert distance() < before - 0.02, (before, distance())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses

    frozen = guide(tokenizer_run, [clip], prompts=[Prompt("a red square", 1.0, 10.0)])
    z0 = frozen.z.detach().clone()
    for _ in range(3):
        frozen.step()
    assert torch.equal(frozen.z, z0)


def test_prompts_are_weighted_and_models_averaged(tokenizer_run, tiny_clip):
    """Without augmentation a 32x32 image gives whole-image cutouts: every loss is exact."""
    torch.manual_seed(0)
    c1 = load_clip(tiny_clip)
    c2 = load_clip(tiny_clip.rsplit(":", 1)[0] + ":random")  # other weights
    prompts = [Prompt("sky", 2.0), Prompt("sky", -1.0), Prompt("sky"), Prompt("sea")]

    def losses(clips):
        torch.manual_seed(1)
        return guide(tokenizer_run, clips, prompts=prompts, augment=False).step()["losses"]

    one, two, both = losses([c1]), losses([c2]), losses([c1, c2])
    assert list(one) == ["sky", "sky#1", "sky#2", "sea"]
    assert one["sky"] == pytest.approx(2 * one["sky#2"]) and one["sky"] > 0
    assert one["sky#1"] == pytest.approx(-one["sky#2"])
    for k in one:
        assert both[k] == pytest.approx((one[k] + two[k]) / 2, rel=1e-4)
    assert one["sea"] != pytest.approx(two["sea"])


def test_cli_writes_png_metadata_trace_frames_and_gif(tokenizer_run, tiny_clip, tmp_path, capsys):
    out = tmp_path / "out"
    init = tmp_path / "init.png"
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(init)
    args = [
        "a lighthouse:1 | fog:-0.5",
        "--prompt",
        "storm:0.5:0.1",
        "--tokenizer",
        str(tokenizer_run[0]),
        "--clip",
        tiny_clip,
        "--size",
        "32x32",
        "--steps",
        "4",
        "--cutn",
        "4",
        "--save-every",
        "2",
        "--video",
        "gif",
        "--seed",
        "7",
        "--init-image",
        str(init),
        "--init-weight",
        "0.1",
        "--tv-weight",
        "0.01",
        "--noise-prompt",
        "3:0.2",
        "--image-prompt",
        f"{init}:0.3",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert clip_main(args) == 0
    final = Image.open(out / "final.png")
    assert final.size == (32, 32)
    assert final.text["prompt"] == "a lighthouse:1:-inf | fog:-0.5:-inf | storm:0.5:0.1"
    assert final.text["seed"] == "7" and final.text["steps"] == "4"
    rows = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]["losses"]) == {
        "a lighthouse",
        "fog",
        "storm",
        str(init),
        "noise:3",
        "init",
        "tv",
    }
    assert len(list((out / "frames").glob("step_*.png"))) == 2
    assert (out / "optimisation.gif").stat().st_size > 0

    capsys.readouterr()
    assert clip_main(args) == 2  # nothing is overwritten unasked
    assert "--overwrite" in capsys.readouterr().err
    bad = ["x", "--tokenizer", str(tokenizer_run[0]), "--size", "big", "--output", str(tmp_path)]
    assert clip_main(bad) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
    assert clip_main(["--tokenizer", str(tokenizer_run[0]), "--output", str(tmp_path)]) == 2
    assert "at least one text prompt" in capsys.readouterr().err


def test_missing_clip_weights_name_the_file(tokenizer_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TWOSTAGE_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = ["x", "--tokenizer", str(tokenizer_run[0]), "--output", str(tmp_path / "o")]
    assert clip_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "ViT-B-32" in err, err


@pytest.mark.slow
def test_vit_b_32_from_a_weights_file(tmp_path):
    import open_clip

    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path / "vit-b-32.pt"
    torch.save(reference.state_dict(), path)
    clip = load_clip(f"ViT-B-32:{path}")
    assert clip.image_size == 224
    images = torch.rand(2, 3, 64, 64)
    emb = clip.encode_image(images)
    assert emb.shape == (2, 512)
    with torch.no_grad():
        x = torch.nn.functional.interpolate(
            images, size=(224, 224), mode="bilinear", antialias=True
        )
        x = (x - clip.mean[:, None, None]) / clip.std[:, None, None]
        assert torch.allclose(emb, reference.eval().encode_image(x), atol=1e-4)


def test_prior_samples_are_reranked_by_clip(tokenizer_run, tiny_clip, tmp_path, capsys):
    from stage2_prior.cli import main as prior_main
    from stage2_prior.cli import rerank_scores
    from stage2_prior.gpt import GPTPrior
    from stage2_prior.prior import Prior

    torch.manual_seed(0)
    net = GPTPrior(n_codes=256, window=[8, 8], n_layer=1, n_head=2, n_embd=32)
    prior = Prior(net, load_tokenizer(tokenizer_run[0]))
    prior.save_pretrained(tmp_path / "prior")
    base = ["sample", "--checkpoint", str(tmp_path / "prior"), "--seed", "3", "--batch-size", "3"]
    assert prior_main([*base, "--num", "6", "--output", str(tmp_path / "all")]) == 0
    candidates = torch.from_numpy(np.load(tmp_path / "all" / "indices.npy"))

    capsys.readouterr()
    rerank = ["--rerank", "a cat", "--candidates", "6", "--clip", tiny_clip]
    assert prior_main([*base, "--num", "2", *rerank, "--output", str(tmp_path / "best")]) == 0
    kept = json.loads(capsys.readouterr().out.splitlines()[0])["kept_scores"]
    scores = rerank_scores(prior, load_clip(tiny_clip), "a cat", candidates, 3, "cpu")
    top = scores.argsort(descending=True)[:2]
    assert kept == pytest.approx(scores[top].tolist(), abs=1e-5)
    assert torch.equal(
        torch.from_numpy(np.load(tmp_path / "best" / "indices.npy")), candidates[top]
    )
    assert len(list((tmp_path / "best").glob("sample_*.png"))) == 2


def test_frames_become_an_mp4(tmp_path):
    import imageio.v2 as imageio

    from shared.images import save_png
    from stage2_prior.clip.guidance import write_video

    frames = [
        save_png(torch.full((3, 32, 48), v), tmp_path / f"{i}.png")
        for i, v in enumerate((-1.0, 0.0, 1.0))
    ]
    video = write_video(frames, tmp_path / "optimisation.mp4")
    read = imageio.mimread(video)
    assert len(read) == 3 and read[0].shape[2] == 3
    assert read[0].mean() < 20 and read[2].mean() > 235
