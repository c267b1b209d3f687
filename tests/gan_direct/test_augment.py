import pytest
import torch

from gan_direct.augment import AUGMENTATIONS, DiffAugment, diff_augment, parse_policy, translate


def _images(b=4, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    # strictly non-zero pixels, so zero-filled regions are recognisable
    return (torch.rand(b, c, h, w, generator=g) * 0.9 + 0.1) * torch.where(
        torch.rand(b, c, h, w, generator=g) < 0.5, -1.0, 1.0
    )


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", AUGMENTATIONS)
def test_each_policy_changes_images_and_keeps_the_shape(policy):
    x = _images()
    y = diff_augment(x, policy, generator=_gen())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x)
    # per-sample randomness: the same image in every slot is augmented differently
    same = diff_augment(x[:1].expand(8, -1, -1, -1), policy, generator=_gen())
    assert not all(torch.equal(same[0], s) for s in same[1:])


def test_translation_and_cutout_stay_in_range_and_color_stays_bounded():
    x = _images()
    for policy in ("translation", "cutout", "translation,cutout"):
        y = diff_augment(x, policy, generator=_gen())
        assert y.min() >= x.min() and y.max() <= x.max()
    # brightness +-0.5, saturation x<=2, contrast x<=1.5 keep |x| <= 1 within a small bound
    y = diff_augment(x, "color", generator=_gen())
    assert torch.isfinite(y).all() and y.abs().max() < 10


def test_translate_by_a_known_shift_zero_fills():
    x = torch.arange(1, 17, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(2, 1, 1, 1)
    y = translate(x, torch.tensor([[1, -2], [0, 0]]))
    expected = torch.tensor(
        [[0, 0, 0, 0], [3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0]], dtype=torch.float32
    )
    torch.testing.assert_close(y[0, 0], expected)
    torch.testing.assert_close(y[1], x[1])


def test_seeded_translation_is_reproducible_and_a_shift_within_one_eighth():
    x = _images(b=6, h=32, w=32)
    y = diff_augment(x, "translation", generator=_gen(3))
    torch.testing.assert_close(diff_augment(x, "translation", generator=_gen(3)), y)
    assert not torch.equal(diff_augment(x, "translation", generator=_gen(4)), y)
    shifts = []
    for b in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if torch.equal(translate(x[b : b + 1], torch.tensor([[dy, dx]])), y[b : b + 1])
        ]
        assert len(found) == 1  # each sample is exactly one shift of at most 32 / 8 pixels
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_cutout_zeroes_one_square_of_at_most_half_size():
    x = _images(b=8, h=16, w=16)
    y = diff_augment(x, "cutout", generator=_gen(5))
    for b in range(len(x)):
        zero = (y[b] == 0).all(0)
        assert zero.any()
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        h, w = len(rows), len(cols)
        assert h <= 8 and w <= 8 and int(zero.sum()) == h * w  # a filled rectangle
        assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
        torch.testing.assert_close(y[b][:, ~zero], x[b][:, ~zero])


def test_gradients_pass_through_every_policy():
    x = _images().requires_grad_(True)
    y = diff_augment(x, "color,translation,cutout", generator=_gen())
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_policy_parsing_and_errors():
    assert parse_policy(" color, translation ") == ("color", "translation")
    assert parse_policy("") == ()
    x = _images()
    assert torch.equal(diff_augment(x, ""), x)
    assert "cutout" in repr(DiffAugment("cutout"))
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'flip'; choose from"):
        DiffAugment("color,flip")
    with pytest.raises(ValueError, match="'colour'"):
        diff_augment(x, "colour")


def test_module_with_generator_matches_function():
    x = _images()
    aug = DiffAugment("color,translation")
    torch.testing.assert_close(aug(x, _gen(7)), diff_augment(x, "color,translation", _gen(7)))
