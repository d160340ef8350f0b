"""A restricted unpickler for the data pickles of CIFAR-10: plain data and numeric arrays only.

Nothing in a data pickle reaches NumPy's own pickle machinery: the globals a pickled array names
(``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``) resolve to the stand-ins below, which
check every argument and state against what NumPy writes for plain numeric arrays, then rebuild
the array from its raw bytes with ``np.frombuffer``. (NumPy's ``dtype.__setstate__`` trusts its
input: a state with a bad element size crashes the interpreter.)
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

from .reading import Malformed, reading

__all__ = ["safe_load_pickle", "unpickle"]

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
            raise Malformed("a dtype is given its state twice")
        key = (self.code, tuple(_text(s) for s in state) if isinstance(state, tuple) else ())
        dtype = self._known.get(key)  # type: ignore[arg-type]
        if dtype is None:
            raise Malformed(f"unexpected state {_short(state)} for the dtype {self.code!r}")
        self.dtype = dtype

    def resolve(self) -> np.dtype:
        """The dtype (native byte order when the pickle gave no state)."""
        return self.dtype if self.dtype is not None else np.dtype(self.code)


def _make_dtype(code: Any, align: Any = False, copy: Any = True, *rest: Any) -> _DtypeStub:
    code = _text(code)
    if rest or code not in _DTYPE_CODES or align not in (0, False) or copy not in (0, 1):
        raise Malformed(
            f"refused the dtype {_short(code)}: only plain numeric arrays "
            f"({', '.join(_DTYPE_CODES)}) are allowed in a data pickle"
        )
    return _DtypeStub(code)


def _array_from_bytes(raw: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
    """An array rebuilt from its raw bytes, after checking every part."""
    if not isinstance(dtype, _DtypeStub):
        raise Malformed(f"an array's dtype is a {type(dtype).__name__}, not a dtype")
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(map(_is_index, shape)):
        raise Malformed(f"an array has the bad shape {_short(shape)}")
    if not isinstance(raw, bytes | bytearray):
        raise Malformed(f"an array's data is a {type(raw).__name__}, not bytes")
    dt = dtype.resolve()
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise Malformed(
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
            raise Malformed("an array is given its state twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise Malformed("an array's state is not (version, shape, dtype, order, data)")
        shape, dtype, fortran, raw = state
        if fortran not in (0, 1):
            raise Malformed(f"an array's order flag is {_short(fortran)}")
        self.array = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if cls is not _NDArrayClass or shape not in ((0,), [0]) or _text(typecode) != "b":
        raise Malformed("refused an array reconstruction that NumPy does not write")
    return _ArrayStub()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    order = _text(order)
    if order not in ("C", "F"):
        raise Malformed(f"an array's order is {_short(order)}, not C or F")
    return _array_from_bytes(raw, dtype, shape, order == "F")


def _latin1_encode(text: Any, encoding: Any = "utf-8", *rest: Any) -> bytes:
    """``_codecs.encode`` as Python writes ``bytes`` in protocols 0-2: latin-1 text only."""
    if rest or not isinstance(text, str) or _text(encoding) not in ("latin1", "latin-1"):
        raise Malformed("refused a call of _codecs.encode other than (text, 'latin1')")
    return text.encode("latin-1")


def _bytes(*args: Any) -> bytes:
    """``bytes()`` (empty bytes in protocols 0-2); nothing else."""
    if args:
        raise Malformed("refused a call of bytes with arguments")
    return b""


def _bytearray(*args: Any) -> bytearray:
    """``bytearray()`` or ``bytearray(data)`` of bytes; nothing else (no size to allocate)."""
    if len(args) > 1 or (args and not isinstance(args[0], bytes | bytearray)):
        raise Malformed("refused a call of bytearray other than bytearray(bytes)")
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
            raise Malformed(f"a bytearray of {size} bytes runs past the end of the file")
        self.append(bytearray(data))  # type: ignore[attr-defined]

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise Malformed(
                f"refused to load global {module}.{name}: only plain containers and NumPy arrays "
                "are allowed in a data pickle"
            )
        return obj


def _resolve(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with every stand-in replaced by its array or dtype (containers in place)."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise Malformed("an array was never given its data")
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
                raise Malformed(f"a dict key is a {type(key).__name__}")
            obj[key] = _resolve(value, seen)
        return obj
    if isinstance(obj, tuple | set | frozenset):
        items = [_resolve(item, seen) for item in obj]
        if isinstance(obj, tuple):
            return tuple(items)
        if any(isinstance(item, np.ndarray) for item in items):
            raise Malformed("a set holds an array")
        return type(obj)(items)
    raise Malformed(f"a {type(obj).__name__} is not plain data")


def unpickle(file: BinaryIO) -> Any:
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
    with reading(source, "a safe data pickle", advice):
        return unpickle(file)
