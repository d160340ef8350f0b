"""Shared tiny float64 problems and dense references for the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

from geninf.params import ParameterLayout, trainable_parameters

torch.set_default_dtype(torch.float32)


@dataclass
class Problem:
    """A tiny model with data, in float64, and the dense references derived from it."""

    name: str
    model: nn.Module
    loss_fn: Any
    train: tuple[torch.Tensor, torch.Tensor]
    target: tuple[torch.Tensor, torch.Tensor]

    @property
    def layout(self) -> ParameterLayout:
        return ParameterLayout.from_model(self.model)

    def flat_params(self) -> torch.Tensor:
        return self.layout.flatten(trainable_parameters(self.model)).detach()

    def mean_loss(
        self, flat: torch.Tensor, data: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        out = functional_call(self.model, self.layout.unflatten(flat), (data[0],))
        return self.loss_fn(out, data[1])

    def dense_hessian(self, data=None) -> torch.Tensor:
        data = self.train if data is None else data
        return hessian(lambda th: self.mean_loss(th, data))(self.flat_params())

    def dense_gradient(self, data=None) -> torch.Tensor:
        data = self.target if data is None else data
        th = self.flat_params().requires_grad_(True)
        return torch.autograd.grad(self.mean_loss(th, data), th)[0]


def _linreg(seed: int = 0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    w = torch.randn(5, 1, generator=g, dtype=torch.float64)
    y = x @ w + 0.1 * torch.randn(40, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Linear(5, 1).double()
    return Problem("linreg", model, F.mse_loss, (x, y), (x[:6], y[:6]))


def _mlp(seed: int = 0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return Problem("mlp", model, F.cross_entropy, (x, y), (x[:7], y[:7]))


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x))
        h = F.avg_pool2d(h, 2)
        return self.fc(h.flatten(1))


def _cnn(seed: int = 0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (30,), generator=g)
    torch.manual_seed(seed)
    model = TinyCNN().double()
    return Problem("cnn", model, F.cross_entropy, (x, y), (x[:5], y[:5]))


PROBLEMS = {"linreg": _linreg, "mlp": _mlp, "cnn": _cnn}


@pytest.fixture(params=sorted(PROBLEMS))
def problem(request) -> Problem:
    return PROBLEMS[request.param]()


def make_problem(name: str, seed: int = 0) -> Problem:
    return PROBLEMS[name](seed)
