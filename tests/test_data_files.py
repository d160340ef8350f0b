"""Corrupt local data files (CIFAR-10 pickles, MNIST IDX files, SVHN ``.mat`` files) give one
:class:`~geninf.errors.DataError` that names the file, never another exception or a crash.

Every file is built in ``tmp_path`` (nothing is downloaded). The cases come from fuzzing the
command line (tests/test_fuzz.py): a CIFAR batch with one byte changed used to crash the
interpreter inside NumPy's ``dtype.__setstate__``, and cut or corrupt files leaked
``LookupError``, ``zlib.error``, ``TypeError``… as internal errors. Cases that crashed the
interpreter run in a subprocess, so a regression fails the test instead of killing pytest.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import random
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geninf.bench import load_dataset
from geninf.bench.datasets_files import read_cifar10, read_idx, read_mnist, safe_load_pickle
from geninf.errors import DataError

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
#: the pickled state of a uint8 dtype, and the same bytes with its memo index turned into a
#: huge element size: numpy 2.4's dtype.__setstate__ segfaults on that state
DTYPE_STATE = b"X\x01\x00\x00\x00|q\x13"
CRASHING_STATE = b"X\x01\x00\x00\x00|J\x13"
SRC = str(Path(__file__).resolve().parents[1] / "src")


DEFAULT = object()


def _batch(n: int = 4, labels: Any = DEFAULT, data: Any = None) -> dict[bytes, Any]:
    rng = np.random.default_rng(n)
    return {
        b"batch_label": b"a batch",
        b"labels": [i % 10 for i in range(n)] if labels is DEFAULT else labels,
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data,
        b"filenames": [b"x.png"] * n,
    }


def _write_cifar(folder: Path, blob: bytes | None = None, *, bad: str = "data_batch_1") -> None:
    """Six valid batches in ``folder``; ``bad`` gets ``blob`` instead when it is given."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR_FILES:
        good = pickle.dumps(_batch(), protocol=2)
        (folder / name).write_bytes(blob if blob is not None and name == bad else good)


def _crashing_batch() -> bytes:
    good = pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [1, 2]}, protocol=2)
    assert DTYPE_STATE in good, "the pickle layout changed; update DTYPE_STATE"
    return good.replace(DTYPE_STATE, CRASHING_STATE, 1)


