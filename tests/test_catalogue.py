"""The catalogue of bad inputs and faults (docs/errors.md): one test case per row.

Each row names what geninf must do: a library row raises an exception class whose one-line
message contains a fragment; a command-line row (``geninf.cli.main``) returns an exit code and
prints exactly one stderr line starting ``geninf: `` that contains the fragment. After every
command-line row nothing may be left behind: no run directory (unless the row made one first, and
then it must be unchanged), no staging directory and no temporary file. The ids, exception classes,
exit codes and fragments are checked against docs/errors.md, so the table cannot drift from the
tests, and the table of exception classes against the exit codes ``main`` really returns.

Rows stay fast: tiny float64 problems (tests/conftest.py) for the library, and an MLP trained for
one epoch on 200 digits (once per module) for the command line.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import geninf
from geninf import errors
from geninf.cli import main
from geninf.edit import ClassRemovalValidation
from geninf.errors import (
    DataError,
    DeterminismError,
    InputError,
    ModelTooLargeError,
    NonFiniteError,
    ObjectiveError,
    SolverDivergenceError,
    SubsetError,
)
from geninf.linalg import HessianOperator, MatrixOperator
from geninf.params import ParameterSubset

from .conftest import make_problem

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
TRAIN = ["train", "--data", "digits", "--model", "mlp", "--epochs", "1", "--quiet"]
SMALL = ["--max-train", "200", "--max-eval", "100"]
FAST = ["--solver", "cg", "--max-iter", "3", "--quiet"]


@dataclass
class Ctx:
    """What a row may use: a fresh directory, the trained run, monkeypatch."""

    tmp: Path
    trained: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def out(self) -> Path:
        """The --out of command-line rows (must not exist afterwards unless made first)."""
        return self.tmp / "out"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def copy_run(self, name: str = "run") -> Path:
        """A copy of the trained run directory (rows that must not touch the shared one)."""
        return Path(shutil.copytree(self.trained, self.tmp / name))

    def remove(self, *args: str) -> list[str]:
        return ["remove", "--checkpoint", str(self.trained), "--out", str(self.out), *args]


@dataclass(frozen=True)
class Row:
    """One catalogue row: the expected exception class (library) or exit code (command line),
    a fragment of the message, and the trigger. A library trigger makes the failing call; a
    command-line trigger returns the argv, or ``(argv, check)`` with a check run afterwards."""

    expect: type[BaseException] | int
    fragment: str
    trigger: Callable[[Ctx], Any]


ROWS: dict[str, Row] = {}


def row(row_id: str, expect: type[BaseException] | int, fragment: str) -> Callable:
    def register(trigger: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        assert row_id not in ROWS, row_id
        ROWS[row_id] = Row(expect, fragment, trigger)
        return trigger

    return register


def tiny() -> tuple[nn.Module, Any, tuple, tuple]:
    """The conftest MLP (4 → 6 → 3, float64): model, loss, retained data R, removed data U."""
    p = make_problem("mlp")
    x, y = p.train
    return p.model.eval(), p.loss_fn, (x[7:], y[7:]), (x[:7], y[:7])


def remove_original(model: nn.Module, loss: Any, retain: Any, forget: Any) -> Any:
    return geninf.remove(model, loss, retain, forget, method="original", damping=0.1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class FlakyOperator(MatrixOperator):
    """A matrix whose products are NaN from the ``bad``-th on (a fault in the middle of a solve)."""

    def __init__(self, matrix: torch.Tensor, bad: int):
        super().__init__(matrix)
        self.bad = bad

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        out = super()._matvec(v)
        return out * float("nan") if self.num_products >= self.bad else out

    _rmatvec = _matvec


def spd(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T / n + torch.eye(n, dtype=torch.float64)


def patch_hvp(ctx: Ctx, on_call: int, fault: str) -> None:
    """Make the ``on_call``-th Hessian-vector product return NaN or raise Ctrl-C."""
    real = HessianOperator._batch_product
    calls = [0]

    def faulty(self: HessianOperator, index: int, batch: Any, v: dict) -> dict:
        calls[0] += 1
        out = real(self, index, batch, v)
        if calls[0] >= on_call:
            if fault == "interrupt":
                raise KeyboardInterrupt
            return {k: t * float("nan") for k, t in out.items()}
        return out

    ctx.monkeypatch.setattr(HessianOperator, "_batch_product", faulty)


class CodeOnLoad:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


# ================================================================ library: data and objective
@row("E01", DataError, "tensors have different numbers of examples")
def _(ctx: Ctx) -> None:
    model, loss, (x, y), forget = tiny()
    remove_original(model, loss, (x, y[1:]), forget)


@row("E02", DataError, "convert the inputs with .to(torch.float64)")
def _(ctx: Ctx) -> None:
    model, loss, (x, y), (xf, yf) = tiny()
    remove_original(model, loss, (x.float(), y), (xf.float(), yf))


@row("E03", DataError, "the model cannot take the inputs (shape (7, 3), dtype float64)")
def _(ctx: Ctx) -> None:
    model, loss, (x, y), (xf, yf) = tiny()
    remove_original(model, loss, (x[:, :3], y), (xf[:, :3], yf))


@row("E04", DataError, "cross-entropy needs class indices (an integer tensor)")
def _(ctx: Ctx) -> None:
    model, loss, (x, y), (xf, yf) = tiny()
    remove_original(model, loss, (x, y.double()), (xf, yf.double()))


@row("E05", DataError, "target 7 is not a class of a model with 3 outputs")
def _(ctx: Ctx) -> None:
    model, loss, retain, (xf, yf) = tiny()
    yf = yf.clone()
    yf[2] = 7
    remove_original(model, loss, retain, (xf, yf))


@row("E06", DataError, "target -1 is not a class of a model with 3 outputs")
def _(ctx: Ctx) -> None:
    model, loss, retain, (xf, yf) = tiny()
    yf = yf.clone()
    yf[0] = -1
    remove_original(model, loss, retain, (xf, yf))


@row("E07", DataError, "target 5 is not a class of a model with 3 outputs")
def _(ctx: Ctx) -> None:
    p = make_problem("mlp")
    changes = (torch.tensor([0, 1]), torch.tensor([1, 5]))
    geninf.relabel(p.model.eval(), p.loss_fn, p.train, changes, method="original", damping=0.1)


@row("E08", DataError, "must be an (inputs, targets) tuple of tensors")
def _(ctx: Ctx) -> None:
    model, loss, _, forget = tiny()
    geninf.influence(model, loss, "train.csv", forget, method="original")


@row("E09", DataError, "is a one-shot iterator")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.influence(model, loss, (b for b in [retain]), forget, method="original")


@row("E10", DataError, "forget_data is empty")
def _(ctx: Ctx) -> None:
    model, loss, retain, (xf, yf) = tiny()
    remove_original(model, loss, retain, (xf[:0], yf[:0]))


@row("E11", DataError, "the forget set is the whole training set")
def _(ctx: Ctx) -> None:
    p = make_problem("mlp")
    x, y = p.train
    remove_original(p.model.eval(), p.loss_fn, (x[:0], y[:0]), (x, y))


@row("E12", InputError, "retain_data and forget_data are the same data")
def _(ctx: Ctx) -> None:
    model, loss, retain, _ = tiny()
    remove_original(model, loss, retain, retain)


@row("E13", DataError, "the validation split needs examples of class 7")
def _(ctx: Ctx) -> None:
    p = make_problem("mlp")
    model, loss, retain, forget = tiny()
    val = ClassRemovalValidation(p.target, forget_class=7)
    geninf.remove(model, loss, retain, forget, validation=val, schedule="paper", damping=0.1)


# ==================================================================== library: ratio and subset
def _ratio_row(ratio: float) -> Callable[[Ctx], None]:
    def trigger(ctx: Ctx) -> None:
        model, loss, retain, forget = tiny()
        geninf.remove(model, loss, retain, forget, ratio=ratio, damping=0.1)

    return trigger


row("E14", InputError, "ratio must be in (0, 1] (the fraction of each layer to select), got 0")(
    _ratio_row(0.0)
)
row("E15", InputError, "ratio must be in (0, 1]")(_ratio_row(-0.5))
row("E16", InputError, "ratio must be in (0, 1]")(_ratio_row(1.5))
row("E17", InputError, "ratio must be in (0, 1] (the fraction of each layer to select), got nan")(
    _ratio_row(float("nan"))
)


@row("E18", SubsetError, "no trainable parameter named 'fc.weight'")
def _(ctx: Ctx) -> None:
    model, *_ = tiny()
    ParameterSubset.from_names(model, ["0.weight", "fc.weight"])


@row("E19", SubsetError, "model has no submodule named 'fc'")
def _(ctx: Ctx) -> None:
    model, loss, _, forget = tiny()
    geninf.select(model, loss, forget, criterion="by_modules", modules=["fc"])


@row("E20", SubsetError, "the subset was built for another model")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    other = ParameterSubset.all(nn.Linear(4, 3).double())
    geninf.remove(model, loss, retain, forget, subset=other, damping=0.1)


# ================================================================ library: numerical faults
@row("E21", NonFiniteError, "gradient pass: the loss is nan")
def _(ctx: Ctx) -> None:
    model, loss, retain, (xf, yf) = tiny()
    xf = xf.clone()
    xf[1, 2] = float("nan")
    remove_original(model, loss, retain, (xf, yf))


@row("E22", NonFiniteError, "HessianOperator: curvature product 1 contains NaN/inf")
def _(ctx: Ctx) -> None:
    model, loss, (x, y), forget = tiny()
    x = x.clone()
    x[4, 0] = float("inf")
    remove_original(model, loss, (x, y), forget)


@row("E23", NonFiniteError, "HessianOperator: curvature product 3 contains NaN/inf")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    patch_hvp(ctx, 3, "nan")
    geninf.influence(model, loss, retain, forget, method="original", solver="cg", damping=0.1)


@row("E24", NonFiniteError, "lissa: the operator returned NaN/inf at step 3")
def _(ctx: Ctx) -> None:
    b = torch.ones(6, dtype=torch.float64)
    geninf.get_solver("lissa", scale=10.0, depth=20).solve(FlakyOperator(spd(), bad=3), b)


@row("E25", NonFiniteError, "the given gradient has NaN/inf entries")
def _(ctx: Ctx) -> None:
    model, loss, retain, _ = tiny()
    g = torch.full((51,), float("nan"), dtype=torch.float64)
    geninf.influence(model, loss, retain, gradient=g, method="original", damping=0.1)


@row("E26", DeterminismError, "the model is in train mode with dropout/batch-norm layers (1)")
def _(ctx: Ctx) -> None:
    _, loss, retain, forget = tiny()
    net = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, 3)).double().train()
    geninf.influence(net, loss, retain, forget, method="original", damping=0.1)


@row("E27", DeterminismError, "call model.eval() first")
def _(ctx: Ctx) -> None:
    _, loss, retain, forget = tiny()
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)).double().train()
    geninf.influence(net, loss, retain, forget, method="original", damping=0.1)


@row("E28", DeterminismError, "is a DataLoader that shuffles")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    loader = DataLoader(TensorDataset(*retain), batch_size=8, shuffle=True)
    geninf.influence(model, loss, loader, forget, method="original", damping=0.1)


@row("E29", SolverDivergenceError, "neumann_normal diverged 3 times")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    options = {"scale": 1e-3, "scale_step": 1e-6, "max_restarts": 2}
    geninf.influence(
        model, loss, retain, forget, solver="neumann_normal", solver_options=options, damping=0.1
    )


@row("E30", ModelTooLargeError, "A has 6 columns, more than max_size=2")
def _(ctx: Ctx) -> None:
    geninf.get_solver("dense", max_size=2).solve(spd(), torch.ones(6, dtype=torch.float64))


# ============================================================= library: arguments and objective
@row("E31", ObjectiveError, "the loss function must return a scalar mean loss")
def _(ctx: Ctx) -> None:
    model, _, retain, forget = tiny()

    def per_example(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, y, reduction="none")

    geninf.influence(model, per_example, retain, forget, method="original")


@row("E32", ObjectiveError, "objective must be None, a loss function")
def _(ctx: Ctx) -> None:
    model, _, retain, forget = tiny()
    geninf.influence(model, 42, retain, forget, method="original")


@row("E33", InputError, "unknown option(s) lerning_rate")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, method="finetune", lerning_rate=0.1)


@row("E34", InputError, "schedule='paper' chooses the step on validation data")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, schedule="paper")


@row("E35", InputError, "b has dtype torch.float32 but the operator works in torch.float64")
def _(ctx: Ctx) -> None:
    geninf.get_solver("cg").solve(spd(), torch.ones(6))


@row("E36", InputError, "damping must be a finite number >= 0, got -1")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, damping=-1)


# ============================================================================ CLI: usage
@row("E37", 2, "unrecognized arguments: --no-such-flag")
def _(ctx: Ctx) -> list[str]:
    return [*TRAIN, "--out", str(ctx.out), "--no-such-flag"]


@row("E38", 2, "the following arguments are required: --forget")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove(*FAST)


@row("E39", 2, "argument --ratio: invalid float value: 'a'")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:1", "--ratio", "a")


@row("E40", 2, "ratio must be in (0, 1] (the fraction of each layer to select), got 0.0")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:1", "--ratio", "0", *FAST)


@row("E41", 2, "ratio must be in (0, 1] (the fraction of each layer to select), got nan")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:1", "--ratio", "nan", *FAST)


@row("E42", 2, "argument --lr: expected a finite number > 0, got 'nan'")
def _(ctx: Ctx) -> list[str]:
    return [*TRAIN, "--out", str(ctx.out), "--lr", "nan"]


@row("E43", 2, "argument --weight-decay: expected a finite number >= 0, got '-1'")
def _(ctx: Ctx) -> list[str]:
    return [*TRAIN, "--out", str(ctx.out), "--weight-decay", "-1"]


# ========================================================================= CLI: forget sets
@row("E44", 2, "--forget class:42: the data has classes 0..9")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:42", *FAST)


@row("E45", 2, "holds no index")
def _(ctx: Ctx) -> list[str]:
    empty = ctx.file("forget.txt", "# nothing to forget\n")
    return ctx.remove("--forget", f"indices:{empty}", *FAST)


@row("E46", 2, "the forget set is the whole training set; nothing would be left")
def _(ctx: Ctx) -> list[str]:
    every = ctx.file("forget.txt", " ".join(str(i) for i in range(200)))
    return ctx.remove("--forget", f"indices:{every}", *FAST)


@row("E47", 2, "index 999 is outside [0, 199]")
def _(ctx: Ctx) -> list[str]:
    bad = ctx.file("forget.txt", "0 5\n999\n")
    return ctx.remove("--forget", f"indices:{bad}", *FAST)


@row("E48", 2, "row 1: label 99 is not a class (0..9)")
def _(ctx: Ctx) -> list[str]:
    changes = ctx.file("changes.csv", "index,new_label\n0,99\n")
    argv = ["relabel", "--checkpoint", str(ctx.trained), "--changes", str(changes)]
    return [*argv, "--out", str(ctx.out), *FAST]


@row("E49", 2, "query index 999 is out of range: the test split has 100 examples")
def _(ctx: Ctx) -> list[str]:
    argv = ["score", "--checkpoint", str(ctx.trained), "--queries", "test:0-999"]
    return [*argv, "--out", str(ctx.out), *FAST]


# ========================================================================= CLI: checkpoints
def _with_checkpoint(ctx: Ctx, path: Path, *extra: str) -> list[str]:
    argv = ["remove", "--checkpoint", str(path), "--forget", "class:1", "--out", str(ctx.out)]
    return [*argv, *extra, *FAST]


@row("E50", 2, "not found; pass a run directory")
def _(ctx: Ctx) -> list[str]:
    return _with_checkpoint(ctx, ctx.tmp / "nothing")


@row("E51", 2, "is truncated or not a safetensors file")
def _(ctx: Ctx) -> list[str]:
    cut = ctx.file("cut.safetensors", (ctx.trained / "model.safetensors").read_bytes()[:500])
    return _with_checkpoint(ctx, cut)


@row("E52", 2, "is truncated or not a safetensors file (Error while deserializing header")
def _(ctx: Ctx) -> list[str]:
    data = bytearray((ctx.trained / "model.safetensors").read_bytes())
    data[12:40] = b"#" * 28  # the JSON header is garbled, the length is unchanged
    return _with_checkpoint(ctx, ctx.file("garbled.safetensors", bytes(data)))


@row("E53", 2, "it is not a plain tensor pickle")
def _(ctx: Ctx) -> list[str]:
    noise = torch.randint(0, 256, (400,), generator=torch.Generator().manual_seed(1))
    junk = ctx.file("junk.pt", bytes(noise.to(torch.uint8).tolist()))
    return _with_checkpoint(ctx, junk, "--model", "mlp", "--data", "digits")


def _state(ctx: Ctx) -> dict[str, torch.Tensor]:
    from geninf.report import load_checkpoint

    return dict(load_checkpoint(ctx.trained).model.state_dict())


@row("E54", 2, "does not fit the architecture (missing ['classifier.bias'])")
def _(ctx: Ctx) -> list[str]:
    state = _state(ctx)
    state.pop("classifier.bias")
    torch.save(state, ctx.tmp / "missing.pt")
    return _with_checkpoint(ctx, ctx.tmp / "missing.pt", "--model", "mlp", "--data", "digits")


@row("E55", 2, "does not fit the architecture (unexpected ['head.weight'])")
def _(ctx: Ctx) -> list[str]:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(ctx.trained / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    state = {**_state(ctx), "head.weight": torch.zeros(3, 3)}
    save_file(state, str(ctx.tmp / "extra.safetensors"), metadata=meta)
    return _with_checkpoint(ctx, ctx.tmp / "extra.safetensors")


@row("E56", 2, "does not fit the architecture (shape of")
def _(ctx: Ctx) -> list[str]:
    return _with_checkpoint(ctx, ctx.trained, "--model", "mlp", "--width", "2")


@row("E57", 2, "so loading it could run code")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    marker = ctx.tmp / "code-ran"
    torch.save({"weight": CodeOnLoad(marker)}, ctx.tmp / "evil.pt")

    def check() -> None:
        assert not marker.exists(), "the pickle's code ran"

    return _with_checkpoint(ctx, ctx.tmp / "evil.pt", "--model", "mlp", "--data", "digits"), check


@row("E58", 2, "has no geninf record of its architecture; pass --model NAME and --data SPEC")
def _(ctx: Ctx) -> list[str]:
    torch.save(_state(ctx), ctx.tmp / "plain.pt")
    return _with_checkpoint(ctx, ctx.tmp / "plain.pt")


# ====================================================================== CLI: output and faults
@row("E59", 2, "already exists; pass --force to replace it")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    shutil.copytree(ctx.trained, ctx.out)  # a run geninf made (other directories: F01-F17)
    before = snapshot(ctx.out)

    def check() -> None:
        assert snapshot(ctx.out) == before

    return [*TRAIN, *SMALL, "--out", str(ctx.out)], check


@row("E60", 2, "inputs are never overwritten")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    before = snapshot(run)

    def check() -> None:
        assert snapshot(run) == before

    argv = ["remove", "--checkpoint", str(run), "--forget", "class:1", "--out", str(run)]
    return [*argv, "--force", *FAST], check


@row("E61", 2, "cannot create the output directory")
def _(ctx: Ctx) -> list[str]:
    blocker = ctx.file("a-file", "not a directory")
    return [*TRAIN, *SMALL, "--out", str(blocker / "run")]


@row("E62", 2, "cannot create the output directory")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    parent = ctx.tmp / "read-only"
    parent.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: fail the way a read-only directory does
        import geninf.report.rundir as rundir

        def denied(*args: Any, **kwargs: Any) -> str:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(parent))

        ctx.monkeypatch.setattr(rundir.tempfile, "mkdtemp", denied)
    else:
        parent.chmod(0o555)

    def check() -> None:
        parent.chmod(0o755)
        assert list(parent.iterdir()) == []

    return [*TRAIN, *SMALL, "--out", str(parent / "run")], check


@row("E63", 2, "No space left on device")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    shutil.copytree(ctx.trained, ctx.out)
    before = snapshot(ctx.out)

    def full_disk(state: Any, filename: str, metadata: Any = None) -> None:
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 64)  # part of the file is written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    ctx.monkeypatch.setattr("safetensors.torch.save_file", full_disk)

    def check() -> None:
        assert snapshot(ctx.out) == before, "--force replaced the old run before the new was whole"

    return [*TRAIN, *SMALL, "--out", str(ctx.out), "--force"], check


def _fail_report_md(ctx: Ctx, fault: BaseException) -> None:
    """Writing report.md stops halfway with ``fault``."""
    real = Path.write_text

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self.name.startswith(".report.md."):
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise fault
        return real(self, data, *args, **kwargs)

    ctx.monkeypatch.setattr(Path, "write_text", write_text)


@row("E64", 2, "No space left on device")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    before = (run / "report.md").read_bytes()
    _fail_report_md(ctx, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def check() -> None:
        assert (run / "report.md").read_bytes() == before

    return ["report", str(run), "--quiet"], check


@row("E65", 130, "no file was left half-written")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    before = (run / "report.md").read_bytes()
    _fail_report_md(ctx, KeyboardInterrupt())

    def check() -> None:
        assert (run / "report.md").read_bytes() == before

    return ["report", str(run), "--quiet"], check


@row("E66", 130, "geninf: interrupted; no output was written")
def _(ctx: Ctx) -> list[str]:
    patch_hvp(ctx, 3, "interrupt")
    return ctx.remove("--forget", "class:1", "--method", "original", "--damping", "0.1", *FAST)


@row("E67", 3, "numerical failure: HessianOperator: curvature product")
def _(ctx: Ctx) -> list[str]:
    patch_hvp(ctx, 3, "nan")
    return ctx.remove("--forget", "class:1", "--method", "original", "--damping", "0.1", *FAST)


# ============================================================================= CLI: data sets
def _train_on(ctx: Ctx, data: str, model: str = "mlp") -> list[str]:
    return ["train", "--data", data, "--model", model, "--out", str(ctx.out), "--quiet"]


row("E68", 2, "CIFAR-10 not found in /nonexistent: put data_batch_1..5 and test_batch")(
    lambda ctx: _train_on(ctx, "cifar10:/nonexistent")
)
row("E69", 2, "MNIST not found in /nonexistent: put train-images-idx3-ubyte")(
    lambda ctx: _train_on(ctx, "mnist:/nonexistent")
)
row("E70", 2, "SVHN not found in /nonexistent: put train_32x32.mat and test_32x32.mat")(
    lambda ctx: _train_on(ctx, "svhn:/nonexistent")
)
row("E71", 2, "unknown data set 'imagenet'")(lambda ctx: _train_on(ctx, "imagenet"))
row("E72", 2, "unknown model 'transformer'")(lambda ctx: _train_on(ctx, "digits", "transformer"))


@row("E73", 2, "--device must be auto, cpu or cuda[:N], got 'tpu'")
def _(ctx: Ctx) -> list[str]:
    return [*_train_on(ctx, "digits"), "--device", "tpu"]


@row("E74", 2, "does not exist")
def _(ctx: Ctx) -> list[str]:
    return ["report", str(ctx.tmp / "no-run")]


@row("E75", 2, "is not valid JSON")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "results.json").write_text('{"kind": "train", ')
    before = snapshot(run)

    def check() -> None:
        assert snapshot(run) == before

    return ["report", str(run)], check


# ============================================================================ CLI: --config
def _config(ctx: Ctx, name: str, text: str, command: str = "train") -> list[str]:
    path = ctx.file(name, text)
    if command == "train":
        return ["train", "--config", str(path), "--out", str(ctx.out)]
    return ctx.remove("--config", str(path))


row("E76", 2, "missing.json does not exist")(
    lambda ctx: ["train", "--config", str(ctx.tmp / "missing.json"), "--out", str(ctx.out)]
)
row("E77", 2, "is not valid JSON: Expecting ',' delimiter at line 2, column 3")(
    lambda ctx: _config(ctx, "c.json", '{"data": "digits"\n  "model": "mlp"}')
)
row("E78", 2, "is not valid TOML: Invalid value (at line 2, column")(
    lambda ctx: _config(ctx, "c.toml", 'data = "digits"\nepochs = = 2\n')
)
row("E79", 2, "the top level must be an object mapping option names to values")(
    lambda ctx: _config(ctx, "c.json", '["--data", "digits"]')
)
row("E80", 2, '"max_iter" is not an option of geninf train; `geninf train --help` lists')(
    lambda ctx: _config(ctx, "c.json", '{"data": "digits", "max_iter": 3}')
)
row("E81", 2, '"quiet": --quiet is a flag: give true or false, got a string')(
    lambda ctx: _config(ctx, "c.json", '{"quiet": "yes"}')
)
row("E82", 2, '"epochs": --epochs: expected a positive integer, got 0')(
    lambda ctx: _config(ctx, "c.toml", 'data = "digits"\nmodel = "mlp"\nepochs = 0\n')
)
row("E83", 2, "\"method\": --method: invalid choice: 'magic'")(
    lambda ctx: _config(ctx, "c.json", '{"forget": "class:1", "method": "magic"}', "remove")
)
row("E84", 2, "a config file cannot name another config file")(
    lambda ctx: _config(ctx, "c.json", '{"config": "other.json"}')
)
row("E85", 2, "must be a .json or .toml file, got .yaml")(
    lambda ctx: _config(ctx, "c.yaml", "epochs: 2\n")
)
row("E86", 2, "--config is an option of the subcommands")(
    lambda ctx: ["--config", str(ctx.file("c.json", "{}")), "train", "--out", str(ctx.out)]
)


# ============================================== CLI: --force replaces only geninf's own runs
def _project(ctx: Ctx, name: str = "proj") -> Path:
    """A user's directory: ``keep.txt`` and ``src/a.py``."""
    folder = ctx.tmp / name
    (folder / "src").mkdir(parents=True)
    (folder / "keep.txt").write_text("user data")
    (folder / "src" / "a.py").write_bytes(b"print('mine')\n")
    return folder


