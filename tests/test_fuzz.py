"""Fuzzing the ``geninf`` command line and its ``--config`` files with hypothesis.

After every example, whatever the arguments:

- ``main()`` returns (it never raises) an exit status in {0, 2, 3}; 1 is an internal error, i.e. a
  bug, and fails the test. An error (2 or 3) is one ``geninf: error: ...`` (or ``geninf: numerical
  failure: ...``) line on stderr, without a traceback. ``main`` leaves torch's default dtype and
  gradient mode as they were.
- No partial output: a failed run changes no file at all (``report`` may only have replaced some of
  its report files, each whole; directories left empty by a failed run, such as the parents of a
  nested ``--out``, are not outputs); a successful run changes files only inside its output
  directory (``--out``, or ``report``'s RUN_DIR), which then holds the complete set
  ``config.json``, ``results.json``, ``report.md``, ``report.html`` (+ ``model.safetensors`` for
  train, remove and relabel); an existing directory is replaced only with ``--force``; no staging
  directory (``.NAME.staging-*``, ``.NAME.old-*``) or temporary file (``.NAME.*.tmp``) is left
  anywhere; the input checkpoint's bytes are unchanged. With ``--json``, stdout is the run's
  ``results.json``.

How an argv is built (:func:`cli_argv`): a subcommand (train, remove, relabel, score, report);
its required options, each present 19 times in 20 (with a bad value one time in 8); up to five
other options, chosen among those :func:`geninf.cli.parser.build_parser` declares (so the test
follows the parser: an option added later is fuzzed with generic values until it gets a pool
here), each with a bad value one time in 3 and written ``--opt VALUE`` or ``--opt=VALUE``; one
time in 8 a stray token (an unknown option, ``--``, a positional, an ambiguous abbreviation,
``--help``, ``--version``). Values come from :data:`POOLS` — valid values, and nasty ones:
negative, zero, huge, nan, inf, empty, unicode, malformed specs, existing and missing paths,
files where directories are expected — or, for the options that neither name files nor set the
amount of work, generic random text and numbers. ``--debug`` is never fuzzed (it re-raises by
design); ``--config`` has its own test (:func:`config_case`: JSON, TOML or malformed files with
real and unknown keys and values of any JSON type). Paths are relative: every example runs in a
fresh copy of a workspace (the run directories of a train, a remove and a score run, a ``.pt``
state dict, a truncated file, good and bad index/CSV files, an empty and a non-empty directory...)
as its working directory, so nothing is written outside it.

Keeping every example fast (a few ms for a usage error, under a second for most runs): the
checkpoint is a tiny MLP (width 0.125, 1,266 parameters; trained once per module with ``train
--data digits --model mlp --width 0.125 --epochs 1 --max-train 200 --max-eval 100``), and the
options that set the amount of work (:data:`POOL_ONLY`: ``--epochs``, ``--max-iter``,
``--max-steps``, ``--budget``, ``--batch-size``, ``--width``, ``--threads``) are clamped: their
pools hold small valid values next to invalid ones, never random numbers (a huge ``--epochs`` or
``--budget`` is only slow, a huge ``--width`` exhausts memory, a huge ``--threads`` starts that
many threads). Where such an option is absent from an example, a small value is appended
*after* the fuzzed options (:data:`FAST_DEFAULTS`: ``--epochs 1 --max-train 100 --max-eval 100``
for train; ``--max-iter 3`` for the editing and scoring commands (LiSSA's depth; the dense
solver ignores it); ``--queries test:0-1 --train-examples 60`` for score), so it never
overrides a fuzzed value.

Reproducible: ``derandomize=True`` and no example database. :data:`CLI_EXAMPLES` (200) and
:data:`CONFIG_EXAMPLES` (100) examples take 50-65 s together with ``OMP_NUM_THREADS=1``. Each
example is counted by command and exit status in :data:`STATS` (printed when the module ends,
visible with ``pytest -s``) and as a hypothesis ``event`` (``--hypothesis-show-statistics``).
Bugs found by fuzzing are kept as explicit ``@example``s (:data:`FINDINGS`), checked first on
every run; shrinking a new failure can take minutes (each try is a real run).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from geninf.cli import main
from geninf.cli.parser import build_parser

try:  # --config (geninf.cli.config); the config test is skipped without it
    from geninf.cli.config import expand_config
except ImportError:  # pragma: no cover - depends on the state of the tree
    expand_config = None  # type: ignore[assignment]

CLI_EXAMPLES = 200
CONFIG_EXAMPLES = 100
COMMANDS = ("train", "remove", "relabel", "score", "report")
#: options never fuzzed here: --debug re-raises on purpose; --config has its own test
NOT_FUZZED = {"debug", "config", "help", "version"}
WRITES_MODEL = {"train", "remove", "relabel"}
RUN_FILES = ("config.json", "results.json", "report.md", "report.html")
REPORT_FILES = re.compile(r"^(report\.md|report\.html|geninf-run\.json|plots/.*)$")
#: what a failed ``report`` may have replaced (each file whole), wherever its RUN_DIR is
REPORT_CHANGE = re.compile(r"(^|/)(report\.md|report\.html|geninf-run\.json|plots/[^/]+)$")
LEFTOVER = re.compile(r"^\..+\.(staging|old)-|^\..+\.tmp$")
HUGE = "99999999999999999999"
TRAIN_CHECKPOINT = [
    "train",
    "--data",
    "digits",
    "--model",
    "mlp",
    "--width",
    "0.125",
    "--epochs",
    "1",
    "--max-train",
    "200",
    "--max-eval",
    "100",
    "--quiet",
]
#: (command, exit status) → examples, over both tests; printed at the end of the module
STATS: Counter[str] = Counter()


# ----------------------------------------------------------------------------- the parser
@dataclass(frozen=True)
class OptionSpec:
    """One option of a subcommand, as declared in the parser."""

    flags: tuple[str, ...]
    dest: str
    takes_value: bool
    required: bool
    choices: tuple[str, ...] | None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the geninf parser has no subcommands")


def option_specs(command: str) -> list[OptionSpec]:
    """The fuzzed options of ``command``, read from :func:`build_parser`."""
    sub = _subparsers(build_parser())[command]
    specs = []
    for action in sub._actions:
        if not action.option_strings or action.dest in NOT_FUZZED:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        flags = tuple(s for s in action.option_strings if s.startswith("--"))
        choices = tuple(str(c) for c in action.choices) if action.choices else None
        specs.append(OptionSpec(flags, action.dest, action.nargs != 0, action.required, choices))
    return specs


SPECS: dict[str, list[OptionSpec]] = {c: option_specs(c) for c in COMMANDS}

# ----------------------------------------------------------------------------- value pools
NOT_NUMBERS = ["", "x", "1,5", "nan", "inf", "-inf", "1e3", "0x10", " 2", "١", "2.5"]
#: dest → (valid values, invalid or nasty values). Work-setting options hold small values only.
POOLS: dict[str, tuple[list[str], list[str]]] = {
    "epochs": (["1", "2"], ["0", "-1", *NOT_NUMBERS]),
    "max_train": (["30", "100", HUGE], ["0", "-5", *NOT_NUMBERS]),
    "max_eval": (["30", "100", HUGE], ["0", "-2", *NOT_NUMBERS]),
    "max_iter": (["1", "3"], ["0", "-1", *NOT_NUMBERS]),
    "max_steps": (["1", "2"], ["0", "-3", *NOT_NUMBERS]),
    "budget": (["1", "100", "400"], ["0", "-1", *NOT_NUMBERS]),
    "batch_size": (["64", "256", HUGE], ["0", "-1", *NOT_NUMBERS]),
    "k": (["1", "3", "20", "21"], ["0", "-1", HUGE, *NOT_NUMBERS]),
    "train_examples": (["10", "60", "201"], ["0", "-1", HUGE, *NOT_NUMBERS]),
    "threads": (["1", "2"], ["0", "-1", HUGE, *NOT_NUMBERS]),
    "seed": (["0", "1", "-1", "18446744073709551615"], [HUGE, "-" + HUGE, "1.0", "x", ""]),
    "data_seed": (["0", "3", "-1"], [HUGE, "-" + HUGE, "1.0", "x", ""]),
    "width": (["0.125", "0.25", "1"], ["0", "-1", "nan", "inf", "1e-9", "x", ""]),
    "ratio": (["0.05", "0.2", "1"], ["0", "-0.1", "1.5", "nan", "inf", "1e-9", "x", ""]),
    "damping": (["0.01", "0", "1"], ["-1", "nan", "inf", "1e300", "x", ""]),
    "tol": (["1e-6", "0.5"], ["0", "-1", "nan", "inf", "x", ""]),
    "gammas": (["0.1", "0.03,0.1"], ["0", ",", "nan", "-1", "inf", "x,y", "", "1e308"]),
    "lr": (["0.001", "0.1"], ["1e30", "0", "-1", "nan", "inf", "x", ""]),
    "weight_decay": (["0", "1e-4"], ["-1", "nan", "inf", "x", ""]),
    "device": (["cpu", "auto"], ["cuda", "cuda:7", "CPU", "tpu", "", "cuda:x", "gpu"]),
    "data": (  # mnist5k takes 2 s to load; the data directories are made by _write_data_dirs
        ["digits", "digits", "digits", "mnist5k", "cifar10:cifar_ok", "mnist:mnist_ok"],
        [
            "cifar10:missing",
            "mnist:missing",
            "svhn:notes.txt",
            "cifar10:",
            "nonsense",
            "",
            "ünï",
            "cifar10:cifar_bad",
            "mnist:mnist_short",
            "mnist:mnist_gz",
            "svhn:svhn_no_y",
        ],
    ),
    "model": (
        ["mlp", "small_cnn", "tinynet"],
        [
            "nonsense",
            "",
            ":",
            "math:pi",
            "collections:OrderedDict",
            "no_such_module_xyz:f",
            "torch.nn:Linear",
            "torch.nn:Identity",
            "torch.nn:LazyLinear",
            "os.path:join",
        ],
    ),
    "checkpoint": (
        ["ckpt", "ckpt/model.safetensors", "edited"],
        ["state.pt", "truncated.safetensors", "missing", "empty", "notes.txt", "", "scored"],
    ),
    "out": (
        ["out", "out2/nested/run"],
        ["existing", "empty", "ckpt", "notes.txt", "notes.txt/run", "", ".", "ünïcödé", "ckpt/in"],
    ),
    "run_dir": (
        ["ckpt", "edited", "scored"],
        ["missing", "notes.txt", "empty", "broken", "", "existing"],
    ),
    "forget": (
        ["class:1", "class:0", "indices:forget.txt"],
        [
            "class:10",
            "class:-1",
            "class:x",
            "class:",
            "class:1.5",
            "indices:bad_forget.txt",
            "indices:dup_forget.txt",
            "indices:all_forget.txt",
            "indices:missing",
            "indices:",
            "indices:empty",
            "everything",
            "",
        ],
    ),
    "changes": (
        ["changes.csv"],
        ["bad_changes.csv", "same_label.csv", "missing.csv", "notes.txt", "empty", ""],
    ),
    "queries": (
        ["test:0-1", "validation:3,5", "train:0", "indices:queries.txt"],
        ["indices:missing", "test:5-2", "test:-1", "test:0-10000", "test:", "bogus", "", "test:x"],
    ),
}
#: options drawn from their pools only: they name files or import modules, or a random number
#: would set a huge amount of work (a huge --epochs is slow, a huge --width exhausts memory, a
#: huge --threads starts that many threads)
POOL_ONLY = {
    "checkpoint",
    "out",
    "run_dir",
    "forget",
    "changes",
    "queries",
    "data",
    "model",
    "epochs",
    "max_iter",
    "max_steps",
    "budget",
    "batch_size",
    "width",
    "threads",
}
STRAY = ["--no-such-option", "--bogus=1", "-z", "--", "stray", "--Out", "-h", "--max", "--che"]
STRAY += ["--version", "--help"]

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=6,
)
GENERIC: st.SearchStrategy[str] = st.one_of(
    _text,
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def option_value(draw: st.DrawFn, spec: OptionSpec, bad_one_in: int = 3) -> str:
    """A value for ``spec``: one of its valid values (choices are valid), or — one time in
    ``bad_one_in`` — a nasty one from its pool or (except for :data:`POOL_ONLY` options) generic
    random text or a number. The simplest draw is valid, so shrinking keeps the valid values."""
    valid, nasty = POOLS.get(spec.dest, ([], []))
    if spec.choices:
        valid, nasty = list(spec.choices), ["", "GIF", "nope", *nasty]
    if valid and draw(st.integers(0, bad_one_in - 1)) < bad_one_in - 1:
        return draw(st.sampled_from(valid))
    if spec.dest in POOL_ONLY:
        return draw(st.sampled_from(nasty or valid))
    return draw(st.one_of(st.sampled_from(nasty), GENERIC) if nasty else GENERIC)


@st.composite
def option_tokens(draw: st.DrawFn, spec: OptionSpec, bad_one_in: int = 3) -> list[str]:
    """``[--opt]``, ``[--opt, VALUE]`` or ``[--opt=VALUE]``."""
    flag = draw(st.sampled_from(spec.flags))
    if not spec.takes_value:
        return [flag]
    value = draw(option_value(spec, bad_one_in))
    return [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]


RUN_DIR = OptionSpec(("--run-dir",), "run_dir", True, True, None)


@st.composite
def cli_argv(draw: st.DrawFn) -> list[str]:
    """An argv from the grammar described in the module docstring: the required options are
    present 19 times in 20 and bad one time in 8; other options are bad one time in 3; a stray
    token comes one time in 8."""
    command = draw(st.sampled_from(COMMANDS))
    specs = SPECS[command]
    argv = [command]
    if command == "report" and draw(st.integers(0, 19)) < 19:
        argv.append(draw(option_value(RUN_DIR, bad_one_in=4)))
    for spec in specs:
        if spec.required and draw(st.integers(0, 19)) < 19:
            argv += draw(option_tokens(spec, bad_one_in=8))
    for spec in draw(st.lists(st.sampled_from(specs), max_size=5, unique_by=lambda s: s.dest)):
        argv += draw(option_tokens(spec))
    if draw(st.integers(0, 7)) == 7:
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(STRAY)))
    return argv


# ----------------------------------------------------------------------------- fast defaults
#: command → options appended (after the fuzzed ones) when an example does not set them
FAST_DEFAULTS: dict[str, list[tuple[str, str]]] = {
    "train": [("--epochs", "1"), ("--max-train", "100"), ("--max-eval", "100")],
    "remove": [("--max-iter", "3")],
    "relabel": [("--max-iter", "3")],
    "score": [("--max-iter", "3"), ("--queries", "test:0-1"), ("--train-examples", "60")],
    "report": [],
}
NO_MAX_ITER: set[str] = set()  # every solver takes --max-iter (dense ignores it)


def _given(argv: Sequence[str], flag: str) -> bool:
    return any(t == flag or t.startswith(flag + "=") for t in argv)


def _last_value(argv: Sequence[str], flag: str) -> str | None:
    value = None
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(flag + "="):
            value = token.partition("=")[2]
    return value


def with_fast_defaults(argv: list[str], config: dict[str, Any] | None = None) -> list[str]:
    """``argv`` with :data:`FAST_DEFAULTS` appended where neither argv nor ``config`` sets them."""
    if not argv or argv[0] not in FAST_DEFAULTS:
        return argv
    keys = {str(k).replace("_", "-") for k in (config or {})}
    solver = _last_value(argv, "--solver") or (config or {}).get("solver")
    solver = solver if isinstance(solver, str) else None
    extra: list[str] = []
    for flag, value in FAST_DEFAULTS[argv[0]]:
        if _given(argv, flag) or flag[2:] in keys:
            continue
        if flag == "--max-iter" and solver in NO_MAX_ITER:
            continue
        extra += [flag, value]
    return [*argv, *extra]


# ----------------------------------------------------------------------------- workspace
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The files every example starts from (copied afresh for each example)."""
    from geninf.bench import load_dataset
    from geninf.report import load_checkpoint

    root = tmp_path_factory.mktemp("fuzz-template")
    assert main([*TRAIN_CHECKPOINT, "--out", str(root / "ckpt")]) == 0
    ckpt = root / "ckpt"
    edit = ["--checkpoint", str(ckpt), "--max-iter", "3", "--quiet"]
    assert main(["remove", *edit, "--forget", "class:1", "--out", str(root / "edited")]) == 0
    scoring = ["--queries", "test:0-1", "--train-examples", "30"]
    assert main(["score", *edit, *scoring, "--out", str(root / "scored")]) == 0
    torch.save(load_checkpoint(ckpt).model.state_dict(), root / "state.pt")
    (root / "truncated.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:300])
    y = load_dataset("digits", seed=0, flatten=True, max_train=200, max_eval=100).train[1]
    files = {
        "forget.txt": "# first examples\n0 1, 2\n3\n",
        "bad_forget.txt": "0 x\n",
        "dup_forget.txt": "1 1\n",
        "all_forget.txt": " ".join(str(i) for i in range(len(y))) + "\n",
        "changes.csv": "index,new_label\n"
        + "".join(f"{i},{(int(y[i]) + 1) % 10}\n" for i in range(4)),
        "bad_changes.csv": "index,new_label\n0,x\n",
        "same_label.csv": f"0,{int(y[0])}\n",
        "queries.txt": "0 1 2\n",
        "notes.txt": "hello\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "empty").mkdir()
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("user data\n")
    (root / "broken").mkdir()
    shutil.copy(ckpt / "config.json", root / "broken" / "config.json")
    (root / "broken" / "results.json").write_text('{"kind": "train", ')
    (root / "dir.json").mkdir()
    _write_data_dirs(root)
    yield root
    print(f"\nfuzz examples by command and exit status: {dict(sorted(STATS.items()))}")


def _idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + array.astype(np.uint8).tobytes()


def _write_data_dirs(root: Path) -> None:
    """Tiny data directories for ``--data cifar10:DIR``, ``mnist:DIR`` and ``svhn:DIR``: valid
    ones (``cifar_ok``, ``mnist_ok``) and broken ones (labels missing from the CIFAR pickles, IDX
    files cut inside the header, gzip files with a corrupt deflate stream, SVHN files without
    ``y``) that fuzzing the file readers showed to fail with an internal error."""
    rng = np.random.default_rng(0)
    cifar = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for folder, labels in (("cifar_ok", list(range(10))), ("cifar_bad", None)):
        (root / folder).mkdir()
        for name in cifar:
            data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
            with open(root / folder / name, "wb") as fh:
                pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)
    mnist = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(40) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(20) % 10,
    }
    for folder in ("mnist_ok", "mnist_short", "mnist_gz"):
        (root / folder).mkdir()
    for name, array in mnist.items():
        (root / "mnist_ok" / name).write_bytes(_idx(array))
        (root / "mnist_short" / name).write_bytes(_idx(array)[:4])
        broken = bytearray(gzip.compress(_idx(array), mtime=0))
        broken[10] = 0x07  # the first deflate block: final, of the reserved type 3
        (root / "mnist_gz" / (name + ".gz")).write_bytes(bytes(broken))
    (root / "svhn_no_y").mkdir()
    try:
        from scipy.io import savemat
    except ImportError:  # without scipy, reading SVHN is an ordinary error
        return
    for name in ("train_32x32.mat", "test_32x32.mat"):
        savemat(root / "svhn_no_y" / name, {"X": np.zeros((32, 32, 3, 4), np.uint8)})


