"""Tests of geninf.bench.augment: the mnist-aug:N data sets (deformed copies of mnist5k)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from geninf.bench import augment, load_dataset
from geninf.errors import InputError

SIZE = 10_000  # the sources and one deformed copy of each


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    return augment._mnist_sources()[0]


@pytest.fixture(scope="module")
def images(cache: Path) -> np.ndarray:
    return augment.mnist_aug_images(SIZE, seed=0, cache_dir=cache, chunk_size=1500)


def test_copies_are_seeded_and_do_not_depend_on_the_chunking(sources: np.ndarray) -> None:
    rows = np.arange(augment.SOURCES - 20, augment.SOURCES + 60)  # copies 0 and 1
    src, copy = rows % augment.SOURCES, rows // augment.SOURCES
    whole = augment.deform_copies(sources, src, copy, seed=7)
    for chunk in (1, 7, 33):
        parts = [
            augment.deform_copies(sources, src[i : i + chunk], copy[i : i + chunk], seed=7)
            for i in range(0, len(rows), chunk)
        ]
        assert torch.equal(torch.cat(parts), whole)
    assert torch.equal(augment.deform_copies(sources, src, copy, seed=7), whole)
    other = augment.deform_copies(sources, src, copy, seed=8)
    moved = torch.from_numpy(copy > 0)
    assert torch.equal(other[~moved], whole[~moved])  # copy 0 is the source, whatever the seed
    assert torch.equal(whole[~moved], torch.from_numpy(sources[src[copy == 0]]))
    changed = (other[moved] != whole[moved]).flatten(1).any(1)
    assert bool(changed.all())  # another seed moves every deformed copy differently


def _centre(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, column) of each ``n×1×H×W`` image, pixels."""
    x = x[:, 0]
    rows, cols = (torch.arange(n, dtype=torch.float64) for n in x.shape[1:])
    mass = x.sum((1, 2))
    return torch.stack([(x.sum(2) * rows).sum(1) / mass, (x.sum(1) * cols).sum(1) / mass], 1)


def test_deformations_are_small(sources: np.ndarray) -> None:
    """A copy keeps its digit: about the same ink, about the same place, but it moves."""
    n = 200
    src = np.arange(n) * 25  # 20 sources of each class
    copies = augment.deform_copies(sources, src, np.ones(n, dtype=np.int64)).double()
    originals = torch.from_numpy(sources[src]).double()
    ink = copies.flatten(1).sum(1) / originals.flatten(1).sum(1)
    assert bool(((ink > 0.6) & (ink < 1.6)).all()), ink
    shift = (_centre(copies) - _centre(originals)).norm(dim=1)
    assert float(shift.mean()) < 2.5 and float(shift.max()) < 7, shift
    assert float((copies - originals).abs().mean()) > 5  # and they do move


def test_the_set_is_chunked_uint8_cached_and_reproducible(
    cache: Path, images: np.ndarray, sources: np.ndarray, monkeypatch
) -> None:
    assert images.dtype == np.uint8 and images.shape == (SIZE, 1, 28, 28)
    assert images.nbytes == SIZE * 784  # 60,000 images: 47 MB
    assert np.array_equal(images[: augment.SOURCES], sources)  # copy 0 = the sources
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"mnist-aug-{SIZE}-seed0-{augment.Deformation().key()}.npy"]  # no temp file
    rng = np.random.default_rng(0)
    rows = rng.choice(SIZE, size=25, replace=False)
    alone = augment.deform_copies(
        sources, augment.source_index(SIZE)[rows], augment.copy_index(SIZE)[rows]
    )
    assert torch.equal(alone, torch.from_numpy(np.asarray(images[rows])))

    calls: list[int] = []
    original = augment.deform_copies

    def counting(images, src, copy, **kwargs):
        calls.append(len(src))
        return original(images, src, copy, **kwargs)

    monkeypatch.setattr(augment, "deform_copies", counting)
    again = augment.mnist_aug_images(SIZE, seed=0, cache_dir=cache)
    assert calls == [3]  # the cache is used: three rows recomputed as a check
    assert np.array_equal(again, images)
    calls.clear()
    fresh = augment.mnist_aug_images(SIZE, seed=0, cache_dir=cache / "other", chunk_size=1500)
    assert calls == [1500] * 6 + [1000]  # generated in chunks of at most chunk_size
    assert np.array_equal(fresh, images)