def _error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------ CIFAR-10: crashes
def test_a_dtype_state_that_crashes_numpy_is_one_error_line(tmp_path: Path) -> None:
    """``geninf train`` on a CIFAR batch whose dtype state segfaulted NumPy: exit 2 and one
    line naming the file, nothing written (a subprocess: a regression would kill pytest)."""
    _write_cifar(tmp_path / "cifar", _crashing_batch(), bad="data_batch_1")
    out = tmp_path / "out"
    argv = ["train", "--data", f"cifar10:{tmp_path / 'cifar'}", "--model", "mlp"]
    argv += ["--epochs", "1", "--out", str(out), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "geninf", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geninf: error: "), proc.stderr
    assert "data_batch_1 is not a CIFAR-10 batch file" in lines[0]
    assert "re-download" in lines[0]
    assert not out.exists()


def test_dtype_states_numpy_does_not_write_are_refused(tmp_path: Path) -> None:
    """Bad dtype codes, states and array reconstructions, each read in a subprocess."""
    script = textwrap.dedent(
        """
        import io, pickle, sys
        import numpy as np
        from geninf.bench.datasets_files import safe_load_pickle
        from geninf.errors import DataError

        good = pickle.dumps({"a": np.zeros((2, 3), np.uint8)}, protocol=2)
        state = b"K\\x03X\\x01\\x00\\x00\\x00|"
        assert state in good
        blobs = [
            good.replace(b"X\\x01\\x00\\x00\\x00|q", b"X\\x01\\x00\\x00\\x00|J", 1),
            good.replace(state, b"K\\x04X\\x01\\x00\\x00\\x00|", 1),  # another version
            good.replace(state, b"K\\x03X\\x01\\x00\\x00\\x00<", 1),  # a byte order
            good.replace(b"X\\x02\\x00\\x00\\x00u1", b"X\\x02\\x00\\x00\\x00O8", 1),  # objects
            good.replace(b"X\\x02\\x00\\x00\\x00u1", b"X\\x02\\x00\\x00\\x00V9", 1),  # void
            good.replace(b"K\\x02K\\x03\\x86", b"K\\x02K\\x04\\x86", 1),  # shape vs bytes
        ]
        for blob in blobs:
            assert blob != good
            try:
                safe_load_pickle(io.BytesIO(blob), source="f")
            except DataError as exc:
                print("refused:", exc)
            else:
                sys.exit("loaded a pickle that should be refused")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert proc.stdout.count("refused: f is not a safe data pickle") == 6, proc.stdout


# ------------------------------------------------------------------------ CIFAR-10: contents
@pytest.mark.parametrize(
    "labels, expected",
    [
        (None, "got None"),
        ("0123", "got a str"),
        ([b"a", b"b", b"c", b"d"], "must be 4 integers in 0..9"),
        ([0, 1, 2], "must be 4 integers in 0..9, got a list of 3 items"),
        ([0, 1, 2, 10**30], "from 0 to 1000000000000000000000000000000"),
        ([0, 1, 2, -1], "from -1 to 2"),
        ([0.0, 1.0, 2.0, 3.0], "must be 4 integers"),
        ([True, False, True, False], "must be 4 integers"),
        (np.array([0.5, 1, 2, 3]), "type float64"),
    ],
)
def test_cifar_labels_that_are_not_class_indices(tmp_path: Path, labels: Any, expected: str):
    _write_cifar(tmp_path, pickle.dumps(_batch(labels=labels), protocol=2), bad="test_batch")
    with pytest.raises(DataError) as excinfo:
        read_cifar10(tmp_path)
    message = _error(excinfo)
    assert f"{tmp_path / 'test_batch'} is not a CIFAR-10 batch file" in message
    assert "'labels'" in message and expected in message


@pytest.mark.parametrize(
    "obj, expected",
    [
        ([1, 2, 3], "expected a dict with 'data' and 'labels', got a list of 3 items"),
        (_batch(data=np.zeros((4, 3072), np.float32)), "uint8 array, got an array of shape"),
        (_batch(data=np.zeros((4, 100), np.uint8)), "'data' must be an N×3072 uint8 array"),
        (_batch(data=None) | {b"data": b"raw"}, "got a bytes"),
    ],
)
def test_cifar_batches_without_the_right_data(tmp_path: Path, obj: Any, expected: str) -> None:
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        _write_cifar(tmp_path, pickle.dumps(obj, protocol=protocol))
        with pytest.raises(DataError) as excinfo:
            load_dataset(f"cifar10:{tmp_path}")
        assert expected in _error(excinfo) and "data_batch_1" in _error(excinfo)


def test_cifar_random_corruptions_load_or_fail_with_a_data_error(tmp_path: Path) -> None:
    """Single-byte changes, deletions and insertions anywhere in a batch, every protocol."""
    rng = random.Random(0)
    arrays = {"x": np.arange(6, dtype=">i8"), "f": np.ones((2, 2), np.float32)}
    blobs = [
        pickle.dumps({**_batch(n=2, labels=[3, 4]), **arrays}, protocol=p)
        for p in range(pickle.HIGHEST_PROTOCOL + 1)
    ]
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(600):
        blob = bytearray(rng.choice(blobs))
        k = rng.randrange(len(blob))
        change = rng.random()
        if change < 0.6:
            blob[k] = rng.randrange(256)
        elif change < 0.8:
            del blob[k]
        else:
            blob.insert(k, rng.randrange(256))
        try:
            safe_load_pickle(io.BytesIO(bytes(blob)), source="batch")
            outcomes["loaded"] += 1
        except DataError as exc:
            assert str(exc).startswith("batch is not a safe data pickle ("), exc
            outcomes["refused"] += 1
    assert min(outcomes.values()) > 0, outcomes


def test_corrupt_lengths_and_memo_indices_do_not_allocate() -> None:
    """A huge BYTEARRAY8 length is refused before any allocation; a huge memo index (the C
    unpickler grows an array to it) costs nothing."""
    huge_bytearray = b"\x80\x05\x96" + (2**60).to_bytes(8, "little") + b"ab."
    with pytest.raises(DataError, match="runs past the end of the file"):
        safe_load_pickle(io.BytesIO(huge_bytearray), source="b")
    huge_memo = b"\x80\x02]r\xff\xff\xff\x7f."  # EMPTY_LIST, LONG_BINPUT 2**31 - 1, STOP
    assert safe_load_pickle(io.BytesIO(huge_memo)) == []


def test_calls_the_allowed_globals_only_in_the_way_pickle_writes_them() -> None:
    refused = {
        "bytearray(size)": b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R.",
        "bytes(size)": b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.",
        "encode(zlib)": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",
        "ndarray alone": b"\x80\x02cnumpy\nndarray\n.",
        "object dtype": b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8K\x00K\x01\x87R.",
    }
    for name, blob in refused.items():
        with pytest.raises(DataError, match="is not a safe data pickle"):
            safe_load_pickle(io.BytesIO(blob), source=name)


def test_a_python2_cifar_batch_still_loads() -> None:
    """The layout of the real files (cPickle, protocol 2): ``numpy.core`` names, ``str`` codes."""
    blob = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\n"
        b"ndarray\nK\x00\x85U\x01b\x87R(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01"
        b"\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x06abcdeftb"
        b"U\x06labels]q\x03(K\x01K\x02eu."
    )
    out = safe_load_pickle(io.BytesIO(blob))
    assert out[b"labels"] == [1, 2]
    np.testing.assert_array_equal(out[b"data"], np.frombuffer(b"abcdef", np.uint8).reshape(2, 3))


def test_cifar_archive_corrupt_or_incomplete(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    with pytest.raises(DataError) as excinfo:
        read_cifar10(tmp_path)
    assert "cifar-10-python.tar.gz is not a readable CIFAR-10 archive" in _error(excinfo)
    _write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match="has no cifar-10-batches-py/test_batch; re-download"):
        read_cifar10(tmp_path)


# ------------------------------------------------------------------------------ MNIST (IDX)
def _idx(array: np.ndarray, kind: int = 0x08) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, kind, array.ndim]) + dims + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, **replace: bytes) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(20) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(10) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / name).write_bytes(replace.get(name, _idx(array)))


def _corrupt_gzip(blob: bytes) -> bytes:
    broken = bytearray(gzip.compress(blob, mtime=0))
    broken[10] = 0x07  # the first deflate block: final, of the reserved type 3
    return bytes(broken)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x00\x00\x08\x03", "its header is cut short: 3 dimensions need a 16-byte header"),
        (b"\x00\x00\x08", "bad magic number 000008"),
        (b"", "bad magic number none"),
        (b"PK\x03\x04rest", "bad magic number 504b0304"),
        (_idx(np.zeros((2, 3)))[:-1], "the file is truncated"),
        (_idx(np.zeros((2, 3))) + b"x", "followed by stray bytes"),
        (bytes([0, 0, 8, 3]) + b"\xff" * 12, "the file is truncated"),
    ],
)
def test_idx_files_cut_or_not_idx(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    message = _error(excinfo)
    assert message.startswith(f"{path} is not a readable IDX file (")
    assert expected in message and "re-download it from the MNIST distribution" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (_corrupt_gzip(_idx(np.zeros((2, 3)))), "zlib.error: Error -3"),
        (gzip.compress(_idx(np.zeros((2, 3))))[:-12], "EOFError"),
        (b"not gzip at all", "BadGzipFile"),
        (gzip.compress(b"\x00\x00\x08\x03"), "its header is cut short"),
    ],
)
def test_gzip_idx_files_with_a_corrupt_stream(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    message = _error(excinfo)
    assert message.startswith(f"{path} is not a readable IDX file (") and expected in message


def test_mnist_directories_with_broken_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "ok")
    assert read_mnist(tmp_path / "ok").train_labels.tolist() == [i % 10 for i in range(20)]
    _write_mnist(tmp_path / "short", **{"train-images-idx3-ubyte": b"\x00\x00\x08\x03"})
    with pytest.raises(DataError, match="train-images-idx3-ubyte is not a readable IDX file"):
        load_dataset(f"mnist:{tmp_path / 'short'}")
    labels = _idx(np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    _write_mnist(tmp_path / "label12", **{"t10k-labels-idx1-ubyte": labels})
    with pytest.raises(DataError) as excinfo:
        read_mnist(tmp_path / "label12")
    assert "t10k-labels-idx1-ubyte is not an MNIST label file" in _error(excinfo)
    assert "values from 0 to 12" in _error(excinfo)
    wide = bytes([0, 0, 0x0C, 1]) + (10).to_bytes(4, "big") + np.arange(10, dtype=">i4").tobytes()
    _write_mnist(tmp_path / "int32", **{"t10k-labels-idx1-ubyte": wide})
    with pytest.raises(DataError, match="holds >i4 values, not unsigned bytes"):
        read_mnist(tmp_path / "int32")


# ------------------------------------------------------------------------------ SVHN (.mat)
@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"X": np.zeros((32, 32, 3, 4), np.uint8)}, "'y' must hold 4 labels in 1..10"),
        (
            {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([["a"], ["b"]])},
            "'y' must hold 4 labels",
        ),
        ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1))}, "got an array"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [2]])}, "whole"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[11], [2]])}, "2 to 11"),
        ({"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))}, "32×32×3×N array"),
        ({"X": np.zeros((32, 32, 3, 2)), "y": np.ones((2, 1))}, "unsigned bytes"),
        ({"y": np.ones((2, 1))}, "'X' must be a 32×32×3×N array, got None"),
    ],
)
def test_svhn_files_without_images_or_labels(tmp_path: Path, variables: dict, expected: str):
    savemat = pytest.importorskip("scipy.io").savemat
    for name in ("train_32x32.mat", "test_32x32.mat"):
        savemat(tmp_path / name, variables)
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"svhn:{tmp_path}")
    message = _error(excinfo)
    assert f"{tmp_path / 'train_32x32.mat'} is not an SVHN .mat file (" in message
    assert expected in message and "re-download" in message


def test_svhn_file_that_is_not_a_mat_file(tmp_path: Path) -> None:
    pytest.importorskip("scipy.io")
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / name).write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)))
    with pytest.raises(DataError, match=r"train_32x32.mat is not an SVHN .mat file \("):
        load_dataset(f"svhn:{tmp_path}")