def _intact(ctx: Ctx, argv: list[str]) -> tuple[list[str], Callable[[], None]]:
    """``argv`` with a check that every file under TMP is byte-for-byte as before."""
    before = snapshot(ctx.tmp)

    def check() -> None:
        assert snapshot(ctx.tmp) == before, "a file geninf did not write changed"

    return argv, check


def _force_train(ctx: Ctx, out: Path | str) -> tuple[list[str], Callable[[], None]]:
    return _intact(ctx, [*TRAIN, *SMALL, "--out", str(out), "--force"])


@row("F01", 2, "is not a geninf run directory (it holds keep.txt, src/); geninf replaces only")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    return _force_train(ctx, _project(ctx))


@row("F02", 2, "is not a geninf run directory (it holds keep.txt, src/)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    return _intact(ctx, [*TRAIN, *SMALL, "--out", str(_project(ctx))])


@row("F03", 2, "holds files geninf did not write: notes.txt; geninf replaces only")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "notes.txt").write_text("my notes")
    return _force_train(ctx, run)


@row("F04", 2, "holds files geninf did not write: report.md (changed)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    with open(run / "report.md", "a", encoding="utf-8") as fh:
        fh.write("\nMy conclusions.\n")
    return _force_train(ctx, run)


@row("F05", 2, "holds files geninf did not write: plots/mine/")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "plots" / "mine").mkdir()
    (run / "plots" / "mine" / "fig.png").write_bytes(b"\x89PNG mine")
    return _force_train(ctx, run)


