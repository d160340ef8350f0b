"""Same seed, same result: every seeded part of geninf is bit-identical on the CPU.

Each check runs one computation twice with one seed and compares the results with
``torch.equal`` or byte equality (never ``allclose``); wherever the seed decides something, a run
with another seed must give a different result, so every check can fail. Between the two runs the
global RNG is scrambled with ``torch.manual_seed(<random>)``: geninf draws from local
``torch.Generator`` objects (or a forked, re-seeded global generator), so the caller's global RNG
state must not matter — and must be left as it was.

Thread count: the two runs of a check always use the same thread count, which is the test
process's default (1 under ``OMP_NUM_THREADS=1``, the core count otherwise); training, the CLI and
the solvers are also run explicitly with 1 and 3 threads (the ``threads`` fixture). Nothing here
calls ``torch.set_num_threads(1)`` to get determinism: the CPU kernels used (matmul, convolution,
reductions) give bit-identical results for a fixed thread count. Results across *different*
thread counts may differ in the last bits and are not compared.

Wall-clock fields (``wall_time``, ``seconds``, ``train_seconds``, ``created``) are the only fields
left out of the comparisons of records, results and configurations. ``geninf train`` writes a
byte-identical ``model.safetensors`` for one seed; an edited model file (``remove``, ``relabel``)
records the time of the edit (``edits[-1].created``, to the second) in its metadata, so two edits
are compared tensor by tensor (bitwise) and record by record without that field.
"""

from __future__ import annotations

import json
import platform
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
from torch import Tensor, nn

import geninf
from geninf.bench.datasets import Splits, load_dataset
from geninf.bench.models import build_model
from geninf.bench.training import train_model
from geninf.cli import main
from geninf.cli.parser import build_parser
from geninf.edit import ClassRemovalValidation, relabel, remove

from .conftest import Problem, make_problem

TIMING_KEYS = frozenset({"wall_time", "seconds", "train_seconds", "created"})


# ----------------------------------------------------------------------------- helpers
def without_timing(value: Any) -> Any:
    """A copy of a JSON-like value without its wall-clock entries (keys in ``TIMING_KEYS``)."""
    if isinstance(value, Mapping):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list | tuple):
        return [without_timing(v) for v in value]
    return value


def assert_same_tensors(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> None:
    """The same names, dtypes and bitwise-identical values."""
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), f"{name} differs"


