"""``twostage gan``: train any pixel-GAN preset, sample grids, interpolations, attention maps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from gan_direct.config import GANConfig
from gan_direct.plots import scatter_plot
from gan_direct.sample import class_labels, generate_from, load_generator
from gan_direct.train import train
from shared.cli import (
    action_parser,
    add_device,
    add_output_folder,
    add_train_action,
    base_config,
    pick_device,
    run_actions,
    training_overrides,
)
from shared.config import build_config
from shared.data import DataError, class_id
from shared.images import save_grid, save_png
from shared.limits import check_limit
from shared.options import (
    fraction,
    integer,
    positive_float,
    positive_int,
    sample_count,
    seed,
)
from shared.outputs import OutputFolder

MAX_ROWS = 8  # samples shown in the attention-map and interpolation images


def build_parser(prog: str = "twostage gan") -> argparse.ArgumentParser:
    p, sub = action_parser(prog, __doc__.splitlines()[0])
    add_train_action(sub, "train a GAN preset (twostage info lists them) on --data")

    s = sub.add_parser("sample", help="sample images, attention maps and interpolations")
    s.add_argument(
        "--checkpoint",
        required=True,
        help="run or model folder, or a shipped model (fmnist-dcgan, fmnist-adatgan-pixel)",
    )
    s.add_argument("--num", type=sample_count, default=64, help="number of samples")
    s.add_argument(
        "--truncation",
        type=positive_float,
        help="T > 0: noise from the normal truncated to +-T (smaller = safer samples)",
    )
    s.add_argument(
        "--psi",
        type=fraction,
        help="truncation in W for generators with a mapping network (stylegan): "
        "w = w_avg + psi (w - w_avg); 0 <= psi <= 1",
    )
    s.add_argument(
        "--class",
        dest="label",
        metavar="NAME|K",
        help="class-conditional generators: every sample of this class, a name stored with the "
        "generator or its id K (default: cycle the classes)",
    )
    s.add_argument(
        "--attention-maps",
        action="store_true",
        help="AdatGAN: also write the additive attention maps at 8x8, 16x16 and 32x32",
    )
    s.add_argument(
        "--interpolate",
        type=integer(2, limit="samples"),
        metavar="STEPS",
        help="also write spherical interpolations between pairs of noises, STEPS images a row",
    )
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--batch-size", type=positive_int, default=64)
    add_device(s)
    add_output_folder(s, "the PNGs (grid.png, sample_0000.png, ...)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "twostage gan") -> int:
    return run_actions(build_parser, {"train": cmd_train, "sample": cmd_sample}, argv, prog)


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    cfg = build_config(
        GANConfig, base_config(args, "gan_direct"), overrides=training_overrides(args)
    )
    out = train(cfg, args.output, resume=args.resume, overwrite=args.overwrite)
    if PartialState().is_main_process:
        print(f"run written to {out} (exported generator in {out / 'model' / 'generator'})")
    return 0


def truncated_noise(
    n: int, dim: int, truncation: float | None, generator: torch.Generator
) -> torch.Tensor:
    """``(n, dim)`` standard normal noise; with ``truncation`` T > 0 each component is drawn
    from the normal truncated to [-T, T] (BigGAN's truncation trick) by inverting its CDF on
    a uniform number in [Phi(-T), Phi(T)]: one draw per component, so it ends for any T (a
    tiny T gives noise near 0) instead of redrawing until a sample lands inside."""
    if truncation is None:
        return torch.randn(n, dim, generator=generator)
    if not truncation > 0:
        raise ValueError(f"truncation must be positive, got {truncation}")
    bound = torch.special.ndtr(torch.tensor(float(truncation), dtype=torch.float64))
    u = torch.rand(n, dim, generator=generator, dtype=torch.float64)
    z = torch.special.ndtri((1 - bound) + u * (2 * bound - 1))
    return z.float().clamp(-truncation, truncation)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows ``a`` and ``b`` (B, D) at fractions ``t`` (T,) ->
    (B, T, D); linear where the two are (nearly) parallel."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1).clamp(-1, 1))[:, None, None]  # (B, 1, 1)
    t = t[None, :, None]
    a, b = a[:, None], b[:, None]
    linear = (1 - t) * a + t * b
    so = torch.sin(omega)
    spherical = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so.clamp_min(1e-6)
    return torch.where(so > 1e-4, spherical, linear)


def heat_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Attention maps (B, heads, g, g) -> (B, heads, 3, size, size) images in [-1, 1]: each map
    scaled to its own [min, max], upsampled (nearest) and coloured with viridis."""
    from matplotlib import colormaps

    flat = maps.float().flatten(2)
    low, high = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    unit = ((flat - low) / (high - low).clamp_min(1e-12)).view_as(maps)
    unit = torch.nn.functional.interpolate(unit, size=(size, size), mode="nearest")
    rgb = torch.from_numpy(colormaps["viridis"](unit.cpu().numpy())[..., :3]).float()
    return rgb.permute(0, 1, 4, 2, 3) * 2 - 1


def _check_sample_args(args: argparse.Namespace, gen) -> None:
    if args.interpolate:
        rows = min(args.num, MAX_ROWS)
        check_limit(
            "samples", rows * args.interpolate, f"--interpolate {args.interpolate} x {rows} rows"
        )
    if args.psi is not None and not gen.psi_truncation:
        raise DataError("--psi needs a generator with a mapping network (stylegan)")
    if args.label is not None and not gen.num_classes:
        raise DataError("--class needs a class-conditional generator (conditional: true)")
    if args.label is not None:
        args.label = class_id(args.label, gen.class_names, gen.num_classes)
    if args.interpolate and gen.points:
        raise DataError("--interpolate makes image rows; this generator makes 2-D points")
    if args.attention_maps and not gen.attention_grids:
        raise DataError("--attention-maps needs an AdatGAN generator")


def cmd_sample(args: argparse.Namespace) -> int:
    folder = OutputFolder(args.output, args.overwrite)
    gen = load_generator(args.checkpoint)
    _check_sample_args(args, gen)
    device = pick_device(args.device)
    gen = gen.to(device)
    points = gen.points
    out = folder.path
    if points:
        targets = [out / "samples.png", out / "samples.csv"]
    else:
        targets = [out / "grid.png"] + [out / f"sample_{i:04d}.png" for i in range(args.num)]
    if args.attention_maps:
        targets += [out / f"attention_{g}x{g}.png" for g in gen.attention_grids]
    if args.interpolate:
        targets.append(out / "interpolation.png")
    folder.check(targets)
    rng = torch.Generator().manual_seed(args.seed)
    z = truncated_noise(args.num, gen.z_dim, args.truncation, rng)
    if args.label is not None:
        labels = torch.full((args.num,), args.label)
    else:
        labels = class_labels(args.num, gen.num_classes)
    kwargs = {"psi": args.psi} if args.psi is not None else {}

    def run(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return generate_from(gen, z, device, args.batch_size, y, **kwargs).cpu()

    with torch.no_grad():
        images = run(z, labels)
        folder.claim(targets)
        if points:
            scatter_plot(images, None, out / "samples.png", f"{args.num} samples")
            lines = "".join(f"{a:.6g},{b:.6g}\n" for a, b in images.tolist())
            (out / "samples.csv").write_text("x,y\n" + lines)
        else:
            for i, image in enumerate(images):
                save_png(image, out / f"sample_{i:04d}.png")
            save_grid(images, out / "grid.png")
        rows = min(args.num, MAX_ROWS)
        if args.attention_maps:
            shown, maps = gen(z[:rows].to(device), return_maps=True)
            shown = shown.clamp(-1, 1).cpu().expand(-1, 3, -1, -1)  # gray -> RGB, beside colour
            for grid, m in zip(gen.attention_grids, maps, strict=True):
                heat = heat_maps(m, shown.shape[-1])  # (rows, heads, 3, H, W)
                tiles = torch.cat([shown[:, None], heat], 1)  # sample, then one map per head
                save_grid(tiles.flatten(0, 1), out / f"attention_{grid}x{grid}.png", tiles.shape[1])
        if args.interpolate:
            ends = truncated_noise(2 * rows, gen.z_dim, args.truncation, rng)
            path = slerp(ends[:rows], ends[rows:], torch.linspace(0, 1, args.interpolate))
            y = None if labels is None else labels[:rows].repeat_interleave(args.interpolate)
            frames = run(path.flatten(0, 1), y)
            save_grid(frames, out / "interpolation.png", args.interpolate)
    print(f"wrote {args.num} samples to {out}")
    return 0
