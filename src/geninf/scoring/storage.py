"""Where a score matrix goes: a tensor in memory, or a ``.npy`` file written in row chunks.

A file is written as a NumPy memmap under a temporary name in the destination directory and
renamed into place (``os.replace``, atomic on one file system) only once every row is written,
so an interrupted run never leaves a truncated ``scores.npy`` behind. A JSON record of the
arguments that produced it is written next to it (``scores.npy.json``). The returned tensor is a
copy-on-write memory map of the file: rows are read from disk when touched, and changing the
tensor never changes the file.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._atomic import atomic_write
from ..errors import DataError, InputError

__all__ = ["ScoreSink", "load_scores", "open_sink"]

DEFAULT_MAX_MEMORY = 2**30

_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


class ScoreSink:
    """Receives ``[rows, n_train]`` blocks of a ``[n_query, n_train]`` matrix in row order."""

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device):
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.path: Path | None = None

    def write(self, lo: int, rows: Tensor) -> None:
        raise NotImplementedError

    def finish(self, metadata: dict[str, Any] | None = None) -> Tensor:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop what was written (called when scoring fails)."""


class _MemorySink(ScoreSink):
    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device):
        super().__init__(shape, dtype, device)
        self._data = torch.empty(shape, dtype=dtype, device=device)

    def write(self, lo: int, rows: Tensor) -> None:
        self._data[lo : lo + rows.shape[0]] = rows

    def finish(self, metadata: dict[str, Any] | None = None) -> Tensor:
        return self._data


class _NpySink(ScoreSink):
    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, path: Path):
        np_dtype = _NUMPY_DTYPES.get(dtype, np.float32)
        super().__init__(shape, dtype, torch.device("cpu"))
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._map = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=np_dtype, shape=shape)

    def write(self, lo: int, rows: Tensor) -> None:
        block = rows.detach().cpu()
        if block.dtype not in _NUMPY_DTYPES:
            block = block.float()
        block = block.numpy()
        self._map[lo : lo + block.shape[0]] = block

    def finish(self, metadata: dict[str, Any] | None = None) -> Tensor:
        assert self.path is not None
        self._map.flush()
        del self._map
        os.replace(self._tmp, self.path)
        if metadata is not None:
            _write_json_atomic(self.path.with_name(self.path.name + ".json"), metadata)
        return load_scores(self.path)

    def abort(self) -> None:
        if hasattr(self, "_map"):
            del self._map
        self._tmp.unlink(missing_ok=True)


def open_sink(
    shape: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
    out: str | os.PathLike[str] | None,
    max_memory: int | None,
) -> ScoreSink:
    """A sink for the score matrix: ``out`` (a ``.npy`` path) if given; else memory, unless the
    matrix needs more than ``max_memory`` bytes — then a temporary ``.npy`` file, with a warning
    that names it."""
    if out is not None:
        return _NpySink(shape, dtype, _npy_path(out))
    itemsize = torch.empty((), dtype=dtype).element_size()
    need = shape[0] * shape[1] * itemsize
    if max_memory is not None and need > max_memory:
        fd, tmp = tempfile.mkstemp(prefix="geninf-scores-", suffix=".npy")
        os.close(fd)
        warnings.warn(
            f"the {shape[0]}x{shape[1]} score matrix needs {need / 2**20:.0f} MiB, more than "
            f"max_memory={max_memory / 2**20:.0f} MiB; streaming it to {tmp} (pass out= to "
            "choose the file, or raise max_memory)",
            ResourceWarning,
            stacklevel=3,
        )
        return _NpySink(shape, dtype, Path(tmp))
    return _MemorySink(shape, dtype, device)


def load_scores(path: str | os.PathLike[str]) -> Tensor:
    """A score matrix written by :func:`geninf.scoring.score` with ``out=``, memory-mapped
    (copy-on-write: changes to the tensor never reach the file)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no score file at {path}; run score(..., out={str(path)!r}) first")
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path} is not a .npy score matrix: {exc}") from None
    return torch.from_numpy(array)


def _npy_path(out: Any) -> Path:
    if not isinstance(out, str | os.PathLike):
        raise InputError(f"out must be a path to a .npy file, got {type(out).__name__}")
    path = Path(out).expanduser()
    if path.suffix != ".npy":
        raise InputError(f"out must name a .npy file (scores are a NumPy array), got {str(path)!r}")
    if path.is_dir():
        raise InputError(f"out={str(path)!r} is a directory; name a .npy file inside it")
    return path


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