@contextlib.contextmanager
def workspace(template: Path) -> Iterator[Path]:
    """A fresh copy of ``template`` as the working directory; process state restored after."""
    base = Path(tempfile.mkdtemp(prefix="fuzz-", dir=template.parent))
    root = base / "ws"
    shutil.copytree(template, root)
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Snapshot:
    """The files (``{relative path: sha256}``) and directories under a workspace."""

    files: dict[str, str]
    dirs: set[str]


def snapshot(root: Path) -> Snapshot:
    """The files and directories under ``root``."""
    files, dirs = {}, set()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            dirs.add(rel)
        elif p.is_file() and not p.is_symlink():
            files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return Snapshot(files, dirs)


# ----------------------------------------------------------------------------- checks
@dataclass
class Outcome:
    """What one call of ``main`` did."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str


def run_main(argv: list[str]) -> Outcome:
    """Call ``main(argv)``, capturing its output; fail if it raises."""
    out, err = io.StringIO(), io.StringIO()
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except (Exception, SystemExit) as exc:
            pytest.fail(
                f"main({argv!r}) raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            )
    assert torch.get_default_dtype() == dtype, "main changed torch's default dtype"
    assert torch.is_grad_enabled() == grad, "main left gradients disabled"
    return Outcome(argv, code, out.getvalue(), err.getvalue())


def parse_like_main(argv: list[str]) -> argparse.Namespace | None:
    """The namespace ``main`` ran with (None: --help/--version or a usage error)."""
    parser = build_parser()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            full = expand_config(parser, argv) if expand_config is not None else argv
            return parser.parse_args(full)
        except (SystemExit, ValueError):
            return None


def _inside(rel: str, folder: str) -> bool:
    return folder in ("", ".") or rel == folder or rel.startswith(folder.rstrip("/") + "/")


def check_outcome(result: Outcome, root: Path, start: Snapshot) -> None:
    """Every property of the module docstring, for one example run in ``root`` (whose state
    before the run was ``start``). Directories left empty by a failed run (the parents of a
    nested ``--out``) are not outputs."""
    argv, code = result.argv, result.code
    command = next((a for a in argv if a in COMMANDS), "?")
    STATS[f"{command}:{code}"] += 1
    event(f"{command}: exit {code}")
    said = [line for line in result.stderr.splitlines() if line.startswith("geninf:")]
    assert isinstance(code, int) and code in (0, 2, 3), f"exit {code} for {argv!r}: {said}"
    assert "Traceback" not in result.stderr, result.stderr
    if code != 0:
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.startswith(("geninf: error", "geninf: numerical failure"))
        ]
        assert len(errors) == 1, f"expected one error line, got {result.stderr!r}"
    leftovers = [p for p in root.rglob("*") if LEFTOVER.search(p.name)]
    assert not leftovers, f"staging or temporary files left: {leftovers}"
    before, after = start.files, snapshot(root).files
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    args = parse_like_main(argv) if code == 0 else None
    if args is None or args.command not in COMMANDS:
        if code != 0 and command == "report":  # each report file is its old or its new version
            changed = [p for p in changed if not REPORT_CHANGE.search(p)]
        assert not changed, f"exit {code} but files changed: {changed}"
        return
    target = Path(args.run_dir if args.command == "report" else args.out)
    rel = os.path.relpath(target.resolve(), root.resolve())
    assert not rel.startswith(".."), f"{target} is outside the workspace"
    rel = "" if rel == "." else Path(rel).as_posix()
    for name in (*RUN_FILES, *(["model.safetensors"] if args.command in WRITES_MODEL else [])):
        assert (target / name).is_file(), f"{name} missing from {target} after exit 0"
    for name in ("config.json", "results.json"):
        json.loads((target / name).read_text(encoding="utf-8"))
    outside = [p for p in changed if not _inside(p, rel)]
    assert not outside, f"files outside {target} changed: {outside}"
    if args.command == "report":
        inner = [p[len(rel) + 1 :] if rel else p for p in changed]
        assert all(REPORT_FILES.match(p) for p in inner), f"report changed {inner}"
    else:
        existed = rel in start.dirs or any(_inside(p, rel) for p in before)
        assert not existed or args.force, f"{target} existed and was replaced without --force"
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is not None:
        model = Path(checkpoint) / "model.safetensors" if Path(checkpoint).is_dir() else None
        for path in filter(None, [Path(checkpoint), model]):
            key = os.path.relpath(path.resolve(), root.resolve())
            assert before.get(key) == after.get(key), f"the input {key} changed"
    if getattr(args, "json", False):
        printed = json.loads(result.stdout)
        assert printed == json.loads((target / "results.json").read_text(encoding="utf-8"))


def run_example(template: Path, argv: list[str]) -> None:
    """Run ``argv`` (with the fast defaults) in a fresh workspace and check the outcome."""
    full = with_fast_defaults(list(argv))
    note(f"argv: {full!r}")
    with workspace(template) as root:
        start = snapshot(root)
        check_outcome(run_main(full), root, start)


# ----------------------------------------------------------------------------- findings
#: argvs (relative to an example's workspace, before the fast defaults) that fuzzing found
#: failing; each is re-checked by an @example. The ones marked "fixed" were fixed in bench/ or
#: selection/ while writing this test; the others are open at the time of writing.
FINDINGS: list[list[str]] = [
    # fixed (bench/models.py, bench/training.py, selection/api.py): seeds beyond torch's range,
    # an infinite width, factories that cannot be called with the model keywords or build a
    # model without parameters
    ["train", "--data", "digits", "--model", "mlp", "--out", "out", "--seed", HUGE],
    ["train", "--data", "digits", "--model", "mlp", "--out", "out", "--width", "inf"],
    ["train", "--data", "digits", "--model", "torch.nn:Identity", "--out", "out"],
    ["train", "--data", "digits", "--model", "os.path:join", "--out", "out"],
    ["train", "--data", "digits", "--model", "mlp", "--out", "out", "--lr", "nan"],
    ["remove", "--checkpoint", "ckpt", "--forget", "class:1", "--out", "out", "--seed", HUGE],
    ["remove", "--checkpoint", "ckpt", "--forget", "class:1", "--out", "out", "--width", "inf"],
    # open: bench/datasets.py (data seed), report/jobs/common.py (threads), edit/baselines.py
    # (baseline seed), report/jobs/inputs.py (query range), report/content.py and rundir.py
    # (a non-UTF-8 --out, as a shell passes undecodable bytes, breaks writing report.md)
    ["train", "--data", "digits", "--model", "mlp", "--out", "out", "--data-seed", HUGE],
    ["train", "--data", "digits", "--model", "mlp", "--out", "out", "--threads", HUGE],
    [
        "remove",
        "--checkpoint",
        "ckpt",
        "--forget",
        "class:1",
        "--out",
        "out",
        "--method",
        "finetune",
        "--budget",
        "50",
        "--seed",
        HUGE,
    ],
    # (a range past the address space fails at once: 0-99999999999 would try to allocate)
    ["score", "--checkpoint", "ckpt", "--out", "out", "--queries", "test:0-" + HUGE],
    ["train", "--data", "digits", "--model", "mlp", "--out", "caf\udce9"],
    # open: bench/datasets_files.py (found by fuzzing the file readers; see _write_data_dirs)
    ["train", "--data", "cifar10:cifar_bad", "--model", "mlp", "--out", "out"],
    ["train", "--data", "mnist:mnist_short", "--model", "mlp", "--out", "out"],
    ["train", "--data", "mnist:mnist_gz", "--model", "mlp", "--out", "out"],
    ["train", "--data", "svhn:svhn_no_y", "--model", "mlp", "--out", "out"],
]


#: paths the random examples reach rarely, checked on every run: a numerical failure (exit 3),
#: --force over an existing directory, an input as --out, a report regenerated with --json
ALWAYS: list[list[str]] = [
    [
        "train",
        "--data",
        "digits",
        "--model",
        "mlp",
        "--out",
        "out",
        "--lr",
        "1e30",
        "--max-train",
        "600",
    ],
    ["train", "--data", "digits", "--model", "mlp", "--out", "existing", "--force"],
    ["remove", "--checkpoint", "ckpt", "--forget", "class:1", "--out", "ckpt", "--force"],
    ["report", "edited", "--json"],
]


def with_findings(test: Callable[..., None]) -> Callable[..., None]:
    """Apply an ``@example(argv=...)`` for every entry of :data:`ALWAYS` and :data:`FINDINGS`."""
    for argv in reversed(ALWAYS + FINDINGS):
        test = example(argv=argv)(test)
    return test


FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# ----------------------------------------------------------------------------- the tests
@with_findings
@settings(FUZZ_SETTINGS, max_examples=CLI_EXAMPLES)
@given(argv=cli_argv())
def test_fuzz_command_line(template: Path, argv: list[str]) -> None:
    """Random command lines: exit 0/2/3, one-line errors, whole run directories or nothing."""
    run_example(template, argv)


def toml_value(value: Any) -> str | None:
    """``value`` as a TOML value (None: TOML cannot write it, e.g. null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        items = [toml_value(v) for v in value]
        return "[" + ", ".join(i for i in items if i is not None) + "]"
    if isinstance(value, dict):
        pairs = [(json.dumps(str(k)), toml_value(v)) for k, v in value.items()]
        return "{ " + ", ".join(f"{k} = {v}" for k, v in pairs if v is not None) + " }"
    return None


def to_toml(entries: dict[str, Any]) -> str:
    """A TOML document of quoted keys (tables inline)."""
    lines = []
    for key, value in entries.items():
        text = toml_value(value)
        if text is not None:
            lines.append(f"{json.dumps(key)} = {text}")
    return "\n".join(lines) + "\n"


JSON_NASTY: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.lists(st.one_of(st.integers(-5, 5), _text, st.floats(-1, 1)), max_size=3),
    st.dictionaries(_text, st.integers(), max_size=2),
)


