"""``folder:PATH`` — a data set of PNG/JPEG images, one subfolder per class.

Layouts:

- ``PATH/<class>/<image>``: one subfolder per class; split like an ``.npz`` with ``x`` and ``y``
  only (seeded, stratified);
- ``PATH/train/<class>/…`` with ``PATH/test/<class>/…`` and/or ``PATH/val/<class>/…`` (or
  ``validation``): the splits as given, with the same class folders in each.

Classes are the subfolder names in sorted order (labels ``0 … K-1``, ``Splits.class_names``).
Images are the files ending ``.png``, ``.jpg`` or ``.jpeg`` (any case; other files, and names
starting with ``.``, are skipped), read with Pillow in two passes: the headers first, to check
that every image has the same width and height (a mismatch names both files) and to choose the
channels — 1 when every image is grayscale, else 3 (grayscale images are then repeated over RGB,
alpha is dropped) — then the pixels, one image at a time, into a ``uint8`` array ``N×C×H×W``:
memory stays that array's size. ``Splits.sources`` indexes the files in the order of
:func:`image_files` (classes sorted, files sorted within a class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from . import datasets_files as files
from .reading import brief

__all__ = ["IMAGE_SUFFIXES", "image_files", "read_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_SPLIT_NAMES = {"train": "x", "val": "x_val", "validation": "x_val", "test": "x_test"}
_NEEDS = "folder:PATH needs one subfolder of PNG/JPEG images per class"


def _subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """The image files under ``root/<class>/``, their labels and the class names (sorted).

    Raises:
        DataError: No class folder, or a class folder without an image.
    """
    root = Path(root)
    classes = _subfolders(root)
    if not classes:
        raise DataError(f"{root} holds no class folder; {_NEEDS}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise DataError(
                f"class folder {folder} holds no PNG or JPEG image; add images or remove the folder"
            )
        paths += found
        labels += [label] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), tuple(c.name for c in classes)


def _open(path: Path):  # noqa: ANN202 - a PIL image
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - matplotlib depends on Pillow
        raise DataError("folder:PATH needs Pillow: pip install pillow") from exc
    try:
        return Image.open(path)
    except Exception as exc:
        raise DataError(
            f"{path} is not a readable PNG or JPEG image ({brief(exc)}); re-save or remove it"
        ) from None


def _layout(paths: list[Path]) -> tuple[tuple[int, int], int]:
    """``(width, height)`` shared by every image, and the number of channels (pass 1: headers)."""
    size, first, gray = None, None, True
    for path in paths:
        with _open(path) as image:
            if size is None:
                size, first = image.size, path
            elif image.size != size:
                raise DataError(
                    f"{path} is {image.size[0]}×{image.size[1]} pixels but {first} is "
                    f"{size[0]}×{size[1]}; every image must have the same size (resize them first)"
                )
            gray = gray and image.mode in _GRAY
    assert size is not None
    return size, 1 if gray else 3


def _decode(paths: list[Path], size: tuple[int, int], channels: int) -> np.ndarray:
    """Pass 2: the pixels, one image at a time, into one ``uint8`` array."""
    out = np.empty((len(paths), channels, size[1], size[0]), dtype=np.uint8)
    for i, path in enumerate(paths):
        with _open(path) as image:
            try:
                pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
            except Exception as exc:
                raise DataError(
                    f"{path} is not a readable PNG or JPEG image ({brief(exc)}); re-save "
                    "or remove it"
                ) from None
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


def _split_folders(root: Path) -> dict[str, Path] | None:
    """``{"x": root/train, "x_test": …}`` for the split layout, ``None`` for the class layout."""
    names = {p.name.lower(): p for p in _subfolders(root)}
    if "train" not in names or len(names) < 2 or not set(names) <= set(_SPLIT_NAMES):
        return None
    if "val" in names and "validation" in names:
        raise DataError(f"{root} has both val and validation folders; keep one")
    return {_SPLIT_NAMES[n]: p for n, p in names.items()}


def read_folder(path: str | Path, *, spec: str | None = None) -> files.RawData:
    """Read a folder of class subfolders of images (see the module docstring).

    Raises:
        DataError: No such folder, no class folder, an empty class folder, an unreadable image,
            images of different sizes, splits with different classes.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} does not exist or is not a directory; {_NEEDS}")
    splits = _split_folders(root) or {"x": root}
    found = {key: image_files(folder) for key, folder in splits.items()}
    classes = found["x"][2]
    for key, (_, _, names) in found.items():
        if names != classes:
            raise DataError(
                f"{splits[key]} has the classes {', '.join(names)} but {splits['x']} has "
                f"{', '.join(classes)}; use the same class folders in every split"
            )
    every = [p for paths, _, _ in found.values() for p in paths]
    size, channels = _layout(every)
    from .user_data import raw_from_arrays

    arrays: dict[str, object] = {"class_names": np.asarray(classes)}
    for key, (paths, labels, _) in found.items():
        arrays[key] = _decode(paths, size, channels)
        arrays["y" + key[1:]] = labels
    return raw_from_arrays(arrays, str(root), spec or f"folder:{path}")
