"""Writing scores out: CSV, JSON, and a picture of each query with its top training images.

Every writer reads the score matrix in row blocks (memory-mapped matrices from
``score(..., out=...)`` are never loaded whole unless the full matrix is asked for), writes to a
temporary file in the destination directory and renames it into place. Scores follow the
convention of :mod:`geninf.scoring.api`: positive = helpful, negative = harmful.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._atomic import atomic_write
from ..errors import InputError
from .api import SIGN_CONVENTION
from .ranking import top_k

__all__ = ["plot_query_top_examples", "write_scores_csv", "write_scores_json"]

PathLike = str | os.PathLike[str]
_BLOCK = 256


def write_scores_csv(
    path: PathLike,
    scores: Tensor | np.ndarray,
    *,
    k: int | None = None,
    query_ids: Sequence[Any] | None = None,
    train_ids: Sequence[Any] | None = None,
) -> Path:
    """Write scores as CSV.

    With ``k=None`` the whole matrix, one row per query: ``query,<train id>,...``. With ``k`` the
    long top-k table ``query,kind,rank,train,score`` (``kind`` is ``helpful`` or ``harmful``,
    ``rank`` from 1), which stays small for large training sets.

    Args:
        path: the ``.csv`` file to write.
        scores: ``[n_query, n_train]``.
        k: top-k per query and kind, or None for the full matrix.
        query_ids, train_ids: labels of the rows and columns (default: their indices).
    """
    scores = _matrix(scores)
    qids, tids = (
        _ids(query_ids, scores.shape[0], "query_ids"),
        _ids(train_ids, scores.shape[1], "train_ids"),
    )

    def write(fh: Any) -> None:
        w = csv.writer(fh)
        if k is None:
            w.writerow(["query", *tids])
            for lo, rows in _blocks(scores):
                for r, row in enumerate(rows.tolist()):
                    w.writerow([qids[lo + r], *(_fmt(v) for v in row)])
            return
        w.writerow(["query", "kind", "rank", "train", "score"])
        for q, kind, rank, i, s in _top_rows(scores, k):
            w.writerow([qids[q], kind, rank, tids[i], _fmt(s)])

    return _atomic_text(Path(path), write)


def write_scores_json(
    path: PathLike,
    scores: Tensor | np.ndarray,
    *,
    k: int | None = 10,
    query_ids: Sequence[Any] | None = None,
    train_ids: Sequence[Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write scores as JSON: the sign convention, ``metadata``, and per query its ``k`` most
    helpful and harmful training examples (``{"train": id, "score": s}`` lists); with
    ``k=None`` the full matrix under ``"scores"`` instead."""
    scores = _matrix(scores)
    qids = _ids(query_ids, scores.shape[0], "query_ids")
    tids = _ids(train_ids, scores.shape[1], "train_ids")
    doc: dict[str, Any] = {
        "convention": SIGN_CONVENTION,
        "num_queries": scores.shape[0],
        "num_train": scores.shape[1],
        "k": k,
        "metadata": metadata or {},
    }
    if k is None:
        doc["query_ids"], doc["train_ids"] = qids, tids
        doc["scores"] = [row for _, rows in _blocks(scores) for row in rows.tolist()]
    else:
        queries: list[dict[str, Any]] = [{"query": q, "helpful": [], "harmful": []} for q in qids]
        for q, kind, _, i, s in _top_rows(scores, k):
            queries[q][kind].append({"train": tids[i], "score": s})
        doc["queries"] = queries
    return _atomic_text(Path(path), lambda fh: json.dump(doc, fh, indent=1, default=str))


