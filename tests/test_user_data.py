"""Tests of the user's own data: npz:, csv:, folder: and package.module:factory data specs
(geninf.bench.user_data, user_folder, data_specs), and the worked example of docs/cli.md."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geninf.bench import load_dataset
from geninf.cli import main
from geninf.errors import DataError, InputError

ROOT = Path(__file__).resolve().parents[1]
_names = itertools.count()


def _features(n: int, k: int = 3, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose first feature is the row index (to check alignment), labels cycling 0..k-1."""
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)
    return x, np.arange(n) % k


def _rows(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x[:, 0].round().tolist()]


# ------------------------------------------------------------------------------------ npz
def test_npz_is_split_seeded_stratified_and_aligned(tmp_path: Path) -> None:
    x, y = _features(200)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    splits = load_dataset(f"npz:{tmp_path / 'd.npz'}", seed=4)
    assert splits.sizes == {"train": 140, "validation": 30, "test": 30}
    assert splits.num_classes == 3 and splits.input_shape == (4,)
    assert splits.class_names == ("0", "1", "2") and splits.sources == {}
    rows = {k: _rows(getattr(splits, k)[0]) for k in ("train", "validation", "test")}
    assert sorted(sum(rows.values(), [])) == list(range(200))  # a partition of the rows
    for split in ("train", "validation", "test"):
        torch.testing.assert_close(getattr(splits, split)[1], torch.from_numpy(y[rows[split]]))
        torch.testing.assert_close(getattr(splits, split)[0], torch.from_numpy(x[rows[split]]))
    again = load_dataset(f"npz:{tmp_path / 'd.npz'}", seed=4)
    other = load_dataset(f"npz:{tmp_path / 'd.npz'}", seed=5)
    assert torch.equal(again.train[0], splits.train[0])
    assert not torch.equal(other.train[0], splits.train[0])


def test_npz_given_splits_images_and_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(60, 1, 6, 5), dtype=np.uint8)
    y = np.arange(60) % 2
    np.savez(
        tmp_path / "img.npz",
        x=images[:40],
        y=y[:40],
        x_val=images[40:50],
        y_val=y[40:50],
        x_test=images[50:, 0],  # N×H×W is one channel
        y_test=y[50:],
        class_names=np.array(["cat", "dog"]),
    )
    splits = load_dataset(f"npz:{tmp_path / 'img.npz'}", max_eval=6)
    assert splits.sizes == {"train": 40, "validation": 6, "test": 6}
    assert splits.class_names == ("cat", "dog") and splits.input_shape == (1, 6, 5)
    as_bytes = torch.round(splits.validation[0] * 255).to(torch.uint8)  # uint8 ÷ 255
    stored = torch.from_numpy(images[40:50])
    assert all(any(torch.equal(a, b) for b in stored) for a in as_bytes)
    only_test = tmp_path / "t.npz"
    np.savez(only_test, x=images[:40], y=y[:40], x_test=images[50:], y_test=y[50:])
    assert load_dataset(f"npz:{only_test}").sizes == {"train": 36, "validation": 4, "test": 10}


def _npz(tmp_path: Path, **arrays: object) -> str:
    np.savez(tmp_path / "bad.npz", **arrays)
    return f"npz:{tmp_path / 'bad.npz'}"


