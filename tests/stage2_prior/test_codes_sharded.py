"""Code extraction shared by several processes: a real 2-process gloo run writes one cache
folder whose arrays are byte for byte those of a single process, encodes each image once, reads
the folder back without encoding, and leaves the global random state alone.

Run as a script (under ``torch.distributed.run``) this file is one process of that run:
``test_codes_sharded.py CACHE_DIR REPORT_DIR`` writes REPORT_DIR/RANK.json."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.config import DataConfig, build_config, read_preset
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel
from stage2_prior.codes import ARRAYS, _share, extract_codes

# 21 images in batches of 4: 6 batches, the last one short, shared 3 + 3 by two processes
DATA = DataConfig(source="builtin:shapes", resolution=32, flip=True)
KW = dict(max_images=21, batch_size=4, progress=False)


def tiny_tokenizer() -> VQModel:
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"))
    torch.manual_seed(0)
    return VQModel.from_config(cfg.model).eval()


def encode_maps(m):
    return m[:, ::4, ::4]  # stand-in for a segmentation tokenizer: one label per 4x4 cell


class Counting:
    """Counts the images a tokenizer encodes."""

    def __init__(self, tok):
        self.tok, self.images = tok, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode(self, x):
        self.images += len(x)
        return self.tok.encode(x)


def _worker(cache_dir: str, report_dir: str) -> None:
    """One process: extract twice (the second time from the cache) and report."""
    from accelerate import PartialState

    state = PartialState(cpu=True)
    tok = Counting(tiny_tokenizer())
    before = torch.get_rng_state()
    first, folder = extract_codes(
        tok, DATA, "train", encode_maps, cache_dir=cache_dir, **KW, state=state
    )
    encoded = tok.images
    again, _ = extract_codes(
        tok, DATA, "train", encode_maps, cache_dir=cache_dir, **KW, state=state
    )
    report = {
        "rank": state.process_index,
        "processes": state.num_processes,
        "encoded": encoded,
        "encoded_again": tok.images - encoded,
        "rng_untouched": torch.equal(before, torch.get_rng_state()),
        "same_again": all(
            np.array_equal(getattr(first, a), getattr(again, a))
            for a in ("codes", "labels", "cond")
        ),
        "folder": str(folder),
    }
    (Path(report_dir) / f"{state.process_index}.json").write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_the_single_process_cache(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    cmd += [__file__, str(two), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert [(r["rank"], r["processes"]) for r in reports] == [(0, 2), (1, 2)]
    assert [r["encoded"] for r in reports] == [24, 18]  # 12 + 9 images, each with its mirror
    assert all(r["encoded_again"] == 0 and r["rng_untouched"] and r["same_again"] for r in reports)
    assert reports[0]["folder"] == reports[1]["folder"]

    tok = Counting(tiny_tokenizer())
    alone, folder = extract_codes(tok, DATA, "train", encode_maps, cache_dir=one, **KW)
    assert tok.images == 42 and alone.cond is not None
    assert [p.name for p in two.iterdir()] == [folder.name]  # one entry, no hidden leftovers
    assert [p.name for p in one.iterdir()] == [folder.name]
    for name in [*ARRAYS, "meta"]:
        ext = "json" if name == "meta" else "npy"
        assert (two / folder.name / f"{name}.{ext}").read_bytes() == (
            folder / f"{name}.{ext}"
        ).read_bytes(), name


@pytest.mark.parametrize(("n", "processes"), [(21, 2), (21, 4), (8, 3), (4, 3), (100, 7)])
def test_shares_are_contiguous_whole_batches_covering_every_image(n, processes):
    shares = [_share(n, 4, processes, i) for i in range(processes)]
    assert [i for s in shares for i in s] == list(range(n))
    assert all(s.start % 4 == 0 for s in shares)
    sizes = [len(s) for s in shares if len(s)]
    assert max(sizes) - min(sizes) <= 4  # balanced to a batch


if __name__ == "__main__":
    _worker(*sys.argv[1:])