def plot_query_top_examples(
    path: PathLike,
    query_images: Tensor,
    train_images: Tensor,
    scores: Tensor | np.ndarray,
    k: int = 5,
    *,
    image_shape: Sequence[int] | None = None,
    query_labels: Sequence[Any] | Tensor | None = None,
    train_labels: Sequence[Any] | Tensor | None = None,
    class_names: Sequence[str] | None = None,
    max_queries: int = 8,
    dpi: int = 100,
) -> Path:
    """Save a PNG: one row per query — the query image, then its ``k`` most helpful (green
    titles, largest score first) and ``k`` most harmful (red, most negative first) training
    images with their scores.

    Args:
        path: the ``.png`` file.
        query_images, train_images: ``[N, C, H, W]``, ``[N, H, W]`` or flattened ``[N, D]``
            (give ``image_shape``, or D must be a square for one-channel images).
        scores: ``[n_query, n_train]``, rows aligned with ``query_images``.
        k: training images per kind.
        image_shape: ``(H, W)`` or ``(C, H, W)`` of flattened images.
        query_labels, train_labels: labels printed under the images.
        class_names: names of the labels.
        max_queries: plot at most this many queries (the first ones).
        dpi: resolution.

    Needs matplotlib (``pip install matplotlib``); uses the Agg canvas only, so it never opens a
    window and leaves pyplot's global state alone.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    scores = _matrix(scores)
    n_q = _plotted_queries(scores, query_images, train_images, max_queries)
    best = top_k(scores[:n_q], k)
    fig = Figure(figsize=(1.3 * (2 * k + 1), 1.6 * n_q))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_q, 2 * k + 1, squeeze=False)
    for q in range(n_q):
        _show(axes[q][0], _image(query_images, q, image_shape))
        axes[q][0].set_title(f"query {q}\n{_label(query_labels, q, class_names)}", fontsize=8)
        for j in range(k):
            for col, kind, idx, val, color in (
                (1 + j, "+", best.helpful, best.helpful_scores, "tab:green"),
                (1 + k + j, "", best.harmful, best.harmful_scores, "tab:red"),
            ):
                i = int(idx[q, j])
                _show(axes[q][col], _image(train_images, i, image_shape))
                text = f"{kind}{float(val[q, j]):.2g}\n#{i} {_label(train_labels, i, class_names)}"
                axes[q][col].set_title(text, fontsize=7, color=color)
    fig.suptitle(
        f"queries, top-{k} helpful (green) and harmful (red) training examples", fontsize=9
    )
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


# ---------------------------------------------------------------------------------- helpers
def _matplotlib() -> tuple[Any, Any]:
    """matplotlib's ``Figure`` and Agg canvas classes (an ImportError says how to install it)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_query_top_examples needs matplotlib: pip install matplotlib"
        ) from None
    return Figure, FigureCanvasAgg


def _plotted_queries(scores: Tensor, query_images: Any, train_images: Any, max_queries: int) -> int:
    """How many queries :func:`plot_query_top_examples` draws; refuses images that do not fit."""
    n_q = min(int(max_queries), scores.shape[0], len(query_images))
    if n_q < 1:
        raise InputError("plot_query_top_examples needs at least one query and max_queries >= 1")
    if len(train_images) != scores.shape[1]:
        raise InputError(
            f"scores have {scores.shape[1]} columns but there are {len(train_images)} training "
            "images; pass the images of the scored training examples, in the same order"
        )
    return n_q


def _label(labels: Any, i: int, class_names: Sequence[str] | None) -> str:
    """The caption of image ``i``: its label, or the label's class name ("" without labels)."""
    if labels is None:
        return ""
    v = labels[i]
    v = int(v) if isinstance(v, Tensor | np.integer) else v
    return str(class_names[v]) if class_names is not None else str(v)


def _matrix(scores: Tensor | np.ndarray) -> Tensor:
    scores = torch.as_tensor(scores)
    if scores.dim() != 2 or not scores.is_floating_point():
        raise InputError(
            f"scores must be a [n_query, n_train] float matrix, got shape {tuple(scores.shape)} "
            f"({scores.dtype})"
        )
    return scores


def _ids(ids: Sequence[Any] | None, n: int, name: str) -> list[Any]:
    if ids is None:
        return list(range(n))
    ids = [int(v) if isinstance(v, Tensor | np.integer) else v for v in ids]
    if len(ids) != n:
        raise InputError(f"{name} has {len(ids)} entries for {n} rows/columns of scores")
    return ids


def _blocks(scores: Tensor):
    for lo in range(0, scores.shape[0], _BLOCK):
        yield lo, scores[lo : lo + _BLOCK].detach().cpu().double()


def _top_rows(scores: Tensor, k: int):
    """Yield ``(query, kind, rank, train index, score)`` for the top-k of every row."""
    for lo in range(0, scores.shape[0], _BLOCK):
        best = top_k(scores[lo : lo + _BLOCK], k)
        for r in range(best.helpful.shape[0]):
            for kind, idx, val in (
                ("helpful", best.helpful, best.helpful_scores),
                ("harmful", best.harmful, best.harmful_scores),
            ):
                for rank in range(k):
                    yield lo + r, kind, rank + 1, int(idx[r, rank]), float(val[r, rank])


def _fmt(v: float) -> str:
    return f"{v:.9g}"


def _atomic_text(path: Path, write: Callable[[Any], None]) -> Path:
    """Write a text file through ``write(file object)``, atomically."""

    def fill(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            write(fh)

    return atomic_write(path, fill)


def _image(images: Any, i: int, shape: Sequence[int] | None) -> np.ndarray:
    x = torch.as_tensor(images[i]).detach().cpu().float()
    if shape is not None:
        x = x.reshape(tuple(int(s) for s in shape))
    elif x.dim() == 1:
        side = math.isqrt(x.numel())
        if side * side != x.numel():
            raise InputError(
                f"cannot show a flat image of {x.numel()} values; pass image_shape=(H, W) or "
                "(C, H, W)"
            )
        x = x.reshape(side, side)
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    if x.dim() not in (2, 3):
        raise InputError(f"an image must be [H, W] or [C, H, W], got shape {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo if hi > lo else 1.0)).numpy()


def _show(ax: Any, img: np.ndarray) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
