"""The code cache (reused, rebuilt when the tokenizer changes, checked when read, written
atomically, blind to the global RNG) and window crops."""

import hashlib
import json
import os
import random
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import DataConfig
from shared.data import DataError
from stage2_prior.codes import CodeSet, CodeWindows, extract_codes, load_code_set
from stage2_prior.gpt import coord_tokens
from tests.stage2_prior.test_codes_sharded import Counting, tiny_tokenizer


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


def test_codes_are_cached_reused_and_rebuilt_for_a_new_tokenizer(tokenizer, tmp_path):
    data = DataConfig(source="builtin:shapes", resolution=32, flip=True)
    counting = Counting(tokenizer)
    kw = dict(max_images=24, batch_size=16, cache_dir=tmp_path, progress=False)
    codes, folder = extract_codes(counting, data, "train", **kw)
    assert counting.images == 48  # 24 images and their mirror images
    assert codes.codes.shape == (48, 8, 8) and codes.labels.shape == (48,) and codes.cond is None
    assert set(codes.labels.tolist()) <= {0, 1, 2, 3}
    again, folder2 = extract_codes(counting, data, "train", **kw)
    assert folder2 == folder and counting.images == 48  # read from disk, nothing encoded
    assert np.array_equal(again.codes, codes.codes)
    x = _shapes_item(0)["image"][None]  # each batch of 16 is followed by its mirror images
    assert np.array_equal(codes.codes[0], tokenizer.encode(x)[0].numpy())
    assert np.array_equal(codes.codes[16], tokenizer.encode(x.flip(-1))[0].numpy())
    with torch.no_grad():
        tokenizer.quant_conv.bias.add_(0.5)
    _, folder3 = extract_codes(Counting(tokenizer), data, "train", **kw)
    assert folder3 != folder
    val, _ = extract_codes(tokenizer, data, "val", **{**kw, "max_images": None})
    assert len(val) == 256  # all of the val split, never mirrored
    assert len(extract_codes(tokenizer, data, "val", **kw)[0]) == 24  # or its first N


def _shapes_item(i):
    from shared.data import build_dataset

    return build_dataset(DataConfig(resolution=32, crop="center", flip=False), "train")[i]


def test_condition_maps_are_encoded_alongside(tokenizer, tmp_path):
    data = DataConfig(source="builtin:shapes", resolution=32, flip=False)

    def encode_maps(m):
        return m[:, ::4, ::4]  # stand-in for a segmentation tokenizer: one label per 4x4 cell

    codes, _ = extract_codes(
        tokenizer, data, "train", encode_maps, max_images=8, cache_dir=tmp_path, progress=False
    )
    assert codes.cond.shape == (8, 8, 8)
    assert np.array_equal(codes.cond[3], _shapes_item(3)["mask"][::4, ::4].numpy())


def test_maps_need_a_dataset_with_masks(tokenizer, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (i * 90, 20, 20)).save(folder / f"{i}.png")
    data = DataConfig(source=str(folder), resolution=32)
    with pytest.raises(DataError, match="no segmentation masks"):
        extract_codes(tokenizer, data, "train", lambda m: m, cache_dir=tmp_path, progress=False)


def test_windows_crop_codes_and_condition_together():
    grid = np.arange(6 * 10).reshape(1, 6, 10).repeat(5, 0).astype(np.int32)
    cs = CodeSet(grid, np.arange(5), grid + 1000)
    train = CodeWindows(cs, (4, 4), random_crop=True, seed=3)
    origins = set()
    for epoch in range(4):
        item = train[(2, epoch)]
        assert torch.equal(item["cond"], item["codes"] + 1000) and item["label"] == 2
        top, left = divmod(int(item["codes"][0, 0]), 10)
        assert torch.equal(item["codes"], torch.from_numpy(grid[0, top : top + 4, left : left + 4]))
        origins.add((top, left))
        assert torch.equal(train[(2, epoch)]["codes"], item["codes"])  # same key, same crop
    assert len(origins) > 1
    val = CodeWindows(cs, (4, 4), random_crop=False)
    assert int(val[0]["codes"][0, 0]) == 1 * 10 + 3  # centre crop
    coords = CodeWindows(CodeSet(grid, np.zeros(5)), (4, 4), False, coord_vocab=60, coord_factor=4)
    assert torch.equal(coords[0]["cond"], coord_tokens(6, 10, 60, 4)[1:5, 3:7])
    with pytest.raises(DataError, match="larger than the code grid"):
        CodeWindows(cs, (7, 4), random_crop=True)


def test_image_like_condition_maps_are_scaled_to_the_tokenizer_range(tokenizer):
    """Depth/edge maps: 8-bit values -> [-1, 1] on every input channel of their tokenizer."""
    from stage2_prior.gpt import GPTPrior
    from stage2_prior.prior import Prior

    net = GPTPrior(n_codes=256, window=[8, 8], condition="spatial", n_cond_codes=256, n_layer=1)
    prior = Prior(net, tokenizer, cond_tokenizer=tokenizer)
    maps = torch.randint(0, 256, (2, 32, 32))
    expected = tokenizer.encode((maps.float() / 127.5 - 1)[:, None].expand(-1, 3, -1, -1))
    assert torch.equal(prior.encode_condition(maps), expected)
    with pytest.raises(ValueError, match="no condition tokenizer"):
        Prior(net, tokenizer).encode_condition(maps)


