"""``--config PATH`` (docs/cli.md): options of a subcommand from a JSON or TOML file.

The bad files are rows E76–E86 of tests/test_catalogue.py; here: what a good file does — the
options it sets, the command line overriding it, the record in config.json — and the mapping
from values to command-line tokens for every kind of option.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from geninf.cli import main
from geninf.cli.config import expand_config
from geninf.cli.parser import build_parser
from geninf.errors import InputError

SMALL = {"data": "digits", "model": "mlp", "epochs": 1, "max_train": 100, "max-eval": 50}


def write(path: Path, content: dict | str) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def expand(argv: list[str]) -> list[str]:
    return expand_config(build_parser(), argv)


def test_json_config_runs_and_the_command_line_overrides_it(tmp_path, capsys):
    cfg = write(tmp_path / "train.json", {**SMALL, "lr": 0.002, "seed": 4, "quiet": True})
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--seed", "7"]) == 0
    capsys.readouterr()
    record = json.loads((out / "config.json").read_text())
    options = record["options"]
    assert options["data"] == "digits" and options["max_train"] == 100
    assert options["max_eval"] == 50 and options["lr"] == 0.002
    assert options["seed"] == 7  # the command line wins
    assert record["argv"][:3] == ["train", "--config", str(cfg)]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_toml_config_with_a_flag_and_a_negated_flag(tmp_path):
    cfg = write(
        tmp_path / "train.toml",
        'data = "digits"\nmodel = "mlp"\nnormalize = true\nflatten = false\nepochs = 3\n',
    )
    argv = expand(["train", "--config", str(cfg), "--epochs", "1"])
    assert argv == [
        "train",
        "--data=digits",
        "--model=mlp",
        "--normalize",
        "--no-flatten",
        "--epochs=3",
        *["--config", str(cfg), "--epochs", "1"],
    ]
    args = build_parser().parse_args(argv + ["--out", "x"])
    assert args.normalize is True and args.flatten is False and args.epochs == 1


def test_tokens_for_each_kind_of_option(tmp_path):
    cfg = write(
        tmp_path / "bench.json",
        {
            "ratios": [0.01, 0.05],
            "methods": ["gif", "original"],
            "seeds": 2,
            "quick": True,
            "force": False,
            "forget_class": -1,
            "cache-dir": "-odd name",
        },
    )
    argv = expand(["bench", "--config", str(cfg), "class-removal"])
    assert argv == [
        "bench",
        "--ratios=0.01,0.05",
        "--methods=gif,original",
        "--seeds=2",
        "--quick",
        "--forget-class=-1",
        "--cache-dir=-odd name",
        "--config",
        str(cfg),
        "class-removal",
    ]
    args = build_parser().parse_args(argv)
    assert args.ratios == (0.01, 0.05) and args.forget_class == -1 and args.quick
    assert args.cache_dir == "-odd name" and args.force is False


def test_a_config_can_give_required_options_and_numbers_as_strings(tmp_path):
    cfg = write(tmp_path / "r.json", {"checkpoint": "ck", "forget": "class:1", "ratio": "0.1"})
    args = build_parser().parse_args(expand(["remove", "--config", str(cfg), "--out", "o"]))
    assert args.checkpoint == "ck" and args.forget == "class:1" and args.ratio == 0.1


def test_a_config_gives_lists_as_arrays_and_unlearning_options_as_an_object(tmp_path, capsys):
    options = {"scrub_alpha": 0, "l1_strength": 1e-3}
    cfg = write(tmp_path / "r.json", {"checkpoint": "ck", "forget": "class:1", "gammas": [0.1, 1],
                                      "unlearning_options": options})  # fmt: skip
    args = build_parser().parse_args(expand(["remove", "--config", str(cfg), "--out", "o"]))
    assert args.gammas == (0.1, 1.0)
    assert args.unlearning_options == {"scrub_alpha": 0.0, "l1_strength": 1e-3}
    bad = write(tmp_path / "b.json", {"checkpoint": "ck", "forget": "class:1",
                                      "unlearning_options": {"scrub_alpha": "x"}})  # fmt: skip
    assert main(["remove", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "expected KEY=NUMBER pairs" in capsys.readouterr().err
    arr = write(tmp_path / "a.json", {"checkpoint": "ck", "forget": "class:1",
                                      "unlearning_options": [1]})  # fmt: skip
    assert main(["remove", "--config", str(arr), "--out", str(tmp_path / "o")]) == 2
    assert "takes a string or an object, got an array" in capsys.readouterr().err


def test_empty_config_and_no_config_change_nothing(tmp_path):
    cfg = write(tmp_path / "empty.json", {})
    argv = ["report", "somewhere", "--config", str(cfg)]
    assert expand(argv) == argv
    plain = ["train", "--data", "digits"]
    assert expand(plain) is plain


@pytest.mark.parametrize(
    "content, fragment",
    [
        ({"epochs": 2, "Epochs": 3}, '"Epochs" is not an option of geninf train'),
        ('{"epochs": 2, "epochs": 3}', 'key "epochs" appears twice'),
        ({"epochs": 2, "max-train": 3, "max_train": 4}, "--max-train is given twice"),
        ({"data": None}, '"data": --data takes a string or a number, got null'),
        ({"data": True}, "got a boolean"),
        ({"device": ["cpu"]}, "--device takes a string or a number, got an array"),
        ({"epochs": 2.5}, "expected a positive integer, got '2.5'"),
        ({"lr": float("nan")}, "expected a finite number > 0, got 'nan'"),
        ({"flatten": 1}, "--flatten is a flag: give true or false, got a number"),
        ({"--epochs": 2}, "without the leading dashes"),
        ({"help": True}, '"help" is not an option of geninf train'),
        ({"out": {"dir": "x"}}, "--out takes a string or a number, got an object"),
        ("", "is not valid JSON: Expecting value at line 1, column 1"),
        ("3", "got a number"),
        ("[" * 100_000, "is not valid JSON: nested too deeply"),
        ('{"epochs": ' + "9" * 5000 + "}", "is not valid JSON: Exceeds the limit"),
        (r'{"data": "a\u0000b"}', "--data holds a NUL character or invalid Unicode"),
        (r'{"data": "\ud800"}', "--data holds a NUL character or invalid Unicode"),
        (r'{"a\nb": 1}', r'"a\nb" is not an option of geninf train'),
    ],
)
def test_bad_values_are_one_line_exit_2(tmp_path, capsys, content, fragment):
    cfg = write(tmp_path / "c.json", content)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geninf: error: config file "), err
    assert fragment in err[0]
    assert list(tmp_path.iterdir()) == [cfg]


def test_positional_keys_and_unreadable_files(tmp_path, capsys):
    cfg = write(tmp_path / "b.json", {"experiment": "selection"})
    assert main(["bench", "--config", str(cfg)]) == 2
    assert "is a positional argument" in capsys.readouterr().err
    folder = tmp_path / "dir.json"
    folder.mkdir()
    assert main(["train", "--config", str(folder)]) == 2
    assert "it is a directory" in capsys.readouterr().err
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["train", "--config", str(binary)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["train", "--config"]) == 2
    assert "expected one argument" in capsys.readouterr().err


def test_every_subcommand_lists_config_in_its_help(capsys):
    for command in ("demo", "train", "remove", "relabel", "score", "bench", "report"):
        assert main([command, "--help"]) == 0
        assert "--config PATH" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "--config" not in capsys.readouterr().out


def test_debug_shows_the_config_error(tmp_path):
    cfg = write(tmp_path / "c.json", {"nope": 1})
    with pytest.raises(InputError, match="nope"):
        main(["train", "--config", str(cfg), "--debug"])
