"""The problems of ``benchmarks/robustness.py``: data, models and training settings.

Every problem is seeded end to end (data split, label noise or poison, initialization, batch
order). Each returns train / validation / test tensors; the validation split is the only data
beyond the training set that an edit may look at.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from geninf.bench import load_dataset
from geninf.bench.models import build_model
from geninf.data import stratified_sample

Split = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Data:
    train: Split
    validation: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])


@dataclass(frozen=True)
class Problem:
    """One robustness problem.

    Attributes:
        name: the row label.
        task: ``remove`` (a class), ``relabel`` (flipped labels put back) or ``backdoor``
            (triggered, relabelled examples given their true labels back).
        data: ``data(seed) -> Data``.
        model: ``model(input_shape, num_classes, seed) -> nn.Module``.
        epochs, lr, weight_decay, batch_size: the training run (Adam).
        tune: True for the problems the defaults were chosen on.
        hessian_examples: the Hessian sample of the edit (None: all the data).
        target: the class removed (``remove``) or the backdoor label.
    """

    name: str
    task: str
    data: Callable[[int], Data]
    model: Callable[[tuple[int, ...], int, int], nn.Module]
    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    tune: bool = False
    hessian_examples: int | None = None
    target: int = 1
    cost: int = 1  # relative run time, to schedule the longest runs first


# ----------------------------------------------------------------------------------- data
def embedded(spec: str, flatten: bool) -> Callable[[int], Data]:
    def make(seed: int) -> Data:
        s = load_dataset(spec, seed=seed, flatten=flatten, normalize=True)
        return Data(s.train, s.validation, s.test, s.num_classes)

    return make


def _split(x: np.ndarray, y: np.ndarray, seed: int, num_classes: int) -> Data:
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    n = len(yt)
    test = stratified_sample(yt, int(0.15 * n), generator=gen)
    rest = torch.ones(n, dtype=torch.bool)
    rest[test] = False
    pool = torch.nonzero(rest).flatten()
    val = pool[stratified_sample(yt[pool], int(0.15 * n), generator=gen)]
    rest[val] = False
    train = torch.nonzero(rest).flatten()
    mean, std = xt[train].mean(0), xt[train].std(0).clamp_min(1e-6)
    xt = (xt - mean) / std
    return Data((xt[train], yt[train]), (xt[val], yt[val]), (xt[test], yt[test]), num_classes)


def classification(
    classes: int, features: int, informative: int, n: int = 3000, sep: float = 1.0
) -> Callable[[int], Data]:
    def make(seed: int) -> Data:
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=n,
            n_features=features,
            n_informative=informative,
            n_redundant=2,
            n_classes=classes,
            n_clusters_per_class=2,
            class_sep=sep,
            random_state=seed,
        )
        return _split(x, y, seed, classes)

    return make


def quantiles(classes: int, features: int, n: int = 3000) -> Callable[[int], Data]:
    def make(seed: int) -> Data:
        from sklearn.datasets import make_gaussian_quantiles

        x, y = make_gaussian_quantiles(
            n_samples=n, n_features=features, n_classes=classes, random_state=seed
        )
        return _split(x, y, seed, classes)

    return make


MARKERS, VOCAB, LENGTH = 3, 24, 12


def tokens(n: int = 3000) -> Callable[[int], Data]:
    """Token sequences: class = (which of 3 marker tokens appears) × (whether token A comes
    before token B): 6 classes that need both content and order."""

    def make(seed: int) -> Data:
        g = torch.Generator().manual_seed(seed)
        seq = torch.randint(MARKERS + 2, VOCAB, (n, LENGTH), generator=g)
        marker = torch.randint(0, MARKERS, (n,), generator=g)
        order = torch.randint(0, 2, (n,), generator=g)
        for i in range(n):
            pos = torch.randperm(LENGTH, generator=g)[:3]
            a, b = sorted(pos[:2].tolist())
            seq[i, pos[2]] = int(marker[i])
            first, second = (MARKERS, MARKERS + 1) if order[i] else (MARKERS + 1, MARKERS)
            seq[i, a], seq[i, b] = first, second
        y = marker * 2 + order
        return _split_tokens(seq, y, seed)

    return make


def _split_tokens(seq: Tensor, y: Tensor, seed: int) -> Data:
    gen = torch.Generator().manual_seed(seed + 1)
    n = len(y)
    perm = torch.randperm(n, generator=gen)
    a, b = int(0.7 * n), int(0.85 * n)
    tr, va, te = perm[:a], perm[a:b], perm[b:]
    return Data((seq[tr], y[tr]), (seq[va], y[va]), (seq[te], y[te]), 2 * MARKERS)


# ---------------------------------------------------------------------------------- models
def mlp(hidden: tuple[int, ...], activation: str) -> Callable[..., nn.Module]:
    def make(input_shape, num_classes, seed):
        return build_model(
            "mlp",
            input_shape=input_shape,
            num_classes=num_classes,
            seed=seed,
            hidden=hidden,
            activation=activation,
        )

    return make


class BNConvNet(nn.Module):
    """conv3(16)-BN-ReLU-pool, conv3(32)-BN-ReLU-pool, fc64-ReLU, fc (batch norm used in eval
    mode when edited)."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        c, h, w = input_shape if len(input_shape) == 3 else (1, *input_shape)
        self.body = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (h // 4) * (w // 4), 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def bn_cnn(input_shape, num_classes, seed):
    torch.manual_seed(seed)  # the benchmark seeds its own model initialization
    return BNConvNet(input_shape, num_classes)


class EncoderLayer(nn.Module):
    """Post-norm Transformer-encoder layer with attention written out (softmax(QKᵀ/√d)V per
    head). Written when Hessian products through ``nn.TransformerEncoderLayer`` failed (PyTorch's
    fused attention kernels have no double backward); geninf's curvature products now select
    the math kernel (``geninf.linalg.curvature.differentiable_attention``), and the layer stays
    so that the committed results stay reproducible."""

    def __init__(self, d: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # [b, heads, t, d_head]
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        mixed = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = self.norm1(x + self.out(mixed))
        return self.norm2(x + self.ff(x))


class TokenTransformer(nn.Module):
    """Embedding + learned positions → 1 encoder layer (d = 32, 2 heads) → mean pool →
    Linear."""

    def __init__(self, num_classes: int, d: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.pos = nn.Parameter(torch.randn(LENGTH, d) / math.sqrt(d))
        self.encoder = EncoderLayer(d, 2, 64)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(h.mean(dim=1))


def transformer(input_shape, num_classes, seed):
    torch.manual_seed(seed)  # the benchmark seeds its own model initialization
    return TokenTransformer(num_classes)


# -------------------------------------------------------------------------------- problems
DIGITS_FLAT = embedded("digits", flatten=True)
MNIST_IMG = embedded("mnist5k", flatten=False)
SYNTH6 = classification(6, 20, 8)

PROBLEMS: list[Problem] = [
    Problem("digits · MLP tanh · remove", "remove", DIGITS_FLAT, mlp((64, 64), "tanh"), 30,
            tune=True, target=8),
    Problem("synth-6 · MLP tanh 64-64 · remove", "remove", SYNTH6, mlp((64, 64), "tanh"), 60,
            tune=True, target=1),
    Problem("digits · MLP tanh · relabel", "relabel", DIGITS_FLAT, mlp((64, 64), "tanh"), 30,
            tune=True),
    Problem("digits · MLP ReLU wd · remove", "remove", DIGITS_FLAT, mlp((128, 64), "relu"), 30,
            weight_decay=1e-3, target=3),
    Problem("synth-10 · MLP ReLU wd · remove", "remove", classification(10, 40, 12, n=4000),
            mlp((128, 64), "relu"), 40, weight_decay=1e-3, target=4),
    Problem("quantiles-4 · MLP tanh · remove", "remove", quantiles(4, 8), mlp((64, 64), "tanh"),
            60, target=2),
    Problem("mnist5k · CNN+BN · remove", "remove", MNIST_IMG, bn_cnn, 6, hessian_examples=500,
            target=8, cost=10),
    Problem("tokens-6 · Transformer · remove", "remove", tokens(), transformer, 40, target=2,
            cost=5),
    Problem("synth-6 · MLP ReLU · relabel", "relabel", SYNTH6, mlp((64, 64), "relu"), 60),
    Problem("mnist5k · CNN+BN · relabel", "relabel", MNIST_IMG, bn_cnn, 6, hessian_examples=500,
            cost=10),
    Problem("digits · MLP tanh · backdoor", "backdoor", DIGITS_FLAT, mlp((64, 64), "tanh"), 30,
            target=4),
]  # fmt: skip