@row("F06", 2, "is a run of an older geninf (it has no geninf-run.json)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "geninf-run.json").unlink()
    return _force_train(ctx, run)


@row("F07", 2, "is an empty directory geninf did not make; remove it (rmdir)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    (ctx.tmp / "empty").mkdir()
    return _force_train(ctx, ctx.tmp / "empty")


@row("F08", 2, "--out . is the current directory, which geninf never replaces")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    ctx.monkeypatch.chdir(_project(ctx))
    return _force_train(ctx, ".")


@row("F09", 2, "is a parent of the current directory, which geninf never replaces")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    ctx.monkeypatch.chdir(_project(ctx) / "src")
    return _force_train(ctx, "..")


@row("F10", 2, "is your home directory, which geninf never replaces (even with --force)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    home = _project(ctx, "home")
    ctx.monkeypatch.setenv("HOME", str(home))
    return _force_train(ctx, "~")


@row("F11", 2, "--out / is a filesystem root, which geninf never replaces")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    return _force_train(ctx, "/")


@row("F12", 2, "is your home directory, which geninf never replaces")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    home = _project(ctx, "home")
    ctx.monkeypatch.setenv("HOME", str(home))
    (ctx.tmp / "link").symlink_to(home)
    return _force_train(ctx, ctx.tmp / "link")


@row("F13", 2, "is a symbolic link (to run), which geninf never replaces")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    ctx.copy_run()
    (ctx.tmp / "link").symlink_to("run")
    return _force_train(ctx, ctx.tmp / "link")


@row("F14", 2, "holds the input")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    runs = ctx.tmp / "runs"
    shutil.copytree(ctx.trained, runs / "run")
    argv = ["remove", "--checkpoint", str(runs / "run"), "--forget", "class:1"]
    return _intact(ctx, [*argv, "--out", str(runs), "--force", *FAST])


@row("F15", 2, "is not a geninf run directory (it holds keep.txt, src/)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    argv = ["bench", "class-removal", "--quick", "--out", str(_project(ctx)), "--force"]
    return _intact(ctx, [*argv, "--cache-dir", str(ctx.tmp / "cache"), "--quiet"])


@row("F16", 2, "holds files that report would rewrite but geninf did not write: report.md")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "report.md").write_text("# My own report\n")
    return _intact(ctx, ["report", str(run), "--quiet"])


@row("F17", 2, "has no geninf-run.json: it is a run of an older geninf (or not a run)")
def _(ctx: Ctx) -> tuple[list[str], Callable[[], None]]:
    run = ctx.copy_run()
    (run / "geninf-run.json").unlink()
    return _intact(ctx, ["report", str(run), "--quiet"])


# ================================================================== forget sets (issue 14)
@row("U01", 2, "index 3 appears twice; indices must be distinct")
def _(ctx: Ctx) -> list[str]:
    dup = ctx.file("forget.txt", "3 5\n3\n")
    return ctx.remove("--forget", f"indices:{dup}", *FAST)


@row("U02", 2, "line 1: '2.5' is not an integer index")
def _(ctx: Ctx) -> list[str]:
    bad = ctx.file("forget.txt", "1 2.5\n")
    return ctx.remove("--forget", f"indices:{bad}", *FAST)


@row("U03", 2, "the forget fraction must be a number strictly between 0 and 1, got 0.0")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "random:0", *FAST)


@row("U04", 2, "the forget fraction must be a number strictly between 0 and 1, got 1.0")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "random:1", *FAST)


@row("U05", 2, "--forget random:F needs a fraction 0 < F < 1 (e.g. random:0.01), got 'ten'")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "random:ten", *FAST)