def _as_number(text: str) -> Any:
    """``text`` as an int or float where it reads as one (JSON numbers), else ``text``."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@st.composite
def config_value(draw: st.DrawFn, spec: OptionSpec) -> Any:
    """A JSON value for ``spec``: mostly a value of its pool (as a string, or as a number where
    it reads as one), sometimes any JSON value; a flag mostly gets a boolean."""
    if not spec.takes_value:
        return draw(st.booleans()) if draw(st.integers(0, 5)) < 5 else draw(JSON_NASTY)
    if spec.dest not in POOL_ONLY and draw(st.integers(0, 5)) == 5:
        return draw(JSON_NASTY)
    text = draw(option_value(spec, bad_one_in=5))
    if spec.dest == "gammas" and "," in text and draw(st.booleans()):
        return [_as_number(v) for v in text.split(",")]
    return _as_number(text) if draw(st.booleans()) else text


MALFORMED: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(
        [
            b'{"epochs": 1,',
            b"[1, 2]",
            b'"text"',
            b"3",
            b"null",
            b'{"epochs": 1, "epochs": 2}',
            b'\xef\xbb\xbf{"quiet": true}',
            b"\xff\xfe{}",
            b"[" * 5000 + b"]" * 5000,
            b'{"a": ' * 3000 + b"1" + b"}" * 3000,
            b"a = = 1",
            b"[table]\nx = 1\n",
            b"epochs = 1\nepochs = 2\n",
            b"",
        ]
    ),
    st.binary(max_size=40),
    _text.map(lambda t: t.encode("utf-8")),
)
UNKNOWN_KEYS = ["no-such-option", "config", "help", "version", "run_dir", "debug", "", "EPOCHS"]
#: the file name by kind of content: the matching name, or (one time in 6) any of these
CONFIG_NAMES = ["cfg.json", "cfg.toml", "cfg.yaml", "cfg", "cfg.JSON", "missing.json", "dir.json"]


@dataclass
class ConfigCase:
    """A command line with ``--config NAME`` and the bytes of that file."""

    argv: list[str]
    name: str
    content: bytes | None
    entries: dict[str, Any]


@st.composite
def config_case(draw: st.DrawFn) -> ConfigCase:
    """A subcommand, its required options on the command line or in the file, and random options
    in a JSON (1/2), TOML (1/3) or malformed (1/6) file, with real keys (dashes or underscores,
    a leading ``--`` one time in 16), an unknown key one time in 8, and values of random types.
    ``--config`` is written ``--config NAME`` or ``--config=NAME``, and one time in 8 given twice,
    before the subcommand, or empty."""
    command = draw(st.sampled_from(COMMANDS))
    specs = SPECS[command]
    argv = [command] + (["ckpt"] if command == "report" else [])
    entries: dict[str, Any] = {}
    for spec in specs:
        if spec.required and draw(st.integers(0, 19)) < 19:
            if draw(st.booleans()):
                argv += draw(option_tokens(spec, bad_one_in=8))
            else:
                entries[spec.flags[0][2:]] = draw(option_value(spec, bad_one_in=8))
    for spec in draw(st.lists(st.sampled_from(specs), max_size=5, unique_by=lambda s: s.dest)):
        key = draw(st.sampled_from(spec.flags))[2:]
        key = key.replace("-", "_") if draw(st.booleans()) else key
        key = "--" + key if draw(st.integers(0, 15)) == 15 else key
        entries[key] = draw(config_value(spec))
    if draw(st.integers(0, 7)) == 7:
        entries[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(JSON_NASTY)
    kind = ("json", "json", "json", "toml", "toml", "malformed")[draw(st.integers(0, 5))]
    if kind == "json":
        content = json.dumps(entries).encode("utf-8")
    elif kind == "toml":
        content = to_toml(entries).encode("utf-8")
    else:
        content = draw(MALFORMED)
    name = "cfg.toml" if kind == "toml" else "cfg.json"
    if draw(st.integers(0, 5)) == 5:
        name = draw(st.sampled_from(CONFIG_NAMES))
    spelling = draw(st.integers(0, 7))
    if spelling < 4:
        argv += ["--config", name]
    elif spelling < 7:
        argv += [f"--config={name}"]
    else:
        argv = draw(
            st.sampled_from(
                [
                    [*argv, "--config", name, "--config", "missing.json"],
                    ["--config", name, *argv],
                    [*argv, "--config="],
                ]
            )
        )
    if name in ("missing.json", "dir.json"):
        content = None
    return ConfigCase(argv, name, content, entries if kind != "malformed" else {})


@pytest.mark.skipif(expand_config is None, reason="geninf.cli.config (--config) is not there yet")
@settings(FUZZ_SETTINGS, max_examples=CONFIG_EXAMPLES)
@given(case=config_case())
def test_fuzz_config_files(template: Path, case: ConfigCase) -> None:
    """Random --config files (JSON, TOML, malformed) with random keys and values."""
    argv = case.argv
    if argv and argv[0] in COMMANDS:
        argv = with_fast_defaults(argv, case.entries)
    note(f"argv: {argv!r}; {case.name}: {case.content!r}")
    with workspace(template) as root:
        if case.content is not None:
            (root / case.name).write_bytes(case.content)
        start = snapshot(root)
        check_outcome(run_main(argv), root, start)


# ----------------------------------------------------------------------------- --force
FORCE_EXAMPLES = 30
#: where ``--out`` may point: runs geninf made, users' directories, special places, new paths
FORCE_TARGETS = (
    "edited",
    "scored",
    "ckpt",
    "copy",
    "existing",
    "empty",
    "broken",
    "data",
    "notes.txt",
    ".",
    "..",
    "~",
    "/",
    "link-run",
    "link-home",
    "link-dot",
    "link-up",
    "link-existing",
    "dangling",
    "linkdir/copy",
    "edited/plots",
    "new/..",
    "new",
    "new/deeper",
)
#: what the user may have done to ``copy`` (a copy of the ``edited`` run) before the command
MUTATIONS = (
    "none",
    "add-file",
    "edit-file",
    "add-folder",
    "add-link",
    "drop-file",
    "drop-marker",
    "bad-marker",
    "list-foreign",
)


def _mutate(run: Path, mutation: str) -> None:
    if mutation == "add-file":
        (run / "notes.txt").write_text("mine\n")
    elif mutation == "edit-file":
        with open(run / "report.md", "a", encoding="utf-8") as fh:
            fh.write("my conclusions\n")
    elif mutation == "add-folder":
        (run / "plots" / "mine").mkdir(parents=True)
    elif mutation == "add-link":
        (run / "plots" / "link.png").symlink_to("../../notes.txt")
    elif mutation == "drop-file":
        (run / "report.html").unlink()
    elif mutation == "drop-marker":
        (run / "geninf-run.json").unlink()
    elif mutation == "bad-marker":
        (run / "geninf-run.json").write_text('{"format": "geninf-run/0", "files": {}}')
    elif mutation == "list-foreign":  # the user's file, listed under a digest it does not have
        marker = json.loads((run / "geninf-run.json").read_text())
        marker["files"]["mine.txt"] = "0" * 64
        (run / "geninf-run.json").write_text(json.dumps(marker))
        (run / "mine.txt").write_text("mine\n")


def _prepare_force(root: Path, mutation: str) -> None:
    """The example's extra places: a mutated run copy, a home, links, a data folder."""
    shutil.copytree(root / "edited", root / "copy")
    _mutate(root / "copy", mutation)
    (root / "home").mkdir()
    (root / "home" / ".profile").write_text("user settings\n")
    (root / "data").mkdir()
    (root / "data" / "a.py").write_text("print('mine')\n")
    for name, target in {
        "link-run": "edited",
        "link-home": "home",
        "link-dot": ".",
        "link-up": "..",
        "link-existing": "existing",
        "dangling": "nowhere",
        "linkdir": ".",
    }.items():
        (root / name).symlink_to(target)