def tensors_differ(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> bool:
    """Whether any tensor of ``a`` is not bitwise equal to its namesake in ``b``."""
    return any(not torch.equal(a[name], b[name]) for name in a)


def scramble_global_rng() -> None:
    """Seed the global torch RNG with a fresh random seed (a result must not depend on it)."""
    torch.manual_seed(secrets.randbits(62))


def state(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(params=[1, 3], ids=["1-thread", "3-threads"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test with ``request.param`` torch threads; restore the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- selection
CRITERIA = ["random", "highest_gradients", "highest_outputs", "lowest_outputs"]


def _select(p: Problem, criterion: str, seed: int | None) -> geninf.ParameterSubset:
    # ratio 0.25: the first layer (6 units of 4 weights + 1 bias) takes 7 elements, one whole
    # unit and 2 random weights of the next; the last (3 units of 6 + 1) takes 5 random weights of
    # its best unit: the seed matters for the ranking criteria too
    return geninf.select(p.model, p.loss_fn, p.target, criterion=criterion, ratio=0.25, seed=seed)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_select_same_seed_gives_the_same_subset(criterion: str) -> None:
    p = make_problem("mlp")
    first = _select(p, criterion, seed=0).flat_indices
    scramble_global_rng()
    again = _select(p, criterion, seed=0).flat_indices
    assert torch.equal(first, again)
    others = [_select(p, criterion, seed=s).flat_indices for s in range(1, 6)]
    assert any(not torch.equal(first, o) for o in others), "the seed changes nothing"
    if criterion == "random":
        assert not torch.equal(first, others[0])


def test_select_without_a_seed_records_one_that_reproduces_it() -> None:
    p = make_problem("mlp")
    subset, summary = geninf.select_with_summary(
        p.model, p.loss_fn, p.target, criterion="random", ratio=0.25, seed=None
    )
    again = _select(p, "random", seed=summary.seed)
    assert torch.equal(subset.flat_indices, again.flat_indices)


def test_select_leaves_the_global_rng_alone() -> None:
    p = make_problem("mlp")
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    _select(p, "random", seed=0)
    _select(p, "highest_gradients", seed=0)
    assert torch.equal(torch.rand(4), expected)


# ----------------------------------------------------------------------------- solvers
#: solver → (influence method, solver options). LiSSA runs in its stochastic mode (one random
#: Hessian batch per step, drawn from its seed) with its own damping: ``influence(damping=λ)``
#: wraps H in an operator without per-batch products, which stochastic LiSSA refuses.
#: neumann_normal estimates its scale by a power iteration from a random start drawn from its
#: seed. ``auto`` picks the dense solver on these small problems.
SOLVER_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "cg": ("original", {"max_iter": 8}),
    "lsmr": ("gif", {"max_iter": 8}),
    "lissa": (
        "original",
        {"stochastic": True, "depth": 25, "repeats": 2, "scale": 20.0, "damping": 0.005},
    ),
    "neumann_normal": ("gif", {"scale_mode": "auto", "max_iter": 15, "power_iterations": 3}),
    "auto": ("gif", {}),
}
SEEDED_SOLVERS = {"lissa", "neumann_normal"}


def _influence(p: Problem, solver: str, seed: int) -> geninf.InfluenceResult:
    method, options = SOLVER_CASES[solver]
    options = {**options, **({"seed": seed} if solver in SEEDED_SOLVERS else {})}
    subset = _select(p, "random", seed=0) if method == "gif" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", geninf.ConvergenceWarning)
        return geninf.influence(
            p.model,
            p.loss_fn,
            p.train,
            p.target,
            method=method,
            subset=subset,
            solver=solver,
            damping=0.0 if solver == "lissa" else 0.1,
            batch_size=12,  # 5 Hessian batches: stochastic LiSSA samples among them
            solver_options=options,
        )


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("solver", sorted(SOLVER_CASES))
def test_influence_same_seed_gives_the_same_delta_and_diagnostics(
    solver: str, name: str, threads: int
) -> None:
    p = make_problem(name)
    first = _influence(p, solver, seed=0)
    scramble_global_rng()
    again = _influence(p, solver, seed=0)
    assert torch.equal(first.delta, again.delta)
    assert torch.equal(first.subset.flat_indices, again.subset.flat_indices)
    d1, d2 = first.diagnostics, again.diagnostics
    assert (d1.products, d1.iterations) == (d2.products, d2.iterations)
    assert d1.residual_history == d2.residual_history
    assert d1.products_history == d2.products_history
    assert d1.residual_history or d1.solver == "dense", "an iterative solve without a history"
    assert without_timing(d1.to_dict()) == without_timing(d2.to_dict())
    assert without_timing(first.to_dict()) == without_timing(again.to_dict())
    if solver in SEEDED_SOLVERS:
        other = _influence(p, solver, seed=1)
        assert not torch.equal(first.delta, other.delta), "the solver's seed changes nothing"


# ----------------------------------------------------------------------------- edits
def _edit_inputs() -> tuple[Problem, dict[str, Any]]:
    """The conftest MLP (3 classes) and a validation split drawn from its own generator."""
    p = make_problem("mlp")
    g = torch.Generator().manual_seed(99)
    xv = torch.randn(30, 4, generator=g, dtype=torch.float64)
    yv = torch.arange(30) % 3
    p.model.eval()
    return p, {"val": (xv, yv)}


def _edit(operation: str, schedule: str, method: str, seed: int) -> geninf.EditResult:
    p, extra = _edit_inputs()
    x, y = p.train
    kw: dict[str, Any] = dict(
        method=method,
        criterion="random",
        ratio=0.25,
        schedule=schedule,
        solver="cg",
        damping=0.1,
        seed=seed,
    )
    if method == "finetune":  # batches of 16 (not the whole set): the order comes from the seed
        kw.update(budget=240, train_batch_size=16)
    else:
        kw["solver_options"] = {"max_iter": 10}
    xv, yv = extra["val"]
    if schedule == "paper":
        kw.update(gammas=(0.01, 0.1), max_steps=3)
        if operation == "remove":
            kw["validation"] = ClassRemovalValidation((xv, yv), 0)
        else:
            kw["validation"] = _accuracy_on(xv, yv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", geninf.ConvergenceWarning)
        if operation == "remove":
            keep = y != 0
            return remove(p.model, p.loss_fn, (x[keep], y[keep]), (x[~keep], y[~keep]), **kw)
        idx = torch.tensor([1, 5, 9, 20])
        return relabel(p.model, p.loss_fn, (x, y), (idx, (y[idx] + 1) % 3), **kw)


def _accuracy_on(x: Tensor, y: Tensor) -> Callable[[nn.Module], float]:
    """A validation score: the accuracy of a model on ``(x, y)``."""

    def score(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(x).argmax(-1) == y).double().mean())

    return score


@pytest.mark.parametrize(
    "operation, method",
    [("remove", "gif"), ("relabel", "gif"), ("remove", "finetune"), ("relabel", "finetune")],
)
@pytest.mark.parametrize("schedule", ["newton", "paper"])
def test_edit_same_seed_gives_the_same_model_and_record(
    operation: str, method: str, schedule: str
) -> None:
    first = _edit(operation, schedule, method, seed=0)
    scramble_global_rng()
    again = _edit(operation, schedule, method, seed=0)
    assert_same_tensors(state(first.model), state(again.model))
    r1, r2 = first.record.to_dict(), again.record.to_dict()
    assert without_timing(r1) == without_timing(r2)
    assert r1["seed"] == 0 and r1["schedule"] == schedule and r1["operation"] == operation
    other = _edit(operation, schedule, method, seed=1)
    assert tensors_differ(state(first.model), state(other.model)), "the seed changes nothing"


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def digits() -> Splits:
    """A small digits split (150 training examples, flattened for the MLP)."""
    return load_dataset("digits", seed=0, flatten=True, max_train=150, max_eval=60)


def _train(
    splits: Splits,
    seed: int,
    *,
    init_seed: int = 0,
    model: str = "mlp",
) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
    net = build_model(
        model,
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        width=0.25,
        seed=init_seed,
    )
    out = train_model(net, splits, epochs=2, batch_size=32, seed=seed, progress=False)
    return state(out.model), out.history


@pytest.mark.parametrize("model", ["mlp", "small_cnn"])
def test_train_model_same_seed_gives_the_same_weights(
    model: str, digits: Splits, threads: int
) -> None:
    splits = digits
    if model != "mlp":  # the CNN takes images
        splits = load_dataset("digits", seed=0, max_train=150, max_eval=60)
    weights, history = _train(splits, seed=7, model=model)
    scramble_global_rng()
    weights2, history2 = _train(splits, seed=7, model=model)
    assert_same_tensors(weights, weights2)
    assert without_timing(history) == without_timing(history2)
    other_order, _ = _train(splits, seed=8, model=model)
    assert tensors_differ(weights, other_order), "the training seed changes nothing"
    other_init, _ = _train(splits, seed=7, init_seed=1, model=model)
    assert tensors_differ(weights, other_init), "the initialization seed changes nothing"


class _DropoutNet(nn.Module):
    """An MLP with dropout: training draws masks from the (forked, seeded) global RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _train_dropout(splits: Splits, seed: int) -> dict[str, Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _DropoutNet()
    return state(train_model(net, splits, epochs=2, batch_size=32, seed=seed, progress=False).model)


def test_train_model_seeds_dropout_and_restores_the_global_rng(digits: Splits) -> None:
    first = _train_dropout(digits, seed=3)
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    again = _train_dropout(digits, seed=3)
    assert torch.equal(torch.rand(4), expected), "train_model moved the global RNG"
    assert_same_tensors(first, again)
    assert tensors_differ(first, _train_dropout(digits, seed=4))


# ----------------------------------------------------------------------------- the CLI
TRAIN = [
    "train",
    "--data",
    "digits",
    "--model",
    "mlp",
    "--width",
    "0.25",
    "--epochs",
    "2",
    "--max-train",
    "150",
    "--max-eval",
    "60",
    "--quiet",
]
REMOVE_FAST = ["--criterion", "random", "--solver", "cg", "--max-iter", "5", "--quiet"]
#: options of the parser that are not part of a run's configuration (output and control)
NOT_CONFIG = {"command", "debug_global", "debug", "json", "quiet", "config", "force", "out"}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _model_file(run: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of ``run/model.safetensors`` and its geninf record."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(run / "model.safetensors"), framework="pt", device="cpu") as fh:
        meta = fh.metadata() or {}
    return load_file(str(run / "model.safetensors")), json.loads(meta["geninf"])


def _comparable_config(run: Path) -> Any:
    """config.json without its wall-clock fields, the argv and the output path."""
    config = without_timing(_json(run / "config.json"))
    config.pop("argv", None)
    config["options"].pop("out", None)
    return config


def check_config_records_the_run(run: Path, argv: list[str], seeds: dict[str, int]) -> None:
    """config.json holds the seeds, the versions and every option of ``argv`` as resolved by
    the parser (defaults included)."""
    config = _json(run / "config.json")
    assert config["seeds"] == seeds
    versions = config["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["geninf"] == geninf.__version__
    assert versions["numpy"] == numpy.__version__
    assert versions["python"] == platform.python_version()
    assert isinstance(config["threads"], int) and config["threads"] >= 1
    resolved = vars(build_parser().parse_args(argv))
    expected = {k: v for k, v in resolved.items() if k not in NOT_CONFIG}
    missing = sorted(set(expected) - set(config["options"]))
    assert not missing, f"options not recorded in config.json: {missing}"
    for key, value in expected.items():
        want = list(value) if isinstance(value, tuple) else value
        assert config["options"][key] == want, key


def test_cli_train_same_seed_gives_a_byte_identical_model(tmp_path: Path, threads: int) -> None:
    argv = [*TRAIN, "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    scramble_global_rng()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert without_timing(_json(a / "results.json")) == without_timing(_json(b / "results.json"))
    assert _comparable_config(a) == _comparable_config(b)
    check_config_records_the_run(a, [*argv, "--out", str(a)], {"model": 3, "data": 0})
    assert main([*TRAIN, "--seed", "4", "--out", str(tmp_path / "c")]) == 0
    other = (tmp_path / "c" / "model.safetensors").read_bytes()
    assert other != (a / "model.safetensors").read_bytes(), "--seed changes nothing"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run directory to edit."""
    out = tmp_path_factory.mktemp("repro") / "trained"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", ["remove", "relabel"])
def test_cli_edit_same_seed_gives_the_same_model_and_results(
    command: str, checkpoint: Path, tmp_path: Path
) -> None:
    if command == "remove":
        target = ["--forget", "class:3"]
    else:
        y = load_dataset("digits", seed=0, flatten=True, max_train=150, max_eval=60).train[1]
        changes = tmp_path / "changes.csv"
        changes.write_text("".join(f"{i},{(int(y[i]) + 1) % 10}\n" for i in range(4)))
        target = ["--changes", str(changes)]
    argv = [command, "--checkpoint", str(checkpoint), *target, *REMOVE_FAST, "--seed", "1"]
    runs = [tmp_path / "a", tmp_path / "b"]
    assert main([*argv, "--out", str(runs[0])]) == 0
    scramble_global_rng()
    assert main([*argv, "--out", str(runs[1])]) == 0
    (t1, m1), (t2, m2) = (_model_file(r) for r in runs)
    assert_same_tensors(t1, t2)
    # the model file's record is identical but for the time of the edit (module docstring)
    assert without_timing(m1) == without_timing(m2)
    r1, r2 = (without_timing(_json(r / "results.json")) for r in runs)
    assert r1 == r2
    assert r1["record"]["seed"] == 1 and r1["record"]["options"]
    assert _comparable_config(runs[0]) == _comparable_config(runs[1])
    check_config_records_the_run(runs[0], [*argv, "--out", str(runs[0])], {"edit": 1})
    other = tmp_path / "c"
    assert main([*argv[:-1], "2", "--out", str(other)]) == 0
    assert tensors_differ(t1, _model_file(other)[0]), "--seed changes nothing"
