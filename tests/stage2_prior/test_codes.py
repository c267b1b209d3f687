"""The code cache (reused, rebuilt when the tokenizer changes) and window crops."""

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import DataConfig, build_config, read_preset
from shared.data import DataError
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.model import VQModel
from stage2_prior.codes import CodeSet, CodeWindows, extract_codes
from stage2_prior.gpt import coord_tokens


@pytest.fixture
def tokenizer():
    cfg = build_config(VQGANConfig, read_preset("vqgan-tiny", "stage1_vqgan"))
    torch.manual_seed(0)
    return VQModel.from_config(cfg.model).eval()


class Counting:
    """Counts the images a tokenizer encodes."""

    def __init__(self, tok):
        self.tok, self.images = tok, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode(self, x):
        self.images += len(x)
        return self.tok.encode(x)


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
    val, _ = extract_codes(tokenizer, data, "val", **kw)
    assert len(val) == 256  # all of the val split, never mirrored


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
