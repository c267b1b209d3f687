"""The pictures of a GAN run besides its sample grids: scatter plots of 2-D samples, their
animation ``training.gif`` and the gradient norms ``grad_norms.png``."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.run import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_plot(
    points: torch.Tensor, data: torch.Tensor | None, path: Path, title: str = ""
) -> Path:
    """A PNG of generated 2-D ``points`` (N, 2) in orange over ``data`` in grey, fixed axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    if data is not None:
        ax.scatter(*data.T, s=2, c="0.7", label="data")
    ax.scatter(*points.T, s=2, c="tab:orange", label="generated")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title)
    ax.legend(loc="upper right", markerscale=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def animate(frames: list[Path], run_dir: Path, seconds_per_frame: float = 0.4) -> Path | None:
    """``training.gif`` of the scatter frames, looping."""
    if not frames:
        return None
    import imageio.v2 as imageio

    path = Path(run_dir) / "training.gif"
    imageio.mimsave(path, [imageio.imread(f) for f in frames], duration=seconds_per_frame, loop=0)
    return path


def plot_grad_norms(run_dir: Path) -> Path | None:
    """``grad_norms.png``: the logged global gradient norms of G and D against the step."""
    records = [r for r in read_metrics(run_dir) if "grad_norm_g" in r]
    if not records:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("grad_norm_g", "G"), ("grad_norm_d", "D")):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points, strict=True), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient L2 norm")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path = Path(run_dir) / "grad_norms.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