def _owned(root: Path) -> set[str]:
    """The files under ``root`` that geninf wrote, unchanged: listed by the marker of a run with
    their digest (the only files a command may remove or change)."""
    from geninf.report.rundir import MARKER, read_marker

    owned = set()
    for marker in root.rglob(MARKER):
        files = read_marker(marker.parent)
        if files is None:
            continue
        owned.add(marker.relative_to(root).as_posix())
        for rel, digest in files.items():
            path = marker.parent / rel
            if path.is_file() and not path.is_symlink():
                if hashlib.sha256(path.read_bytes()).hexdigest() == digest:
                    owned.add(path.relative_to(root).as_posix())
    return owned


def _links(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): os.readlink(p) for p in root.rglob("*") if p.is_symlink()
    }


@st.composite
def force_case(draw: st.DrawFn) -> tuple[list[str], str, bool]:
    """A command with ``--out`` (or report's RUN_DIR) among :data:`FORCE_TARGETS`, a mutation of
    the ``copy`` run, and whether the target is written absolute."""
    target = draw(st.sampled_from(FORCE_TARGETS))
    spelled = draw(st.sampled_from(["", "./", "/"]))
    out = f"./{target}" if spelled == "./" and target not in ("/", "~") else target
    if spelled == "/" and target not in ("/", ".", ".."):
        out = f"{target}/"
    command = draw(st.sampled_from(["train", "train", "train", "remove", "report"]))
    if command == "report":
        argv = ["report", out, "--quiet"]
    elif command == "remove":
        argv = ["remove", "--checkpoint", "ckpt", "--forget", "class:1", "--max-iter", "3"]
        argv += ["--out", out, "--quiet"]
    else:
        argv = [*TRAIN_CHECKPOINT[:-1], "--max-train", "100", "--out", out, "--quiet"]
    if command != "report" and draw(st.integers(0, 5)):
        argv.append("--force")
    return argv, draw(st.sampled_from(MUTATIONS)), draw(st.booleans())


