"""Reproducible runs through the real ``twostage`` entry point: a prior trains to the same bits on
a cold and on a warm code cache, and a run killed at a checkpoint then resumed ends with exactly
the weights of the uninterrupted run (tokenizer, GPT and AdatGAN priors, pixel GAN); a prior
refuses to resume on a tokenizer that was retrained in place.

"Exactly" is ``torch.equal`` on every tensor of every ``*.safetensors`` of the exported model and
of the last checkpoint (models, discriminators, EMA); each comparison also checks that training
moved the weights between the two checkpoints, so it cannot pass by comparing untrained nets."""

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from twostage.cli import main

N, M = 2, 4  # "killed" after step N (a checkpoint), resumed to M; uninterrupted runs go to M
QUIET = ["train.progress=false", "train.num_workers=0", "train.sample_every=0"]
FAST = ["train.eval_every=0", "train.eval_images=8", "train.log_every=1"]


def twostage(*argv) -> int:
    return main([str(a) for a in argv])


def weights(run) -> dict[str, dict[str, torch.Tensor]]:
    """Every tensor of ``run``'s exported model and of its checkpoint at step M, by file."""
    files = sorted((run / "model").rglob("*.safetensors"))
    files += sorted((run / "checkpoints" / f"step_{M:06d}").glob("*.safetensors"))
    return {f.relative_to(run).as_posix(): load_file(f) for f in files}


def assert_identical(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa and wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].keys() == wb[name].keys(), name
        differ = [k for k in wa[name] if not torch.equal(wa[name][k], wb[name][k])]
        assert not differ, f"{name}: {len(differ)} tensors differ, e.g. {differ[0]}"


def assert_trained(run) -> None:
    """The weights at step M are not those at step N (the comparison means something)."""
    at = {s: load_file(run / "checkpoints" / f"step_{s:06d}" / "model.safetensors") for s in (N, M)}
    assert any(not torch.equal(at[N][k], at[M][k]) for k in at[M])


def kill_then_resume(command: list, run) -> None:
    """Train ``command`` into ``run`` to step N, as if killed there, then ``--resume`` to M."""
    assert twostage(*command, "--output", run, "--max-steps", N) == 0
    assert twostage(*command[:2], "--output", run, "--resume", "--max-steps", M, *QUIET) == 0


VQGAN = ["vqgan", "train", "--config", "vqgan-tiny", "--checkpoint-every", N, "--batch-size", 4]
VQGAN += ["loss.perceptual_weight=0", "loss.disc_start=1", "loss.lecam_weight=0.1"]
VQGAN += ["model.restart_unused_steps=2", "train.ema_decay=0.9", *FAST, *QUIET]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """vqgan-tiny straight to step M (discriminator, LeCam, EMA and code restarts all on)."""
    run = tmp_path_factory.mktemp("tokenizer") / "run"
    assert twostage(*VQGAN, "--output", run, "--max-steps", M) == 0
    return run


def test_resumed_tokenizer_ends_with_the_uninterrupted_weights(tokenizer, tmp_path):
    kill_then_resume(VQGAN, tmp_path / "resumed")
    assert_trained(tokenizer)
    assert_identical(tokenizer, tmp_path / "resumed")


def prior_command(preset, tokenizer, cache) -> list:
    args = ["prior", "train", "--config", preset, "--tokenizer", tokenizer]
    args += ["--checkpoint-every", N, "--batch-size", 4, "codes.max_images=32"]
    args += [f"codes.cache_dir={cache}", *FAST, *QUIET]
    return args + (["model.dropout=0.1"] if preset == "gpt-tiny" else [])


@pytest.fixture(scope="module", params=["gpt-tiny", "adatgan-prior-tiny"])
def prior(request, tokenizer, tmp_path_factory):
    """(command, run trained on a cold code cache, the cache) for each kind of prior; the GPT
    with dropout and label dropout, the AdatGAN with its noise: all draw from the global RNG."""
    tmp = tmp_path_factory.mktemp(request.param)
    command = prior_command(request.param, tokenizer, tmp / "codes")
    assert twostage(*command, "--output", tmp / "cold", "--max-steps", M) == 0
    return command, tmp / "cold", tmp / "codes"


def test_prior_trains_identically_on_a_cold_and_a_warm_code_cache(prior, tmp_path):
    command, cold, cache = prior
    metas = sorted(cache.glob("*/meta.json"))
    assert len(metas) == 2  # train and val, extracted by the cold run
    stamps = [(os.stat(m).st_ino, os.stat(m).st_mtime_ns) for m in metas]
    assert twostage(*command, "--output", tmp_path / "warm", "--max-steps", M) == 0
    assert [(os.stat(m).st_ino, os.stat(m).st_mtime_ns) for m in metas] == stamps  # reused
    assert sorted(cache.iterdir()) == [m.parent for m in metas]  # no leftovers
    assert_trained(cold)
    assert_identical(cold, tmp_path / "warm")


def test_resumed_prior_ends_with_the_uninterrupted_weights(prior, tmp_path):
    command, cold, _ = prior
    kill_then_resume(command, tmp_path / "resumed")
    assert_identical(cold, tmp_path / "resumed")


def test_pixel_gan_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    command = ["gan", "train", "--config", "adatgan-tiny", "--data", "builtin:shapes"]
    command += ["--checkpoint-every", N, "--batch-size", 4, *FAST, *QUIET]  # EMA 0.9, R1
    assert twostage(*command, "--output", tmp_path / "straight", "--max-steps", M) == 0
    kill_then_resume(command, tmp_path / "resumed")
    assert_trained(tmp_path / "straight")
    assert_identical(tmp_path / "straight", tmp_path / "resumed")


def test_a_prior_refuses_to_resume_on_a_tokenizer_retrained_in_place(tokenizer, tmp_path, capsys):
    tok = tmp_path / "tokenizer"
    shutil.copytree(tokenizer, tok)
    command = prior_command("gpt-tiny", tok, tmp_path / "codes")
    run = tmp_path / "prior"
    assert twostage(*command, "--output", run, "--max-steps", N) == 0
    assert (run / "tokenizers.json").is_file()
    # the tokenizer trains on in its own folder; the prior's checkpoints hold codes of the old one
    assert twostage(*VQGAN[:2], "--output", tok, "--resume", "--max-steps", M + 1, *QUIET) == 0
    capsys.readouterr()
    assert twostage(*command[:2], "--output", run, "--resume", "--max-steps", M, *QUIET) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("twostage prior: error: ")
    assert "tokenizer" in err and "changed" in err and "--overwrite" in err and str(tok) in err
    assert not (run / "checkpoints" / f"step_{M:06d}").exists()
    # as the message says: a fresh prior on the new tokenizer
    assert twostage(*command, "--output", run, "--overwrite", "--max-steps", N) == 0
    assert twostage(*command[:2], "--output", run, "--resume", "--max-steps", M, *QUIET) == 0
