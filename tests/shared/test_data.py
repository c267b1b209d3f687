import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from shared import data
from shared.config import DataConfig
from shared.data import (
    DataError,
    build_dataset,
    fashion_mnist,
    list_images,
    load_image,
    load_photo,
    render_shapes,
)


def cfg(source, **kw) -> DataConfig:
    kw.setdefault("resolution", 32)
    return DataConfig(source=str(source), **kw)


def save(path: Path, array_or_image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = array_or_image
    im = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
    im.save(path, **kw)
    return path


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def single(tmp_path: Path, name: str, image, **kw) -> torch.Tensor:
    """The image tensor of a one-file folder dataset (centre crop, no flip)."""
    save(tmp_path / "one" / name, image)
    c = cfg(tmp_path / "one", crop="center", flip=False, **kw)
    return build_dataset(c, "all")[0]["image"]


def check_item(item: dict, channels: int, res: int) -> None:
    image = item["image"]
    assert image.shape == (channels, res, res) and image.dtype == torch.float32
    assert image.min() >= -1.0 and image.max() <= 1.0
    assert item["label"].shape == () and item["label"].dtype == torch.long


# builtin:shapes


def test_shapes_items_and_masks():
    ds = build_dataset(cfg("builtin:shapes", resolution=48))
    assert (len(ds), ds.num_classes, ds.num_mask_classes) == (10000, 4, 5)
    assert ds.class_names == ["circle", "square", "triangle", "cross"]
    labels = set()
    for i in range(24):
        item = ds[i]
        check_item(item, 3, 48)
        label = int(item["label"])
        labels.add(label)
        assert item["mask"].shape == (48, 48) and item["mask"].dtype == torch.long
        assert set(item["mask"].unique().tolist()) == {0, label + 1}
    assert labels == {0, 1, 2, 3}


def test_shapes_lengths_splits_and_determinism():
    train, val = (build_dataset(cfg("builtin:shapes"), s) for s in ("train", "val"))
    everything = build_dataset(cfg("builtin:shapes", flip=False), "all")
    assert (len(train), len(val), len(everything)) == (10000, 256, 10256)
    assert torch.equal(everything[10000]["image"], val[0]["image"])
    for i in range(4):
        assert not torch.equal(train[i]["image"], val[i]["image"])
    again = build_dataset(cfg("builtin:shapes"), "train")
    assert torch.equal(train[3]["image"], again[3]["image"])
    assert torch.equal(train[3]["image"], train[(3, 0)]["image"])
    epochs = [train[(i, e)]["image"] for i in range(8) for e in range(2)]
    assert any(not torch.equal(a, b) for a, b in zip(epochs[::2], epochs[1::2], strict=True))
    flipped = [torch.equal(train[(i, 1)]["image"], train[i]["image"].flip(-1)) for i in range(8)]
    assert any(flipped)
    assert all(torch.equal(val[(i, 0)]["image"], val[(i, 5)]["image"]) for i in range(4))


def test_shapes_gray_and_resolution():
    ds = build_dataset(cfg("builtin:shapes", channels=1, resolution=20))
    check_item(ds[0], 1, 20)


def test_render_shapes_is_valid():
    image, mask, label = render_shapes(np.random.default_rng(0), 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert mask.shape == (64, 64) and mask.dtype == np.uint8 and 0 <= label < 4


def test_dataloader_workers_match_direct_access():
    ds = build_dataset(cfg("builtin:shapes", resolution=16), seed=3)
    keys = [(i, 2) for i in range(8)]
    loader = DataLoader(ds, batch_size=4, sampler=keys, num_workers=2)
    batches = torch.cat([b["image"] for b in loader])
    assert torch.equal(batches, torch.stack([ds[k]["image"] for k in keys]))


# builtin:fashion-mnist and builtin:photos


@pytest.mark.skipif(
    not (data.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist():
    val = build_dataset(cfg("builtin:fashion-mnist", resolution=28, channels=1), "val")
    assert (len(val), val.num_classes, val.num_mask_classes) == (10000, 10, 0)
    assert val.class_names[0] == "T-shirt/top" and val.class_names[9] == "Ankle boot"
    item = val[0]
    check_item(item, 1, 28)
    raw = torch.from_numpy(val.images[0].astype(np.float32)) / 127.5 - 1
    assert torch.equal(item["image"][0], raw) and 0 <= int(item["label"]) < 10
    check_item(build_dataset(cfg("builtin:fashion-mnist"), "val")[5], 3, 32)
    assert len(build_dataset(cfg("builtin:fashion-mnist"), "train")) == 60000


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_env_root(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 5), ("t10k", 3)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.full((n, 28, 28), 255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n))
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path))
    ds = build_dataset(cfg("builtin:fashion-mnist"), "all")
    assert len(ds) == 8 and int(ds[6]["label"]) == 1
    assert torch.allclose(ds[6]["image"], torch.ones(3, 32, 32))


def test_photos():
    assert sorted(data.PHOTO_NAMES) == data.PHOTO_NAMES and len(data.PHOTO_NAMES) >= 10
    for name in ("chelsea", "camera", "china"):
        photo = load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    train, val = (build_dataset(cfg("builtin:photos"), s) for s in ("train", "val"))
    everything = build_dataset(cfg("builtin:photos", channels=1), "all")
    assert len(val) == 2 and len(train) + len(val) == len(everything) == len(data.PHOTO_NAMES)
    assert (train.num_classes, train.num_mask_classes) == (0, 0)
    check_item(val[0], 3, 32)
    assert int(val[0]["label"]) == -1
    check_item(everything[3], 1, 32)


def test_builtin_and_folder_errors(tmp_path):
    with pytest.raises(DataError, match="builtin:shapes"):
        build_dataset(cfg("builtin:nope"))
    with pytest.raises(DataError, match="not found"):
        build_dataset(cfg(tmp_path / "missing"))
    with pytest.raises(DataError, match="masks"):
        build_dataset(cfg("builtin:shapes", masks=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        build_dataset(cfg(tmp_path / "empty"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no images"):
        build_dataset(cfg(tmp_path / "text"))
    with pytest.raises(DataError, match="split"):
        build_dataset(cfg("builtin:shapes"), "test")


# folders: file formats


def test_grayscale_palette_and_tiny(tmp_path):
    gray = single(tmp_path / "g", "g.png", np.full((8, 8), 100, np.uint8))
    assert torch.allclose(gray, torch.full((3, 32, 32), 100 / 127.5 - 1), atol=1e-6)
    pal = Image.new("P", (6, 6))
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image = single(tmp_path / "p", "p.png", pal)
    assert torch.allclose(image[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    tiny = single(tmp_path / "t", "tiny.png", noise(3, 5))
    assert tiny.shape == (3, 32, 32)
    gray1 = single(tmp_path / "c", "c.jpg", noise(40, 30), channels=1)
    assert gray1.shape == (1, 32, 32)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :, 2] = 255
    rgba[:, 16:, 3] = 255
    image = single(tmp_path, "a.png", Image.fromarray(rgba, "RGBA"))
    assert torch.allclose(image[:, :, :14], torch.ones(3, 32, 14))
    assert torch.allclose(image[:, :, 18:], torch.tensor([-1.0, -1.0, 1.0])[:, None, None])


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    bright = single(tmp_path / "a", "a.png", np.full((8, 8), 65535, np.uint16))
    assert torch.allclose(bright, torch.ones(3, 32, 32))
    mid = single(tmp_path / "b", "b.png", np.full((8, 8), 128 * 257, np.uint16))
    assert torch.allclose(mid, torch.full((3, 32, 32), 128 / 127.5 - 1), atol=1e-6)
    assert Image.open(tmp_path / "a" / "one" / "a.png").mode.startswith("I")


def test_exif_orientation(tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 20:] = 255
    im = Image.fromarray(wide)
    exif = im.getexif()
    exif[0x0112] = 6
    path = save(tmp_path / "one" / "r.jpg", im, exif=exif.tobytes(), quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40) and upright.mode == "RGB"
    image = build_dataset(cfg(tmp_path / "one", resolution=16, crop="center", flip=False))
    top, bottom = image[0]["image"][:, 1].mean(), image[0]["image"][:, -2].mean()
    assert top < -0.9 and bottom > 0.9


def test_load_image_and_list_images(tmp_path):
    save(tmp_path / "b" / "x.PNG", noise(4, 4))
    save(tmp_path / "a.JPEG", noise(4, 4))
    (tmp_path / "c.txt").write_text("not an image")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.JPEG",
        "b/x.PNG",
    ]
    assert load_image(tmp_path / "b" / "x.PNG", channels=1).mode == "L"
    with pytest.raises(DataError, match="c.txt") as e:
        load_image(tmp_path / "c.txt")
    assert "\n" not in str(e.value)


# folders: unreadable files


def make_messy_folder(root: Path) -> None:
    for i in range(3):
        save(root / f"good{i}.png", noise(20, 30, seed=i))
    (root / "a_zero.png").write_bytes(b"")
    (root / "b_fake.png").write_text("definitely not a png")
    (root / "c_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "readme.txt").write_text("ignored")


def test_unreadable_files_skipped_with_one_warning(tmp_path):
    make_messy_folder(tmp_path)
    with pytest.warns(UserWarning) as record:
        ds = build_dataset(cfg(tmp_path, val_fraction=0.0), "all")
    messages = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(messages) == 1 and "skipped 3 of 6" in messages[0]
    assert "a_zero.png" in messages[0] and "c_corrupt.jpg" in messages[0]
    assert len(ds) == 3 and ds.num_classes == 0
    for i in range(3):
        check_item(ds[i], 3, 32)
        assert int(ds[i]["label"]) == -1


def test_strict_raises_on_first_bad_file(tmp_path):
    make_messy_folder(tmp_path)
    with pytest.raises(DataError, match="a_zero.png"):
        build_dataset(cfg(tmp_path, strict=True))


def test_only_bad_files_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no readable image"):
        build_dataset(cfg(tmp_path))


def test_truncated_file_falls_back_deterministically(tmp_path):
    save(tmp_path / "a.png", noise(64, 64, seed=1))
    save(tmp_path / "b.png", noise(64, 64, seed=2))
    full = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(full[: len(full) // 2])
    ds = build_dataset(cfg(tmp_path, crop="center", flip=False), "all")
    assert len(ds) == 2
    with pytest.warns(UserWarning, match="a.png"):
        first = ds[0]["image"]
    assert torch.equal(first, ds[1]["image"])
    with pytest.raises(DataError, match="a.png.*data.strict=false"):
        build_dataset(cfg(tmp_path, strict=True), "all")  # at the scan, before any item


# folders: labels, masks, splits


def test_class_subfolders_give_labels(tmp_path):
    for name, folder in (("1.png", "dog"), ("2.png", "cat"), ("3.jpg", "cat")):
        save(tmp_path / "c" / folder / name, noise(8, 8))
    ds = build_dataset(cfg(tmp_path / "c"), "all")
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert [int(ds[i]["label"]) for i in range(3)] == [0, 0, 1]
    save(tmp_path / "c" / "loose.png", noise(8, 8))
    mixed = build_dataset(cfg(tmp_path / "c"), "all")
    assert mixed.num_classes == 0 and int(mixed[0]["label"]) == -1
    save(tmp_path / "d" / "only" / "x.png", noise(8, 8))
    assert build_dataset(cfg(tmp_path / "d"), "all").num_classes == 0


def test_masks_stay_aligned_under_crop_and_flip(tmp_path):
    image = np.zeros((16, 24, 3), np.uint8)
    image[..., 1] = 255
    ids = np.zeros((16, 24), np.uint8)
    ids[:, :5], ids[:4, 5:9] = 1, 2
    image[ids == 1] = (255, 0, 0)
    image[ids == 2] = (0, 0, 255)
    save(tmp_path / "img" / "a.png", image)
    save(tmp_path / "mask" / "a.png", ids)
    save(tmp_path / "img" / "nomask.png", image)
    c = cfg(tmp_path / "img", masks=str(tmp_path / "mask"), resolution=16, val_fraction=0.0)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = build_dataset(c, "all")
    assert len(ds) == 1 and ds.num_mask_classes == 3
    seen = set()
    for epoch in range(12):
        item = ds[(0, epoch)]
        mask, pix = item["mask"], item["image"]
        assert mask.shape == (16, 16) and mask.dtype == torch.long
        colour = torch.where(pix[0] > 0, 1, torch.where(pix[2] > 0, 2, 0))
        assert torch.equal(mask, colour)
        seen.add((bool(mask[0, 0] == 1), bool(mask[0, -1] == 1), bool(mask.eq(1).any())))
    assert len(seen) >= 3


def test_palette_masks_resized_nearest(tmp_path):
    image = noise(40, 60)
    ids = np.zeros((40, 60), np.uint8)
    ids[10:30, 10:50] = 7
    mask = Image.frombytes("P", (60, 40), ids.tobytes())
    mask.putpalette([0, 0, 0] * 7 + [250, 250, 250] * 249)
    save(tmp_path / "img" / "sub" / "a.jpg", image)
    save(tmp_path / "mask" / "sub" / "a.png", mask)
    c = cfg(tmp_path / "img", masks=str(tmp_path / "mask"), resolution=20)
    ds = build_dataset(c, "all")
    assert ds.num_mask_classes == 8
    assert set(ds[0]["mask"].unique().tolist()) == {0, 7}


def test_hash_split(tmp_path):
    for i in range(30):
        save(tmp_path / "many" / f"{i:02d}.png", noise(4, 4, seed=i))
    c = cfg(tmp_path / "many", val_fraction=0.3)
    train, val, every = (build_dataset(c, s) for s in ("train", "val", "all"))
    names = [{p[0].name for p in ds.items} for ds in (train, val, every)]
    assert names[0].isdisjoint(names[1]) and names[0] | names[1] == names[2]
    assert 2 <= len(names[1]) <= 20
    assert {p[0].name for p in build_dataset(c, "val").items} == names[1]
    for i in range(2):
        save(tmp_path / "few" / f"{i}.png", noise(4, 4))
    small = cfg(tmp_path / "few", val_fraction=0.001)
    assert len(build_dataset(small, "val")) == 1 and len(build_dataset(small, "train")) == 1
    save(tmp_path / "one" / "x.png", noise(4, 4))
    assert len(build_dataset(cfg(tmp_path / "one"), "val")) == 0


def test_val_split_is_centre_crop_without_flip(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", noise(20, 50, seed=i))
    c = cfg(tmp_path, val_fraction=0.5, resolution=16)
    val = build_dataset(c, "val")
    assert all(torch.equal(val[(0, 0)]["image"], val[(0, e)]["image"]) for e in range(1, 6))
    train = build_dataset(c, "train")
    assert any(not torch.equal(train[(0, 0)]["image"], train[(0, e)]["image"]) for e in range(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset(c, "all")
