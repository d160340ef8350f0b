"""Your own data: ``npz:PATH``, ``csv:PATH[#COLUMN]``, ``folder:PATH``, ``package.module:factory``.

Each reader returns a :class:`~geninf.bench.datasets_files.RawData`;
:func:`geninf.bench.load_dataset` splits it like the registered sets (seeded, stratified by class,
``Splits.sources`` giving each example's row in the array it came from).

``npz:PATH`` — a NumPy ``.npz`` file (``numpy.savez``; read without pickle) with the arrays

- ``x``: the inputs, ``N×D`` (features), ``N×H×W`` (one-channel images) or ``N×C×H×W``;
  ``uint8`` values are divided by 255, any other real type is used as it is (as float32);
- ``y``: ``N`` integer class labels ``0 … K-1``, every class with at least one example in ``y``;
- optionally ``x_val``/``y_val`` and ``x_test``/``y_test``: a validation and a test split given
  with the data (inputs of the same shape and type as ``x``), and ``class_names`` (``K``
  strings). A split that is not given is carved out of ``x`` by a stratified split seeded with
  the data seed (``--data-seed``, recorded with the run): 15% validation and 15% test when neither
  is given, 10% validation when only the test split is.

``csv:PATH`` — a numeric table with a header row: the column ``label`` (``csv:PATH#COLUMN`` for
another name) holds the integer labels, every other column is a feature (``N×D`` inputs used as
they are). Split like an ``.npz`` with ``x`` and ``y`` only.

``folder:PATH`` — images, see :mod:`geninf.bench.user_folder`.

``package.module:factory`` — an importable function called without arguments that returns
either a mapping with the ``.npz`` names above (NumPy arrays or tensors), or a tuple
``(train, validation, test)`` of ``(inputs, labels)`` pairs where ``validation`` and ``test`` may
be ``None`` (then carved out of ``train``).

Every problem with the data is one :class:`~geninf.errors.DataError` line that names the file
(or factory), what is wrong and what to do.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._factory import resolve_factory
from ..errors import DataError
from . import datasets_files as files
from .reading import brief, describe
from .user_folder import read_folder

__all__ = ["NPZ_ARRAYS", "raw_from_arrays", "read_csv", "read_factory", "read_folder", "read_npz"]

#: The arrays a data ``.npz`` (or a factory's mapping) may hold.
NPZ_ARRAYS = ("x", "y", "x_val", "y_val", "x_test", "y_test", "class_names")
_NEEDS = (
    "a data .npz needs x (inputs) and y (integer labels), optionally x_val/y_val and x_test/y_test"
)
_SPLITS = (("x", "y", "the pool"), ("x_val", "y_val", "validation"), ("x_test", "y_test", "test"))


def _as_array(value: Any, name: str, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: {name} holds {array.dtype} values; it must be a numeric array")
    return array


def _inputs(x: np.ndarray, name: str, where: str) -> np.ndarray:
    """``x`` as ``N×D`` or ``N×C×H×W`` (``uint8`` kept, anything else float32), checked."""
    if x.ndim not in (2, 3, 4) or x.shape[0] == 0:
        raise DataError(
            f"{where}: {name} has shape {x.shape}; inputs must be N×D features, N×H×W or "
            "N×C×H×W images, with N > 0"
        )
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: {name} holds NaN or infinite values; clean the inputs first")
    return x


def _labels(y: np.ndarray, n: int, name: str, where: str) -> np.ndarray:
    """``y`` as int64 labels, checked to be ``n`` non-negative integers."""
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(
            f"{where}: {name} has shape {y.shape} but its inputs hold {n} examples; give one "
            "label per example"
        )
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        bad = float(y[~(np.isfinite(y) & (y == np.round(y)))][0])
        raise DataError(f"{where}: {name} holds {bad!r}; labels must be integer classes 0..K-1")
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise DataError(
            f"{where}: {name} holds the label {int(y.min())}; labels must be integer classes 0..K-1"
        )
    return y


def _check_classes(labels: dict[str, np.ndarray], where: str) -> int:
    """The number of classes ``K``; every class ``0 … K-1`` must have an example in ``y``."""
    k = 1 + max(int(y.max()) for y in labels.values())
    missing = sorted(set(range(k)) - set(np.unique(labels["y"]).tolist()))
    if missing:
        seen = np.unique(labels["y"])
        raise DataError(
            f"{where}: labels must be integers from 0 (classes 0..K-1, each in y); y holds "
            f"{len(seen)} classes from {int(seen.min())} to {int(seen.max())} and no example "
            f"of class {missing[0]}: renumber the classes 0..{len(seen) - 1}"
        )
    if k < 2:
        raise DataError(f"{where}: y holds one class only; a classifier needs two or more")
    return k


def _class_names(value: Any, k: int, where: str) -> tuple[str, ...]:
    if value is None:
        return tuple(str(c) for c in range(k))
    names = [str(v) for v in np.asarray(value).reshape(-1).tolist()]
    if len(names) != k:
        raise DataError(f"{where}: class_names has {len(names)} names for {k} classes")
    return tuple(names)


def raw_from_arrays(arrays: Mapping[str, Any], where: str, name: str) -> files.RawData:
    """Check ``x``/``y`` (and optional ``x_val``/``y_val``, ``x_test``/``y_test``,
    ``class_names``) and wrap them as raw data (see the module docstring for the rules).

    Args:
        arrays: The arrays by name (NumPy arrays, tensors or sequences).
        where: How error messages name the source (a file, a factory).
        name: ``RawData.name``.

    Raises:
        DataError: A missing or malformed array, or labels that are not integers from 0.
    """
    unknown = sorted(set(arrays) - set(NPZ_ARRAYS))
    for x_name, y_name, _ in _SPLITS:
        missing = [n for n in (x_name, y_name) if arrays.get(n) is None]
        if x_name == "x" and missing:
            extra = f" (unknown: {', '.join(unknown)})" if unknown else ""
            raise DataError(f"{where} has no array {missing[0]!r}{extra}; {_NEEDS}")
        if len(missing) == 1:
            raise DataError(
                f"{where} has {({x_name, y_name} - set(missing)).pop()} but no "
                f"{missing[0]}; give both or neither"
            )
    inputs, labels = {}, {}
    for x_name, y_name, _ in _SPLITS:
        if arrays.get(x_name) is not None:
            x = _inputs(_as_array(arrays[x_name], x_name, where), x_name, where)
            inputs[x_name] = x
            labels[y_name] = _labels(
                _as_array(arrays[y_name], y_name, where), len(x), y_name, where
            )
    for x_name, x in inputs.items():
        if x.shape[1:] != inputs["x"].shape[1:] or x.dtype != inputs["x"].dtype:
            raise DataError(
                f"{where}: {x_name} holds {x.dtype} inputs of shape {x.shape[1:]} but x holds "
                f"{inputs['x'].dtype} of shape {inputs['x'].shape[1:]}; give every split the same"
            )
    k = _check_classes(labels, where)
    return files.RawData(
        name=name,
        train_images=inputs["x"],
        train_labels=labels["y"],
        test_images=inputs.get("x_test"),
        test_labels=labels.get("y_test"),
        scale=255.0 if inputs["x"].dtype == np.uint8 else 1.0,
        class_names=_class_names(arrays.get("class_names"), k, where),
        val_images=inputs.get("x_val"),
        val_labels=labels.get("y_val"),
    )


def _existing(path: str | Path, kind: str, needs: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p} does not exist or is not a file; {kind}:PATH needs {needs}")
    return p


def read_npz(path: str | Path, *, spec: str | None = None) -> files.RawData:
    """Read a data ``.npz`` (see the module docstring).

    Raises:
        DataError: No such file, not an ``.npz``, a missing or malformed array, bad labels.
    """
    p = _existing(path, "npz", "a .npz file with arrays x (inputs) and y (labels)")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{p} is not a readable .npz of numeric arrays ({brief(exc)}); save it with "
            "numpy.savez(path, x=inputs, y=labels)"
        ) from None
    return raw_from_arrays(arrays, str(p), spec or f"npz:{path}")


def _csv_rows(p: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {p} as a CSV table: {brief(exc)}") from None
    if len(rows) < 2:
        raise DataError(
            f"{p} holds no data row; csv:PATH needs a header row and one row per example"
        )
    return [c.strip() for c in rows[0]], rows[1:]


def read_csv(path: str | Path, *, label_column: str = "label", spec: str | None = None):
    """Read a numeric CSV table whose column ``label_column`` holds the labels.

    Raises:
        DataError: No such file, no such column, a cell that is not a number, ragged rows, bad
            labels.
    """
    p = _existing(path, "csv", f"a numeric table with a header row and a {label_column!r} column")
    header, rows = _csv_rows(p)
    if label_column not in header:
        raise DataError(
            f"{p} has no column {label_column!r} (its columns: {', '.join(header)}); name the "
            "label column with csv:PATH#COLUMN"
        )
    if len(header) < 2:
        raise DataError(f"{p} has no feature column besides {label_column!r}")
    table = np.empty((len(rows), len(header)), dtype=np.float64)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(f"{p}, row {line}: {len(row)} cells but the header has {len(header)}")
        for col, cell in enumerate(row):
            try:
                table[line - 2, col] = float(cell)
            except ValueError:
                raise DataError(
                    f"{p}, row {line}, column {header[col]!r}: {cell.strip()!r} is not a number; "
                    "every cell of a csv: table must be numeric"
                ) from None
    label = header.index(label_column)
    arrays = {"x": np.delete(table, label, axis=1), "y": table[:, label]}
    return raw_from_arrays(arrays, f"{p} (label column {label_column!r})", spec or f"csv:{path}")


def _pairs_to_arrays(value: tuple | list, where: str) -> dict[str, Any]:
    arrays: dict[str, Any] = {}
    for (x_name, y_name, _), pair in zip(_SPLITS, value, strict=True):
        if pair is None and x_name != "x":
            continue
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise DataError(
                f"{where}: its {x_name.replace('x_', '') if x_name != 'x' else 'train'} split is "
                f"{describe(pair)}, not an (inputs, labels) pair"
            )
        arrays[x_name], arrays[y_name] = pair
    return arrays


def read_factory(spec: str) -> files.RawData:
    """Call the data factory ``package.module:factory`` and check what it returns.

    Raises:
        InputError: The module or function cannot be found.
        DataError: The factory raised, or returned something else than the documented forms.
    """
    factory = resolve_factory(spec, "data")
    where = f"data factory {spec!r}"
    try:
        value = factory()
    except Exception as exc:
        raise DataError(
            f"{where} raised {brief(exc)}; fix the factory (call it in Python, or rerun "
            "with --debug, to see the traceback)"
        ) from exc
    if isinstance(value, Mapping):
        return raw_from_arrays(value, where, spec)
    if isinstance(value, tuple | list) and len(value) == 3 and value[0] is not None:
        return raw_from_arrays(_pairs_to_arrays(value, where), where, spec)
    raise DataError(
        f"{where} returned {describe(value)}; return a dict with x and y (optionally "
        "x_val, y_val, x_test, y_test) or a (train, validation, test) tuple of (inputs, labels) "
        "pairs"
    )