FORCE_TRAIN = [*TRAIN_CHECKPOINT[:-1], "--max-train", "100", "--quiet", "--force", "--out"]


@settings(FUZZ_SETTINGS, max_examples=FORCE_EXAMPLES)
@given(case=force_case())
@example(case=([*FORCE_TRAIN, "copy"], "none", False))
@example(case=([*FORCE_TRAIN, "linkdir/copy/"], "drop-file", True))
@example(case=([*FORCE_TRAIN, "copy"], "list-foreign", False))
@example(case=(["report", "copy", "--quiet"], "add-file", False))
def test_fuzz_force_never_touches_user_files(template: Path, case: tuple) -> None:
    """``--force`` (and ``report``) aimed at runs, users' directories, links and special places:
    a file geninf did not write (or changed since) is never removed or changed, a link never
    replaced, a folder of the user's never removed; exit 0 only into a run geninf made."""
    argv, mutation, absolute = case
    note(f"argv: {argv!r}; copy: {mutation}; absolute: {absolute}")
    with workspace(template) as root:
        _prepare_force(root, mutation)
        home = os.environ.get("HOME")
        os.environ["HOME"] = str(root / "home")
        try:
            i = argv.index("--out") + 1 if "--out" in argv else 1
            if absolute and argv[i] not in ("/", "~"):
                argv[i] = str(root / argv[i])
            start, owned, links = snapshot(root), _owned(root), _links(root)
            result = run_main(argv)
        finally:
            if home is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = home
        STATS[f"force {argv[0]}:{result.code}"] += 1
        assert result.code in (0, 2), (result.code, result.stderr)
        after = snapshot(root)
        mine = {p: h for p, h in start.files.items() if p not in owned}
        touched = sorted(p for p, h in mine.items() if after.files.get(p) != h)
        assert not touched, f"files geninf did not write changed or vanished: {touched}"
        assert _links(root).items() >= links.items(), "a link of the user's changed"
        held = {str(Path(p).parent) for p in owned}
        theirs = [d for d in start.dirs if not any(_inside(h, d) for h in held)]
        gone = [d for d in theirs if d not in after.dirs and not (root / d).is_symlink()]
        assert not gone, f"folders of the user's vanished: {gone}"
        if result.code == 0 and argv[0] != "report":
            _check_forced_run(root, argv, start, mutation)


def _check_forced_run(root: Path, argv: list[str], start: Snapshot, mutation: str) -> None:
    """After exit 0: the target did not exist or was an unchanged run; it is a whole run now."""
    from geninf.report.rundir import foreign_entries, read_marker

    target = Path(argv[argv.index("--out") + 1])
    target = target if target.is_absolute() else root / target
    rel = os.path.relpath(target.resolve(), root.resolve())
    assert not rel.startswith(".."), f"{target} is outside the workspace"
    runs = ["edited", "scored", "ckpt"] + (["copy"] if mutation in ("none", "drop-file") else [])
    existed = rel in start.dirs or rel in start.files
    assert rel in runs or not existed, f"--force replaced {rel}, which geninf did not make"
    files = read_marker(target)
    assert files is not None and foreign_entries(target, files) == []
