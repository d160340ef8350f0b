"""Tests of geninf.bench.datasets and datasets_files on embedded and synthetic files."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from geninf.bench import load_dataset, stratified_sample, stratified_split
from geninf.bench.datasets_files import read_idx, safe_load_pickle
from geninf.errors import DataError, InputError

# --------------------------------------------------------------------------------------------
# synthetic files. Every fake image encodes its label and a unique id in its first pixels:
# pixel (0,0,0) = 10 * label, (0,0,1) = id % 256, (0,0,2) = id // 256, so alignment of images
# and labels and disjointness of splits can be checked after shuffling.


def _fake_images(n: int, channels: int, size: int, labels: np.ndarray, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    images[:, 0, 0, 0] = 10 * labels
    images[:, 0, 0, 1] = ids % 256
    images[:, 0, 0, 2] = ids // 256
    return images


def _ids(inputs: torch.Tensor) -> set[int]:
    raw = torch.round(inputs[:, 0, 0, 1:3] * 255).long()
    return set((raw[:, 0] + 256 * raw[:, 1]).tolist())


def _check_alignment(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    torch.testing.assert_close(torch.round(inputs[:, 0, 0, 0] * 255).long(), 10 * targets)


def _write_cifar(folder: Path, per_batch: int = 20, protocol: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        labels = np.arange(per_batch) % 10
        images = _fake_images(per_batch, 3, 32, labels, offset=1000 * b)
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels.tolist(),
            b"data": images.reshape(per_batch, 3072),
            b"filenames": [b"x.png"] * per_batch,
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=protocol)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    blob = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(blob)
    else:
        path.write_bytes(blob)


def _write_mnist(folder: Path, n_train: int = 60, n_test: int = 20) -> None:
    for split, n, offset, gz in (("train", n_train, 0, False), ("t10k", n_test, 5000, True)):
        labels = np.arange(n) % 10
        images = _fake_images(n, 1, 28, labels, offset)[:, 0]
        _write_idx(folder / f"{split}-images-idx3-ubyte", images, gz)
        _write_idx(folder / f"{split}-labels-idx1-ubyte", labels, gz)


def _write_svhn(folder: Path, n_train: int = 40, n_test: int = 20) -> None:
    from scipy.io import savemat

    for name, n, offset in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 5000)):
        digits = np.arange(n) % 10
        images = _fake_images(n, 3, 32, digits, offset)  # N×C×H×W
        stored = digits.copy()
        stored[stored == 0] = 10  # SVHN writes the digit 0 as label 10
        savemat(
            str(folder / name),
            {"X": images.transpose(2, 3, 1, 0), "y": stored.reshape(-1, 1).astype(np.uint8)},
        )


# --------------------------------------------------------------------------------------------
# embedded sets


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_digits_shapes_ranges_and_stratified_sizes(digits):
    x, y = digits.train
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert digits.input_shape == (1, 8, 8) and x.shape[1:] == (1, 8, 8)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert sum(digits.sizes.values()) == 1797
    assert digits.num_classes == 10 and digits.class_names == tuple("0123456789")
    assert digits.original_labels == tuple(range(10))
    for split, frac in (("train", 0.70), ("validation", 0.15), ("test", 0.15)):
        counts = torch.bincount(getattr(digits, split)[1], minlength=10)
        totals = sum(
            torch.bincount(getattr(digits, s)[1], minlength=10)
            for s in ("train", "validation", "test")
        )
        assert torch.all((counts - frac * totals).abs() <= 1.0), (split, counts, totals)


def test_digits_seed_reproducible_and_global_rng_untouched(digits):
    state = torch.get_rng_state()
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    for split in ("train", "validation", "test"):
        assert torch.equal(getattr(again, split)[0], getattr(digits, split)[0])
        assert torch.equal(getattr(again, split)[1], getattr(digits, split)[1])
    assert not torch.equal(other.test[0], digits.test[0])


def test_digits_options_flatten_normalize_subset_max():
    s = load_dataset(
        "digits",
        seed=3,
        flatten=True,
        normalize=True,
        subset_classes=[7, 2],
        max_train=50,
        max_eval=20,
    )
    assert s.input_shape == (64,) and s.train[0].shape == (50, 64)
    assert s.sizes == {"train": 50, "validation": 20, "test": 20}
    assert s.num_classes == 2 and s.class_names == ("7", "2") and s.original_labels == (7, 2)
    assert torch.bincount(s.train[1]).tolist() == [25, 25]
    assert s.normalization is not None and len(s.normalization[0]) == 1
    assert abs(float(s.train[0].mean())) < 1e-5 and abs(float(s.train[0].std()) - 1) < 1e-2


def test_mnist5k_loads_500_per_class():
    s = load_dataset("mnist5k", seed=0)
    assert s.input_shape == (1, 28, 28) and s.name == "mnist5k"
    assert s.sizes == {"train": 3500, "validation": 750, "test": 750}
    totals = sum(
        torch.bincount(getattr(s, k)[1], minlength=10) for k in ("train", "validation", "test")
    )
    assert totals.tolist() == [500] * 10
    assert float(s.train[0].max()) == 1.0 and float(s.train[0].min()) == 0.0


# --------------------------------------------------------------------------------------------
# splitting helpers


def test_stratified_split_disjoint_complete_and_seeded():
    targets = torch.arange(103) % 4
    parts = stratified_split(targets, (0.6, 0.2, 0.2), generator=torch.Generator().manual_seed(0))
    joined = torch.cat(parts)
    assert sorted(joined.tolist()) == list(range(103))
    for part, frac in zip(parts, (0.6, 0.2, 0.2), strict=True):
        counts = torch.bincount(targets[part], minlength=4).double()
        assert torch.all((counts - frac * torch.bincount(targets).double()).abs() <= 1.0)
    again = stratified_split(targets, (0.6, 0.2, 0.2), generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    with pytest.raises(InputError):
        stratified_split(targets, (0.5, 0.2), generator=torch.Generator())


def test_stratified_sample_exact_size_and_proportions():
    targets = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_sample(targets, 10, generator=torch.Generator().manual_seed(0))
    assert idx.numel() == 10 and len(set(idx.tolist())) == 10
    assert torch.bincount(targets[idx], minlength=3).tolist() == [6, 3, 1]


# --------------------------------------------------------------------------------------------
# CIFAR-10


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_from_pickles(tmp_path, protocol):
    _write_cifar(tmp_path, protocol=protocol)
    s = load_dataset(f"cifar10:{tmp_path}", seed=0)
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10 and s.class_names[0] == "airplane"
    assert s.sizes == {"train": 90, "validation": 10, "test": 20}
    assert torch.bincount(s.validation[1], minlength=10).tolist() == [1] * 10
    assert torch.bincount(s.train[1], minlength=10).tolist() == [9] * 10
    ids = {k: _ids(getattr(s, k)[0]) for k in ("train", "validation", "test")}
    assert not ids["train"] & ids["validation"]
    assert ids["train"] | ids["validation"] == {1000 * b + i for b in range(5) for i in range(20)}
    assert ids["test"] == {5000 + i for i in range(20)}
    for split in ("train", "validation", "test"):
        _check_alignment(*getattr(s, split))
    # the raw pixels survive exactly (channel order R, G, B as stored)
    raw = pickle.loads((tmp_path / "test_batch").read_bytes())[b"data"].reshape(-1, 3, 32, 32)
    row = [i for i in range(20) if _ids(s.test[0][i : i + 1]) == {5000}][0]
    torch.testing.assert_close(s.test[0][row], torch.from_numpy(raw[0]).float() / 255)


def test_cifar10_subfolder_root_and_archive(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    a = load_dataset("cifar10", root=tmp_path, seed=1)
    archive_dir = tmp_path / "archive"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    b = load_dataset(f"cifar10:{archive_dir}", seed=1)
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.test[1], b.test[1])


def test_cifar10_missing_files_message(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    message = str(info.value)
    assert str(tmp_path) in message and "data_batch_1..5" in message and "test_batch" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="cifar10:/path"):
        load_dataset("cifar10")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_with_forbidden_global_is_refused(tmp_path):
    blob = pickle.dumps({b"data": _Evil(), b"labels": [0]})
    with pytest.raises(DataError, match="refused to load global .*system"):
        safe_load_pickle(io.BytesIO(blob), source="evil")
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(blob)
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(f"cifar10:{tmp_path}")
    exec_blob = pickle.dumps(print)  # even harmless builtins are not on the allow-list
    with pytest.raises(DataError, match="builtins.print"):
        safe_load_pickle(io.BytesIO(exec_blob))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_safe_pickle_reads_numpy_arrays(protocol):
    obj = {"a": np.arange(12, dtype=np.uint8).reshape(3, 4), "b": [1, "x", b"y"]}
    out = safe_load_pickle(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    np.testing.assert_array_equal(out[b"a" if b"a" in out else "a"], obj["a"])


# --------------------------------------------------------------------------------------------
# MNIST (IDX) and SVHN (.mat)


def test_mnist_idx_plain_and_gz(tmp_path):
    _write_mnist(tmp_path)
    s = load_dataset(f"mnist:{tmp_path}", seed=0, validation_fraction=0.2)
    assert s.input_shape == (1, 28, 28) and s.sizes == {"train": 50, "validation": 10, "test": 20}
    assert torch.bincount(s.validation[1], minlength=10).tolist() == [1] * 10
    for split in ("train", "validation", "test"):
        _check_alignment(*getattr(s, split))
    assert not _ids(s.train[0]) & _ids(s.validation[0])
    assert _ids(s.test[0]) == set(range(5000, 5020))


def test_mnist_missing_and_truncated(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"put t10k-labels-idx1-ubyte \(plain or .gz"):
        load_dataset("mnist", root=tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_svhn_mat_labels_and_layout(tmp_path):
    _write_svhn(tmp_path)
    s = load_dataset(f"svhn:{tmp_path}", seed=0, validation_fraction=0.25)
    assert s.input_shape == (3, 32, 32) and s.sizes == {"train": 30, "validation": 10, "test": 20}
    assert int(s.test[1].min()) == 0 and int(s.test[1].max()) == 9  # label 10 became 0
    assert torch.bincount(s.test[1], minlength=10).tolist() == [2] * 10
    for split in ("train", "validation", "test"):
        _check_alignment(*getattr(s, split))
    assert _ids(s.test[0]) == set(range(5000, 5020))


def test_svhn_missing_names_the_file(tmp_path):
    _write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"SVHN not found in .*: put test_32x32.mat"):
        load_dataset(f"svhn:{tmp_path}")


# --------------------------------------------------------------------------------------------
# spec and option errors


@pytest.mark.parametrize(
    ("spec", "kwargs", "error"),
    [
        ("imagenet", {}, InputError),
        ("digits:/tmp", {}, InputError),
        ("digits", {"validation_fraction": 0.6, "test_fraction": 0.5}, InputError),
        ("digits", {"subset_classes": [3, 3]}, InputError),
        ("digits", {"subset_classes": [12]}, InputError),
        ("digits", {"max_train": 0}, InputError),
    ],
)
def test_bad_specs_and_options(spec, kwargs, error):
    with pytest.raises(error):
        load_dataset(spec, **kwargs)