@row("U06", 2, "has no source of each example; use an augmented data set")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "sources:5", *FAST)


@row("U07", InputError, "forget indices: index 4 appears 2 times; indices must be distinct")
def _(ctx: Ctx) -> None:
    geninf.edit.check_forget_indices([4, 1, 4], 10)


@row("U08", InputError, "forget indices: 2.5 is not an integer index")
def _(ctx: Ctx) -> None:
    geninf.edit.check_forget_indices(torch.tensor([1.0, 2.5]), 10)


@row("U09", InputError, "the forget fraction must be a number strictly between 0 and 1, got -0.1")
def _(ctx: Ctx) -> None:
    geninf.edit.random_forget_indices(100, -0.1, seed=0)


@row("U10", InputError, "method='scrub' is defined for removal only")
def _(ctx: Ctx) -> None:
    model, loss, retain, _ = tiny()
    geninf.relabel(model, loss, retain, (torch.tensor([0]), torch.tensor([1])), method="scrub")


@row("U11", InputError, "unknown unlearning option(s) scrub_beta; the keys are: l1_strength")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, method="scrub", unlearning_options={"scrub_beta": 1})


@row("U12", InputError, "unlearning option salun_fraction must be a number in (0, 1], got 1.5")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    hp = {"salun_fraction": 1.5}
    geninf.remove(model, loss, retain, forget, method="salun", unlearning_options=hp)


