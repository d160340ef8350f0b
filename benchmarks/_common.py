"""Shared pieces of the benchmark scripts: models and data from geninf.bench, timing, JSON out."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
from _outputs import write_text
from torch import nn

from geninf.bench.datasets import load_dataset
from geninf.bench.models import build_model
from geninf.bench.training import train_model


def versions() -> dict[str, str]:
    import numpy

    import geninf

    return {
        "geninf": geninf.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
    }


def embedded(spec: str, n: int | None = None, *, flatten: bool = False):
    """The training split of an embedded data set (``digits`` or ``mnist5k``), first n examples."""
    splits = load_dataset(spec, seed=0, flatten=flatten)
    x, y = splits.train
    return splits, ((x[:n], y[:n]) if n else (x, y))


def cifar_shaped(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random data shaped like CIFAR-10 (3×32×32, 10 classes); no files needed."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def model(name: str, input_shape, *, width: float = 1.0, seed: int = 0) -> nn.Module:
    return build_model(name, input_shape=input_shape, num_classes=10, width=width, seed=seed)


def trained(name: str, spec: str, epochs: int, *, flatten: bool = False, seed: int = 0):
    splits = load_dataset(spec, seed=seed, flatten=flatten)
    m = build_model(name, input_shape=splits.input_shape, num_classes=splits.num_classes, seed=seed)
    return splits, train_model(m, splits, epochs=epochs, seed=seed, progress=False).model.eval()


def best_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Minimum wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def emit(result: dict[str, Any], path: str | None) -> None:
    """Print ``result`` as JSON and, if ``path`` is given, write it there atomically.

    The file is written under the rule of :mod:`_outputs`: never over a file that the benchmark
    suite did not write.
    """
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        write_text(path, text + "\n")