def test_extraction_leaves_the_global_random_state_untouched(tokenizer, tmp_path):
    """A cold cache and a warm one must leave training the same random stream."""
    data = DataConfig(source="builtin:shapes", resolution=32, flip=True)
    torch.manual_seed(5)
    np.random.seed(5)  # noqa: NPY002 (what accelerate's set_seed seeds)
    random.seed(5)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002
    tokenizer.train()
    codes, _ = extract_codes(
        tokenizer, data, "train", max_images=8, cache_dir=tmp_path, progress=False
    )
    assert tokenizer.training  # the tokenizer encoded in eval mode and was given back as it was
    tokenizer.eval()
    after = torch.get_rng_state(), np.random.get_state()[1], random.getstate()  # noqa: NPY002
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    assert before[2] == after[2]
    again, _ = extract_codes(
        tokenizer, data, "train", max_images=8, cache_dir=tmp_path / "b", progress=False
    )
    assert np.array_equal(codes.codes, again.codes)  # the extraction itself is deterministic


def _rewrite(folder, name, array, rehash=True):
    """Replace ``name``.npy; with ``rehash`` also its hash in meta.json (a careful tamperer)."""
    np.save(folder / f"{name}.npy", array, allow_pickle=True)
    if rehash:
        meta = json.loads((folder / "meta.json").read_text())
        meta["sha256"][name] = hashlib.sha256((folder / f"{name}.npy").read_bytes()).hexdigest()
        (folder / "meta.json").write_text(json.dumps(meta))


class Payload:
    """Writes a file when unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_damaged_or_tampered_cache_is_encoded_again_with_a_warning(tokenizer, tmp_path):
    data = DataConfig(source="builtin:shapes", resolution=32)
    kw = dict(max_images=6, cache_dir=tmp_path / "c", progress=False)
    good, folder = extract_codes(tokenizer, data, "train", **kw)
    ran = tmp_path / "payload-ran"
    bad_codes = good.codes.copy()
    bad_codes[0, 0, 0] = 256  # one code past the vocabulary: an IndexError in training
    tamperings = {
        "vocabulary": lambda: _rewrite(folder, "codes", bad_codes),
        "shape": lambda: _rewrite(folder, "codes", good.codes[:, :4]),
        "labels": lambda: _rewrite(folder, "labels", good.labels + 40),
        "hash": lambda: _rewrite(folder, "codes", good.codes + 1, rehash=False),
        "meta.json": lambda: (folder / "meta.json").write_text("{not json"),
        "pickle": lambda: _rewrite(folder, "codes", np.array([Payload(ran)], dtype=object)),
        "missing": lambda: (folder / "labels.npy").unlink(),
    }
    for what, tamper in tamperings.items():
        tamper()
        with pytest.warns(UserWarning, match="unusable") as caught:
            codes, again = extract_codes(tokenizer, data, "train", **kw)
        assert again == folder and np.array_equal(codes.codes, good.codes), what
        assert len(caught) == 1 and len(str(caught[0].message).splitlines()) == 1
        if what in ("vocabulary", "shape", "labels", "hash"):
            assert what in str(caught[0].message)
        assert np.array_equal(load_code_set(folder).codes, good.codes), what  # healed on disk
        assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name], what
    assert not ran.exists()  # cached arrays never unpickle


def test_a_file_name_that_is_not_utf8_enters_the_cache_key(tokenizer, tmp_path):
    images = os.path.join(os.fsencode(tmp_path), b"images")
    os.mkdir(images)
    names = [b"plain.png", b"caf\xe9-latin1.png", b"\xff\xfe.png"]
    try:
        for i, name in enumerate(names):
            path = os.fsdecode(os.path.join(images, name))
            Image.new("RGB", (32, 32), (i * 90, 20, 20)).save(path)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    data = DataConfig(source=os.fsdecode(images), resolution=32, flip=False, val_fraction=0.4)
    kw = dict(cache_dir=tmp_path / "c", progress=False)
    (train, folder), (val, val_folder) = (extract_codes(tokenizer, data, s, **kw) for s in SPLITS)
    assert len(train) + len(val) == 3 and len(train) and len(val)
    assert extract_codes(tokenizer, data, "train", **kw)[1] == folder  # a stable key
    os.rename(os.path.join(images, names[2]), os.path.join(images, b"\xfe\xff.png"))
    moved = tuple(extract_codes(tokenizer, data, s, **kw)[1] for s in SPLITS)
    assert moved != (folder, val_folder)  # the name's bytes are in the key


SPLITS = ("train", "val")


def test_concurrent_extractions_write_one_complete_cache_and_agree(tokenizer, tmp_path):
    """Three runs encode at once (each a little differently); one folder wins, every run
    trains on its codes, and a reader never sees a partial folder."""
    data = DataConfig(source="builtin:shapes", resolution=32)
    cache = tmp_path / "c"
    writers = 3
    barrier = threading.Barrier(writers)

    class Shifted(Counting):
        def __init__(self, tok, shift):
            super().__init__(tok)
            self.shift = shift

        def encode(self, x):
            barrier.wait(timeout=30)  # every writer finds the cache cold
            return (self.tok.encode(x) + self.shift) % 256

    results, problems, done = {}, [], threading.Event()

    def write(shift):
        try:
            results[shift] = extract_codes(
                Shifted(tokenizer, shift),
                data,
                "train",
                max_images=8,
                cache_dir=cache,
                progress=False,
            )
        except Exception as e:  # noqa: BLE001 (reported below)
            problems.append(repr(e))

    def read():
        while not done.is_set():
            for folder in cache.glob("[!.]*"):
                try:
                    load_code_set(folder)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"reader: {e!r}")

    threads = [threading.Thread(target=write, args=(s,)) for s in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    reader.join(60)
    assert not problems
    (first, folder), *rest = results.values()
    assert all(f == folder and np.array_equal(c.codes, first.codes) for c, f in rest)
    assert np.array_equal(load_code_set(folder).codes, first.codes)
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temporary folders left
