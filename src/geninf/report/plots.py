"""The report's PNG figures, drawn with matplotlib's object API on the Agg canvas.

No window is opened and pyplot's global state is never touched. Every function takes plain data
(numbers, lists, tensors) and a path, writes the PNG atomically and returns the path.

- :func:`plot_accuracy_vs_ratio` — test accuracy vs modification ratio per criterion (paper
  Fig. 3);
- :func:`plot_class_histograms` — predicted labels of the forgotten class's examples for the
  original, edited and retrained models (paper Fig. 5);
- :func:`plot_gradcam` — Grad-CAM maps of a few forgotten and kept images per model (Fig. 4);
- :func:`plot_convergence` — solver residual vs Hessian-vector products;
- :func:`plot_training_curve` — loss and accuracy per epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .rundir import atomic_write

__all__ = [
    "matplotlib_available",
    "plot_accuracy_vs_ratio",
    "plot_class_histograms",
    "plot_convergence",
    "plot_gradcam",
    "plot_training_curve",
]

PathLike = str | os.PathLike[str]
_DPI = 90


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (plots are skipped with a note otherwise)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike) -> Path:
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=_DPI, format="png"))


def plot_accuracy_vs_ratio(
    path: PathLike,
    curves: Mapping[str, Sequence[tuple[float, float]]],
    *,
    references: Mapping[str, float] | None = None,
    ylabel: str = "test accuracy, other classes (%)",
    title: str = "accuracy vs modification ratio",
) -> Path:
    """One line per criterion through ``(ratio, accuracy)`` points (ratio as a fraction, drawn
    in % on a log axis); ``references`` are horizontal lines (original model, retrain, ...)."""
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in curves.items():
        pts = sorted((100.0 * r, a) for r, a in points if a is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    for i, (name, value) in enumerate((references or {}).items()):
        if value is not None and math.isfinite(value):
            ax.axhline(value, linestyle="--", color=f"C{(i + 5) % 10}", label=name, linewidth=1)
    ax.set_xscale("log")
    ticks = sorted({100.0 * r for points in curves.values() for r, _ in points})
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}%" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("modification ratio (of each layer)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_class_histograms(
    path: PathLike,
    histograms: Mapping[str, Mapping[Any, int]],
    *,
    forget_class: int | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "predicted labels",
) -> Path:
    """Grouped bars: for each model (key of ``histograms``), how many examples it predicts as
    each class (``{class: count}``). The forgotten class's tick is marked in red."""
    fig = _figure(7.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    labels = sorted({int(k) for h in histograms.values() for k in h})
    n = max(1, len(histograms))
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (name, hist) in enumerate(histograms.items()):
        counts = [int(hist.get(c, hist.get(str(c), 0))) for c in labels]
        ax.bar(x + (i - (n - 1) / 2) * width, counts, width=width, label=name)
    names = [class_names[c] if class_names else str(c) for c in labels]
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    if forget_class is not None and forget_class in labels:
        ax.get_xticklabels()[labels.index(forget_class)].set_color("red")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _display(image: Tensor) -> np.ndarray:
    """[C, H, W] → an array imshow accepts, scaled to [0, 1]."""
    img = image.detach().float().cpu()
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    if img.shape[0] == 1:
        return img[0].numpy()
    return img[:3].permute(1, 2, 0).numpy()


def plot_gradcam(
    path: PathLike,
    images: Tensor,
    cams: Mapping[str, Tensor],
    *,
    row_labels: Sequence[str],
    predictions: Mapping[str, Sequence[int]] | None = None,
    title: str = "Grad-CAM",
) -> Path:
    """Rows: images; columns: the image, then its Grad-CAM map under each model (key of
    ``cams``, maps ``[N, H, W]`` in [0, 1]) over the image in gray, titled with the prediction."""
    n, cols = images.shape[0], 1 + len(cams)
    fig = _figure(1.7 * cols, 1.75 * n + 0.4)
    axes = fig.subplots(n, cols, squeeze=False)
    for r in range(n):
        shown = _display(images[r])
        gray = shown if shown.ndim == 2 else shown.mean(axis=2)
        axes[r][0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        axes[r][0].set_title(row_labels[r], fontsize=7)
        for c, (name, maps) in enumerate(cams.items(), start=1):
            axes[r][c].imshow(gray, cmap="gray")
            axes[r][c].imshow(maps[r].numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            pred = predictions[name][r] if predictions and name in predictions else None
            label = name if r == 0 else ""
            sub = f"pred {pred}" if pred is not None else ""
            axes[r][c].set_title("\n".join(t for t in (label, sub) if t), fontsize=7)
    for row in axes:
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_convergence(
    path: PathLike,
    series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    title: str = "solver convergence",
) -> Path:
    """Relative residual (log scale) against Hessian-vector products, one line per solve."""
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for name, (products, residuals) in series.items():
        pts = [(p, r) for p, r in zip(products, residuals, strict=False) if r is not None and r > 0]
        if pts:
            ax.plot([p for p, _ in pts], [r for _, r in pts], marker=".", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("Hessian-vector products")
    ax.set_ylabel("relative residual")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_training_curve(path: PathLike, history: Sequence[Mapping[str, float]]) -> Path:
    """Training (and validation) loss and accuracy per epoch."""
    fig = _figure(8.0, 3.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
        for split in ("train", "val"):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker=".", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)" if key == "acc" else "cross-entropy")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