# =================================================================== CLI: your own data (Y)
def _npz(ctx: Ctx, **arrays: Any) -> str:
    import numpy as np

    path = ctx.tmp / "data.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return f"npz:{path}"


def _images(ctx: Ctx, counts: dict[str, int], odd: str | None = None) -> str:
    """``TMP/img/<class>/NN.png`` (5×4 grayscale); ``odd`` names a 6×4 image added last."""
    import numpy as np
    from PIL import Image

    for name, n in counts.items():
        (ctx.tmp / "img" / name).mkdir(parents=True)
        for i in range(n):
            image = Image.fromarray(np.zeros((4, 5), np.uint8))
            image.save(ctx.tmp / "img" / name / f"{i:02d}.png")
    if odd:
        Image.fromarray(np.zeros((4, 6), np.uint8)).save(ctx.tmp / "img" / odd)
    return f"folder:{ctx.tmp / 'img'}"


def _factory(ctx: Ctx, body: str) -> str:
    name = f"catalogue_data_{abs(hash(str(ctx.tmp))) % 10**8}"
    ctx.file(f"{name}.py", body)
    ctx.monkeypatch.syspath_prepend(str(ctx.tmp))
    return f"{name}:load"


row("Y01", 2, "does not exist or is not a file; npz:PATH needs a .npz file with arrays x")(
    lambda ctx: _train_on(ctx, f"npz:{ctx.tmp / 'none.npz'}")
)
row("Y02", 2, "has no array 'y'; a data .npz needs x (inputs) and y (integer labels)")(
    lambda ctx: _train_on(ctx, _npz(ctx, x=[[0.0, 1.0]] * 6))
)
row("Y03", 2, "has no column 'label' (its columns: a, b); name the label column with csv:")(
    lambda ctx: _train_on(ctx, "csv:" + str(ctx.file("t.csv", "a,b\n1,0\n2,1\n")))
)
row("Y04", 2, "labels must be integers from 0 (classes 0..K-1, each in y); y holds 3 classes")(
    lambda ctx: _train_on(ctx, _npz(ctx, x=[[0.0]] * 9, y=[1, 2, 3] * 3))
)
row("Y05", 2, "y holds 0.5; labels must be integer classes 0..K-1")(
    lambda ctx: _train_on(ctx, _npz(ctx, x=[[0.0]] * 4, y=[0, 1, 0.5, 1]))
)
row("Y06", 2, "/b/big.png is 6×4 pixels but")(
    lambda ctx: _train_on(ctx, _images(ctx, {"a": 3, "b": 3}, odd="b/big.png"))
)
row("Y07", 2, "/img/b holds no PNG or JPEG image; add images or remove the folder")(
    lambda ctx: _train_on(ctx, _images(ctx, {"a": 3, "b": 0}))
)
row("Y08", 2, "raised ValueError: no data today; fix the factory (call it in Python, or rerun")(
    lambda ctx: _train_on(ctx, _factory(ctx, "def load():\n    raise ValueError('no data today')"))
)
row("Y09", 2, "returned a list of 2 items; return a dict with x and y (optionally x_val, y_val")(
    lambda ctx: _train_on(ctx, _factory(ctx, "def load():\n    return [1, 2]\n"))
)
row("Y10", 2, "mnist-aug:N needs N a multiple of 5000 from 5000 to 1000000")(
    lambda ctx: _train_on(ctx, "mnist-aug:123")
)