X, Y = _features(30)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": X}, "has no array 'y'"),
        ({"inputs": X, "y": Y}, "has no array 'x' (unknown: inputs)"),
        ({"x": X, "y": Y, "x_test": X}, "has x_test but no y_test; give both or neither"),
        ({"x": X, "y": Y + 1}, "labels must be integers from 0"),
        ({"x": X, "y": Y * 2}, "no example of class 1: renumber the classes 0..2"),
        ({"x": X, "y": Y - 1}, "holds the label -1; labels must be integer classes 0..K-1"),
        ({"x": X, "y": Y + 0.5}, "holds 0.5; labels must be integer classes"),
        ({"x": X, "y": np.array(["a"] * 30)}, "y holds <U1 values; it must be a numeric array"),
        ({"x": X, "y": Y[:-1]}, "y has shape (29,) but its inputs hold 30 examples"),
        ({"x": X, "y": Y * 0}, "one class only"),
        ({"x": X[:, :, None, None, None], "y": Y}, "inputs must be N×D features"),
        ({"x": np.where(X > 1, np.nan, X), "y": Y}, "NaN or infinite"),
        ({"x": X, "y": Y, "x_test": X[:, :2], "y_test": Y}, "give every split the same"),
        ({"x": X, "y": Y, "class_names": np.array(["a", "b"])}, "2 names for 3 classes"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(_npz(tmp_path, **arrays))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_npz_files_that_are_missing_or_not_npz(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist or is not a file; npz:PATH needs"):
        load_dataset(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="is not a readable .npz of numeric arrays"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 3), y=np.arange(3))
    with pytest.raises(DataError, match="is not a readable .npz"):  # no pickle is loaded
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")


# ------------------------------------------------------------------------------------ csv
def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_a_named_label_column(tmp_path: Path) -> None:
    lines = ["id,f,klass"] + [f"{i},{i * 0.5},{i % 2}" for i in range(40)]
    path = _csv(tmp_path, "\n".join(lines) + "\n")
    splits = load_dataset(f"csv:{path}#klass", seed=1)
    assert splits.input_shape == (2,) and splits.num_classes == 2
    rows = _rows(splits.train[0])
    torch.testing.assert_close(splits.train[0][:, 1], torch.tensor(rows) * 0.5)
    torch.testing.assert_close(splits.train[1], torch.tensor(rows) % 2)
    default = _csv(tmp_path, "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    assert load_dataset(f"csv:{default}").sizes == {"train": 12, "validation": 4, "test": 4}


@pytest.mark.parametrize(
    ("text", "spec_suffix", "message"),
    [
        ("a,b\n1,2\n", "", "has no column 'label' (its columns: a, b); name the label column"),
        ("a,label\n1,0\nx,1\n", "", "row 3, column 'a': 'x' is not a number"),
        ("a,label\n1,0\n1,1,5\n", "", "row 3: 3 cells but the header has 2"),
        ("a,label\n", "", "holds no data row"),
        ("label\n0\n1\n", "", "no feature column besides 'label'"),
        ("a,y\n1,0\n2,1.5\n", "#y", "holds 1.5; labels must be integer classes"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, spec_suffix: str, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{path}{spec_suffix}")
    assert message in str(info.value)


# --------------------------------------------------------------------------------- folder
def _image(path: Path, value: int, size: tuple[int, int] = (5, 4), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)


def _folder(root: Path, counts: dict[str, int], mode: str = "L") -> None:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            _image(root / name / f"{i:02d}.png", 10 * c + i, mode=mode)


def test_folder_of_class_subfolders(tmp_path: Path) -> None:
    _folder(tmp_path / "d", {"cat": 10, "ant": 10})
    (tmp_path / "d" / "cat" / "notes.txt").write_text("skipped")
    splits = load_dataset(f"folder:{tmp_path / 'd'}")
    assert splits.class_names == ("ant", "cat") and splits.input_shape == (1, 4, 5)
    assert sum(splits.sizes.values()) == 20
    for x, y in (splits.train, splits.test):  # each image's value says its class and index
        value = torch.round(x[:, 0, 0, 0] * 255).long()
        torch.testing.assert_close(y, 1 - value // 10)


def test_folder_with_split_folders_and_colour(tmp_path: Path) -> None:
    _folder(tmp_path / "d" / "train", {"a": 10, "b": 10})
    _folder(tmp_path / "d" / "test", {"a": 2, "b": 2}, mode="RGB")  # colour: all become RGB
    splits = load_dataset(f"folder:{tmp_path / 'd'}")
    assert splits.input_shape == (3, 4, 5)
    assert splits.sizes == {"train": 18, "validation": 2, "test": 4}
    for i, suffix in enumerate((".JPG", ".jpeg", ".png", ".jpg")):  # JPEG too, any case
        _image(tmp_path / "j" / "a" / f"{i}{suffix}", 100)
        _image(tmp_path / "j" / "b" / f"{i}{suffix}", 200)
    splits = load_dataset(f"folder:{tmp_path / 'j'}", validation_fraction=0.0, test_fraction=0.25)
    assert splits.sizes == {"train": 6, "validation": 0, "test": 2}
    assert splits.input_shape == (1, 4, 5)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist or is not a directory"):
        load_dataset(f"folder:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no class folder"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    _folder(tmp_path / "e", {"a": 3})
    (tmp_path / "e" / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder .*/b holds no PNG or JPEG image"):
        load_dataset(f"folder:{tmp_path / 'e'}")
    _folder(tmp_path / "m", {"a": 3, "b": 3})
    _image(tmp_path / "m" / "b" / "big.png", 0, size=(6, 4))
    with pytest.raises(DataError, match=r"big.png is 6×4 pixels but .*/a/00.png is 5×4"):
        load_dataset(f"folder:{tmp_path / 'm'}")
    _folder(tmp_path / "c", {"a": 3, "b": 3})
    (tmp_path / "c" / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="bad.png is not a readable PNG or JPEG image"):
        load_dataset(f"folder:{tmp_path / 'c'}")
    _folder(tmp_path / "s" / "train", {"a": 3, "b": 3})
    _folder(tmp_path / "s" / "test", {"a": 3, "c": 3})
    with pytest.raises(DataError, match="use the same class folders in every split"):
        load_dataset(f"folder:{tmp_path / 's'}")


# -------------------------------------------------------------------------------- factory
def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A fresh importable module holding ``body``; returns its name."""
    name = f"user_data_factory_{next(_names)}"
    (tmp_path / f"{name}.py").write_text("import numpy as np\n" + body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_factory_mapping_and_pairs(tmp_path: Path, monkeypatch) -> None:
    name = _module(
        tmp_path,
        monkeypatch,
        "def as_dict():\n"
        "    x = np.arange(80.0).reshape(40, 2)\n"
        "    return {'x': x, 'y': np.arange(40) % 2}\n"
        "def as_pairs():\n"
        "    import torch\n"
        "    x = torch.arange(80.0).reshape(40, 2)\n"
        "    y = torch.arange(40) % 4\n"
        "    return (x[:30], y[:30]), None, (x[30:], y[30:])\n",
    )
    assert load_dataset(f"{name}:as_dict").sizes == {"train": 28, "validation": 6, "test": 6}
    splits = load_dataset(f"{name}:as_pairs")
    assert splits.num_classes == 4 and splits.sizes["test"] == 10
    assert sorted(_rows(splits.test[0] / 2)) == list(range(30, 40))


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("def f():\n    raise ValueError('no data today')\n", DataError, "raised ValueError: no"),
        ("def f():\n    return [1, 2]\n", DataError, "returned a list of 2 items; return a dict"),
        ("def f():\n    return (1, None, None)\n", DataError, "its train split is a int"),
        ("f = 3\n", InputError, "is a int, not a function to call"),
        ("def g():\n    pass\n", InputError, "has no attribute 'f'"),
    ],
)
def test_factory_errors(tmp_path: Path, monkeypatch, body: str, error: type, message: str) -> None:
    name = _module(tmp_path, monkeypatch, body)
    with pytest.raises(error) as info:
        load_dataset(f"{name}:f")
    assert message in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------ spec rules
@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("imagenet", InputError, "unknown data set 'imagenet'; expected one of digits, mnist5k"),
        ("no_such_module_here:load", InputError, "cannot import module 'no_such_module_here'"),
        ("npz:", InputError, "needs a path: write npz:PATH"),
        ("a-b:c", InputError, "unknown data set 'a-b:c'"),
        ("mnist:/nonexistent", DataError, "MNIST not found"),  # a registered name wins
        ("digits:x", InputError, "digits is embedded and takes no path"),
    ],
)
def test_spec_rules(spec: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        load_dataset(spec)
    assert message in str(info.value)


# ------------------------------------------------------------------------ command line
def _worked_example() -> list[str]:
    """The commands of the worked example in docs/cli.md (between its two markers)."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    block = text.split("<!-- worked-example -->", 2)[1]
    lines = block.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    return [line.split("  #", 1)[0].strip() for line in lines if line.strip()]


def test_the_worked_example_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    commands = _worked_example()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(c in readme for c in commands), "README and docs/cli.md show the same commands"
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "python":
            assert argv[1] == "-c"
            exec(argv[2], {})  # noqa: S102 - the documented one-liner that writes the .npz
            continue
        assert argv[0] == "geninf", command
        assert main([*argv[1:], "--quiet"]) == 0, (command, capsys.readouterr().err)
    trained = json.loads((tmp_path / "runs/own/config.json").read_text())["checkpoint"]["data"]
    assert trained["spec"] == "npz:digits.npz" and trained["seed"] == 0
    removed = json.loads((tmp_path / "runs/own-minus-3/config.json").read_text())
    assert removed["checkpoint"]["data"]["spec"] == "npz:digits.npz"  # read from the record
    results = json.loads((tmp_path / "runs/own-minus-3/results.json").read_text())
    assert results["kind"] == "remove"
    scores = (tmp_path / "runs/own-scores/scores.csv").read_text().splitlines()
    assert len(scores) > 4
    assert "Removing class:3" in (tmp_path / "runs/own-minus-3/report.html").read_text()


def test_a_moved_data_file_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    x, y = _features(60)
    np.savez("d.npz", x=x, y=y)
    run = ["train", "--data", "npz:d.npz", "--model", "mlp", "--epochs", "1", "--quiet"]
    assert main([*run, "--out", "run"]) == 0
    Path("d.npz").rename("moved.npz")
    capsys.readouterr()
    code = main(["score", "--checkpoint", "run", "--out", "s", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "d.npz does not exist" in err[0] and "pass --data npz:PATH" in err[0]
    args = ["--checkpoint", "run", "--data", "npz:moved.npz", "--queries", "test:0-1"]
    assert main(["score", *args, "--out", "s", "--quiet", "--solver", "cg", "--max-iter", "2"]) == 0
