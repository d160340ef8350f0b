"""Reading what a job is given: the device, the data of a checkpoint, forget sets, label changes
and query sets. Every malformed input is an :class:`~geninf.errors.InputError` with one line that
names the file, the line and what was expected."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...bench.datasets import Splits, load_dataset
from ...edit.forget_sets import random_forget_indices, source_forget_indices
from ...errors import InputError

__all__ = [
    "ForgetSet",
    "load_data",
    "parse_changes",
    "parse_forget",
    "parse_queries",
    "read_indices",
    "resolve_device",
]


def resolve_device(spec: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", s):
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: no CUDA device is available; use cpu or auto")
        return torch.device(s)
    raise InputError(f"--device must be auto, cpu or cuda[:N], got {spec!r}")


def load_data(info: dict[str, Any]) -> Splits:
    """The splits a checkpoint was trained on (its record's ``data``), checked against its
    architecture."""
    data = info.get("data") or {}
    if not data.get("spec"):
        raise InputError("the checkpoint does not say which data it was trained on; pass --data")
    _check_user_files(str(data["spec"]))
    splits = load_dataset(
        data["spec"],
        seed=int(data.get("seed", 0)),
        flatten=bool(data.get("flatten", False)),
        normalize=bool(data.get("normalize", False)),
        max_train=data.get("max_train"),
        max_eval=data.get("max_eval"),
    )
    arch = info.get("architecture") or {}
    shape = tuple(arch.get("input_shape") or ())
    if shape and tuple(splits.input_shape) != shape:
        raise InputError(
            f"data {data['spec']} has inputs of shape {tuple(splits.input_shape)} but the model "
            f"takes {shape}; pass the --data it was trained on"
        )
    if arch.get("num_classes") and int(arch["num_classes"]) != splits.num_classes:
        raise InputError(
            f"data {data['spec']} has {splits.num_classes} classes but the model has "
            f"{arch['num_classes']} outputs; pass the --data it was trained on"
        )
    return splits


def _check_user_files(spec: str) -> None:
    """A user's data file recorded with a relative path may not be where a later command runs:
    say so, and how to point at it (``--data``)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind.strip().lower() not in ("npz", "csv", "folder"):
        return
    path = Path(rest.partition("#")[0] if kind.strip().lower() == "csv" else rest).expanduser()
    if not path.exists():
        raise InputError(
            f"the data {spec} is not there: {path} does not exist (from {Path.cwd()}); pass "
            f"--data {kind}:PATH with its current location"
        )


def read_indices(path: str | Path, size: int, what: str = "indices") -> Tensor:
    """Distinct integer indices in ``[0, size)`` from a text file (whitespace or commas, ``#``
    comments)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from None
    values: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for token in re.split(r"[\s,]+", line.split("#", 1)[0].strip()):
            if not token:
                continue
            try:
                values.append(int(token))
            except ValueError:
                raise InputError(
                    f"{path}, line {number}: {token!r} is not an integer index"
                ) from None
    if not values:
        raise InputError(f"{what} file {path} holds no index")
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise InputError(f"{path}: index {bad[0]} is outside [0, {size - 1}]")
    if len(set(values)) != len(values):
        dup = next(v for v in values if values.count(v) > 1)
        raise InputError(f"{path}: index {dup} appears twice; indices must be distinct")
    return torch.tensor(values, dtype=torch.long)


@dataclass
class ForgetSet:
    """The training examples to remove (``indices`` into the training split) and the rest."""

    spec: str
    forget_class: int | None
    indices: Tensor
    forget: tuple[Tensor, Tensor]
    retain: tuple[Tensor, Tensor]

    @property
    def role(self) -> str:
        """``"relabeled"`` for label changes, ``"removed"`` otherwise (for captions)."""
        return "relabeled" if self.spec.startswith("changes:") else "removed"

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "class": self.forget_class,
            "num_forget": int(self.forget[1].numel()),
            "num_retain": int(self.retain[1].numel()),
        }


def parse_forget(spec: str, splits: Splits, seed: int = 0) -> ForgetSet:
    """The forget set of ``--forget``: ``class:C`` (every training example of class C),
    ``indices:FILE`` (positions in the training split: distinct integers), ``random:F`` (a
    fraction 0 < F < 1 of the training split drawn uniformly with ``seed``) or ``sources:K``
    (every example of K sources drawn with ``seed``, for data with ``Splits.sources``)."""
    kind, sep, value = str(spec).partition(":")
    x, y = splits.train
    m = int(y.numel())
    if not sep or kind not in _FORGET_KINDS or not value:
        raise InputError(
            f"--forget must be class:C, indices:FILE, random:FRACTION or sources:K, got {spec!r}"
        )
    forget_class = int(value) if kind == "class" and _is_int(value) else None
    mask = torch.zeros(m, dtype=torch.bool)
    mask[_forget_indices(kind, value, splits, seed)] = True
    if bool(mask.all()):
        raise InputError(
            "the forget set is the whole training set; nothing would be left: train a new model"
        )
    idx = torch.nonzero(mask).flatten()
    return ForgetSet(spec, forget_class, idx, (x[mask], y[mask]), (x[~mask], y[~mask]))


_FORGET_KINDS = ("class", "indices", "random", "sources")


def _is_int(text: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d+\s*", text) is not None


def _forget_indices(kind: str, value: str, splits: Splits, seed: int) -> Tensor:
    y = splits.train[1]
    m = int(y.numel())
    if kind == "indices":
        return read_indices(value, m, "--forget indices")
    if kind == "random":
        try:
            fraction = float(value)
        except ValueError:
            raise InputError(
                f"--forget random:F needs a fraction 0 < F < 1 (e.g. random:0.01), got {value!r}"
            ) from None
        return random_forget_indices(m, fraction, seed)
    if not _is_int(value):
        what = "class" if kind == "class" else "count"
        raise InputError(f"--forget {kind}:N needs an integer {what}, got {value!r}")
    if kind == "sources":
        sources = (getattr(splits, "sources", None) or {}).get("train")
        if sources is None:
            raise InputError(
                f"--forget sources:K: the data {splits.name} has no source of each example; use "
                "an augmented data set (mnist-aug:N) or indices:FILE"
            )
        return source_forget_indices(torch.as_tensor(sources), int(value), seed)
    forget_class = int(value)
    if not 0 <= forget_class < splits.num_classes:
        raise InputError(
            f"--forget class:{forget_class}: the data has classes 0..{splits.num_classes - 1}"
        )
    if not bool((y == forget_class).any()):
        raise InputError(f"class {forget_class} has no training example; nothing to remove")
    return torch.nonzero(y == forget_class).flatten()


def parse_changes(path: str | Path, splits: Splits) -> tuple[Tensor, Tensor]:
    """``(indices, new_labels)`` from a CSV of ``index,new_label`` rows (optional header)."""
    p = Path(path).expanduser()
    y = splits.train[1]
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].strip().startswith("#")]
    except FileNotFoundError:
        raise InputError(f"--changes file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read --changes file {path}: {exc}") from None
    if rows and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]  # a header such as index,new_label
    if not rows:
        raise InputError(f"--changes file {path} holds no change; write index,new_label rows")
    idx, labels = [], []
    for number, row in enumerate(rows, start=1):
        try:
            i, label = (int(c) for c in row[:2])
        except ValueError:
            raise InputError(
                f"{path}, row {number}: expected index,new_label integers, got {row}"
            ) from None
        if not 0 <= i < y.numel():
            raise InputError(f"{path}, row {number}: index {i} is outside [0, {y.numel() - 1}]")
        if not 0 <= label < splits.num_classes:
            raise InputError(
                f"{path}, row {number}: label {label} is not a class (0..{splits.num_classes - 1})"
            )
        if label == int(y[i]):
            raise InputError(f"{path}, row {number}: example {i} already has label {label}")
        idx.append(i)
        labels.append(label)
    if len(set(idx)) != len(idx):
        raise InputError(f"{path}: an index appears twice; give one new label per example")
    return torch.tensor(idx, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def parse_queries(spec: str, splits: Splits) -> tuple[str, Tensor]:
    """``SPLIT:LIST`` (LIST like ``0-7`` or ``3,5,9``; SPLIT test, validation or train) or
    ``indices:FILE`` (test split) → ``(split name, indices)``."""
    kind, sep, value = str(spec).partition(":")
    if kind == "indices" and value:
        return "test", read_indices(value, int(splits.test[1].numel()), "--queries indices")
    if not sep or kind not in ("test", "validation", "train") or not value:
        raise InputError(
            f"--queries must be test:LIST, validation:LIST, train:LIST (LIST like 0-7 or 3,5,9) "
            f"or indices:FILE, got {spec!r}"
        )
    size = int(getattr(splits, kind)[1].numel())
    out: list[int] = []
    seen: set[int] = set()
    for part in value.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), (int(hi) if dash else int(lo))
        except ValueError:
            raise InputError(f"--queries {spec!r}: {part!r} is not N or N-M") from None
        for i in (first, last):  # checked before a range is materialized
            if not 0 <= i < size:
                raise InputError(
                    f"--queries {spec!r}: query index {i} is out of range: the {kind} split has "
                    f"{size} examples (indices 0..{size - 1})"
                )
        if last < first:
            raise InputError(
                f"--queries {spec!r}: the range {part.strip()} is empty; write N-M with N <= M"
            )
        for i in range(first, last + 1):
            if i in seen:  # so at most `size` indices are ever collected
                raise InputError(
                    f"--queries {spec!r}: index {i} is given twice; give distinct indices"
                )
            seen.add(i)
            out.append(i)
    return kind, torch.tensor(out, dtype=torch.long)