@row("Y11", 2, "; pass --data npz:PATH with its current location")
def _(ctx: Ctx) -> list[str]:
    import numpy as np

    ctx.monkeypatch.chdir(ctx.tmp)
    np.savez("d.npz", x=np.eye(40, 3), y=np.arange(40) % 2)
    train = ["train", "--data", "npz:d.npz", "--model", "mlp", "--epochs", "1", "--quiet"]
    assert main([*train, "--out", "run"]) == 0
    Path("d.npz").rename("moved.npz")
    return ["score", "--checkpoint", "run", "--out", str(ctx.out), "--quiet"]


# ====================================================== editing defaults (D, issue 12)
@row("D01", InputError, "damping must be a finite number >= 0, got -1.0")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, damping=-1.0)


@row("D02", InputError, "damping must be 'auto', 'rel:ρ' (λ = ρ·‖H‖) or a number λ >= 0")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, damping="strong")


@row("D03", InputError, "damping_path is empty; give at least one relative damping")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, damping_path=())


@row("D04", InputError, "hessian_examples=1000 is more than the")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, hessian_examples=1000)


@row("D05", InputError, "option iterations must be a positive int, got 0")
def _(ctx: Ctx) -> None:
    model, loss, retain, forget = tiny()
    geninf.remove(model, loss, retain, forget, iterations=0)