def test_a_damaged_or_stale_cache_is_regenerated(cache: Path, images: np.ndarray) -> None:
    path = cache / "broken" / next(p.name for p in cache.glob("*.npy"))
    path.parent.mkdir()
    np.save(path, np.zeros_like(images))  # right shape, wrong content
    assert np.array_equal(augment.mnist_aug_images(SIZE, cache_dir=path.parent), images)
    path.write_bytes(path.read_bytes()[:1000])  # cut short
    assert np.array_equal(augment.mnist_aug_images(SIZE, cache_dir=path.parent), images)


@pytest.mark.parametrize("seed", [0, 3])
def test_splits_keep_every_copy_with_its_source(
    cache: Path, images: np.ndarray, seed: int, monkeypatch
) -> None:
    monkeypatch.setenv("GENINF_DATA_CACHE", str(cache))
    splits = load_dataset(f"mnist-aug:{SIZE}", seed=seed)
    base = load_dataset("mnist5k", seed=seed)
    assert splits.sizes == {k: 2 * v for k, v in base.sizes.items()}
    used = {k: set(v.tolist()) for k, v in splits.sources.items()}
    assert not used["train"] & used["test"] and not used["train"] & used["validation"]
    assert not used["validation"] & used["test"]
    index = {img.tobytes(): i for i, img in enumerate(augment._mnist_sources()[0])}
    for split in ("train", "validation", "test"):  # the sources are those of mnist5k's split
        pixels = torch.round(getattr(base, split)[0] * 255).to(torch.uint8).numpy()
        assert used[split] == {index[img.tobytes()] for img in pixels}
    assert base.sources == {}  # mnist5k: every example is its own source
    # the source index is the truth: each test image is a copy of its source
    x, y = splits.test
    src = splits.sources["test"]
    pixels = torch.round(x * 255).to(torch.uint8)
    stored = torch.from_numpy(np.array(images))
    as_copy = [(pixels == stored[src + c * augment.SOURCES]).flatten(1).all(1) for c in (0, 1)]
    assert bool((as_copy[0] | as_copy[1]).all())
    assert int(as_copy[1].sum()) == len(src) // 2
    torch.testing.assert_close(y, torch.from_numpy(np.array(augment._mnist_sources()[1]))[src])


def test_forget_every_copy_of_some_sources(cache: Path, monkeypatch) -> None:
    """The benchmark use: remove all deformed copies of 50 source images from the training set."""
    monkeypatch.setenv("GENINF_DATA_CACHE", str(cache))
    splits = load_dataset(f"mnist-aug:{SIZE}", seed=0, max_train=3000)
    chosen = splits.sources["train"].unique()[:50]
    forget = torch.isin(splits.sources["train"], chosen)
    assert int(forget.sum()) >= 50
    assert not torch.isin(splits.sources["train"][~forget], chosen).any()


@pytest.mark.parametrize(
    "spec", ["mnist-aug:123", "mnist-aug:0", "mnist-aug:abc", "mnist-aug", "mnist-aug:5000:x"]
)
def test_bad_sizes(spec: str) -> None:
    with pytest.raises(InputError, match="mnist-aug:N"):
        load_dataset(spec)


def test_bad_arguments(cache: Path) -> None:
    with pytest.raises(InputError, match="a multiple of 5000"):
        augment.mnist_aug_images(5001, cache_dir=cache)
    with pytest.raises(InputError, match="chunk_size"):
        augment.mnist_aug_images(5000, cache_dir=cache, chunk_size=0)
    with pytest.raises(InputError, match="seed"):
        augment.mnist_aug_images(5000, cache_dir=cache, seed=2**70)


_PEAK = """
import sys
from geninf.bench import augment
augment._mnist_sources()
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak resident memory (VmHWM)
    fh.write("5")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
before = status("VmRSS")
augment.mnist_aug_images(int(sys.argv[1]), cache_dir=sys.argv[2], chunk_size=int(sys.argv[3]))
print((status("VmHWM") - before) / 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_generation_memory_is_bounded_by_the_chunk(tmp_path: Path) -> None:
    """Deforming the 15,000 copies in one go raises the peak resident memory by about 570 MiB
    (measured); in chunks of 500 by about 30 MiB."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, "20000", str(tmp_path), "500"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    peak_mib = float(out.stdout.strip().splitlines()[-1])
    assert peak_mib < 120, peak_mib