@row("D06", 2, "damping must be 'auto', 'rel:ρ' (λ = ρ·‖H‖) or a number λ >= 0, got 'rel:x'")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:1", "--damping", "rel:x", *FAST)


@row("D07", 2, "forget_examples=100000 is more than the")
def _(ctx: Ctx) -> list[str]:
    return ctx.remove("--forget", "class:1", "--forget-examples", "100000", *FAST)


# ================================================================================= the tests
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalogue") / "trained"
    assert main([*TRAIN, *SMALL, "--out", str(out)]) == 0
    return out


def _left_behind(folder: Path) -> list[str]:
    """Staging directories and temporary files (hidden names) anywhere under ``folder``."""
    return [str(p) for p in folder.rglob(".*")]


@pytest.mark.parametrize("row_id", sorted(ROWS))
def test_row(row_id: str, trained: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    r = ROWS[row_id]
    ctx = Ctx(tmp_path, trained, monkeypatch)
    if not isinstance(r.expect, int):
        with pytest.raises(r.expect) as info:
            r.trigger(ctx)
        message = str(info.value)
        assert "\n" not in message, message
        assert r.fragment in message
        return
    made = r.trigger(ctx)
    argv, check = made if isinstance(made, tuple) else (made, None)
    out_existed = ctx.out.exists()
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == r.expect, captured.err
    assert len(lines) == 1, lines
    assert lines[0].startswith("geninf: ") and r.fragment in lines[0], lines[0]
    assert captured.out == ""
    if check is not None:
        check()
    if not out_existed:
        assert not ctx.out.exists(), "a run directory was written"
    assert not _left_behind(tmp_path), _left_behind(tmp_path)


def test_the_pickle_payload_would_run(tmp_path: Path) -> None:
    """E57 proves something only if the payload is live: unpickling it does create the marker."""
    marker = tmp_path / "code-ran"
    data = pickle.dumps({"weight": CodeOnLoad(marker)})
    pickle.loads(data)
    assert marker.exists()


# ===================================================================== the table and the tests
def _table(heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in docs/errors.md."""
    text = DOC.read_text(encoding="utf-8")
    assert heading in text, f"{heading!r} missing from {DOC}"
    rows = []
    for line in text.split(heading, 1)[1].splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def test_docs_table_matches_the_rows() -> None:
    table = _table("## Catalogue")
    ids = [cells[0] for cells in table]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(ids) == set(ROWS), set(ids) ^ set(ROWS)
    assert len(ids) >= 45
    for cells in table:
        assert len(cells) == 5, cells
        r = ROWS[cells[0]]
        does, message = cells[3], cells[4]
        if isinstance(r.expect, int):
            assert f"exit {r.expect}" in does, cells
        else:
            assert f"`{r.expect.__name__}`" in does, cells
        assert r.fragment in message, (cells[0], r.fragment, message)


def test_docs_exit_codes_of_the_exception_classes(monkeypatch, capsys) -> None:
    """Each class of geninf.errors ends ``geninf`` with the exit code the table gives."""
    import geninf.cli as cli

    table = {cells[0].strip("`"): cells[2] for cells in _table("## Exception classes")}
    classes = [n for n in errors.__all__ if issubclass(getattr(errors, n), errors.GenInfError)]
    for name in classes:
        assert name in table, name
        cls = getattr(errors, name)

        def fail(args: Any, argv: Any, cls: type[Exception] = cls) -> dict:
            raise cls("bad\nthing")

        monkeypatch.setattr(cli, "_call", fail)
        code = main(["report", "somewhere"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert f"exit {code}" in table[name], (name, code, table[name])
        assert lines == [f"geninf: {'numerical failure' if code == 3 else 'error'}: bad thing"]
