"""The ``geninf`` argument parser: every subcommand and option (see docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, NoReturn

from .. import __version__
from ..defaults import EDIT_DEFAULTS
from ..demo import DemoJob
from ..edit.config import EditConfig
from . import values

__all__ = ["build_parser"]

EDIT_METHODS = [
    "gif",
    "freezing",
    "projecting",
    "original",
    "second_order",
    "finetune",
    "gradient_ascent",
    "random_label",
    "l1_sparse",
    "scrub",
    "salun",
]
RELABEL_METHODS = ["gif", "freezing", "projecting", "original", "finetune"]
SCORE_METHODS = ["gif", "original", "freezing", "projecting", "grad_dot", "random"]
CRITERIA = [
    "highest_gradients",
    "highest_outputs",
    "lowest_gradients",
    "lowest_outputs",
    "saliency",
    "random",
    "all",
]
SOLVERS = ["auto", "dense", "cg", "lissa", "neumann_normal", "lsmr"]
SCHEDULES = ["auto", "newton", "search", "paper"]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"geninf: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help='read options from a .json or .toml file of {"option-name": value, ...}; options '
        "given on the command line override it (see docs/cli.md)",
    )
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print the results (results.json) as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bars or warnings")
    g.add_argument("--debug", action="store_true", help="show a traceback on errors")


def _run_options(
    p: argparse.ArgumentParser,
    *,
    default_out: str | None = None,
    out_required: bool = True,
    out_help: str | None = None,
    device_and_seed: bool = True,
) -> None:
    """The ``run`` group (``--out``, ``--force``, ``--device``, ``--threads``, ``--seed``) and
    the output options."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--out",
        required=out_required and default_out is None,
        default=default_out,
        metavar="RUN_DIR",
        help=out_help
        or "output run directory" + (f" (default {default_out})" if default_out else ""),
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it is a run directory geninf made and holds nothing else",
    )
    if device_and_seed:
        g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument(
        "--threads", type=values.threads, help="CPU threads, 1-4096 (default: PyTorch's)"
    )
    if device_and_seed:
        g.add_argument(
            "--seed", type=values.seed, default=0, help="seed of every random choice (default 0)"
        )
    _output_options(p)


def _checkpoint_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="run directory, .safetensors file, or .pt state dict",
    )
    g.add_argument(
        "--data",
        metavar="SPEC",
        help="data spec, as for train (default: the checkpoint's record)",
    )
    g.add_argument("--model", help="model name or package.module:factory (for a .pt file)")
    g.add_argument("--width", type=float, help="width multiplier (for a .pt file)")


#: how each kind of :class:`~geninf.edit.config.EditConfig` field is read from the command line
_KINDS: dict[str | None, dict[str, Any]] = {
    None: {},
    "method": {},
    "criterion": {"choices": CRITERIA},
    "solver": {"choices": SOLVERS},
    "schedule": {"choices": SCHEDULES},
    "positive_int": {"type": values.positive_int},
    "float": {"type": float},
    "floats": {"type": values.floats},
    "damping": {"type": values.damping},
    "key_values": {"type": values.key_values, "metavar": "KEY=VALUE,..."},
}


def _edit_fields(
    g: Any,
    names: Sequence[str],
    *,
    methods: list[str],
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add the options ``names`` of :class:`~geninf.edit.config.EditConfig` to group ``g``:
    flag, default, help and type all come from the field (``defaults``/``helps`` override)."""
    by_name = {f.name: f for f in fields(EditConfig)}
    for name in names:
        f = by_name[name]
        kind = f.metadata["kind"]
        kw = dict(_KINDS[kind])
        if kind == "method":
            kw["choices"] = methods
        kw["default"] = (defaults or {}).get(name, f.default)
        kw["help"] = (helps or {}).get(name, f.metadata["help"])
        g.add_argument("--" + name.replace("_", "-"), **kw)


#: the EditConfig fields that ``geninf score`` shares (its damping is an absolute λ)
_SOLVER_FIELDS = ("method", "criterion", "ratio", "solver", "max_iter", "tol")


def _in_group(group: str) -> list[str]:
    """The :class:`EditConfig` fields of command-line group ``group`` (those with a help)."""
    return [
        f.name
        for f in fields(EditConfig)
        if f.metadata.get("group") == group and f.metadata.get("help")
    ]


def _edit_options(p: argparse.ArgumentParser, methods: list[str]) -> None:
    _checkpoint_options(p)
    _edit_fields(p.add_argument_group("edit"), _in_group("edit"), methods=methods)
    g = p.add_argument_group("schedule")
    _edit_fields(g, _in_group("schedule"), methods=methods)
    if {"l1_sparse", "salun", "scrub"} & set(methods):
        u = p.add_argument_group("unlearning baselines")
        _edit_fields(u, _in_group("unlearning"), methods=methods)
    g.add_argument(
        "--retrain",
        action="store_true",
        help="also retrain from scratch for reference (costs a training run)",
    )
    _run_options(p)


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a model with Adam; write model.safetensors and a report.",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="digits, mnist5k, mnist-aug:N (embedded); cifar10:PATH, mnist:PATH, svhn:PATH; your "
        "own: npz:FILE (arrays x, y), folder:DIR (a subfolder of images per class), "
        "csv:FILE[#LABEL_COLUMN] (default column label), package.module:factory (docs/cli.md)",
    )
    g.add_argument(
        "--model",
        required=True,
        help="mlp, small_cnn, tinynet, vgg11, resnet18 or package.module:factory",
    )
    g.add_argument("--epochs", type=values.positive_int, default=10, help="default 10")
    g.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1)")
    g.add_argument("--batch-size", type=values.positive_int, default=64, help="default 64")
    g.add_argument(
        "--lr", type=values.positive_float, default=1e-3, help="Adam learning rate (default 1e-3)"
    )
    g.add_argument(
        "--weight-decay", type=values.nonnegative_float, default=1e-4, help="L2 coefficient (1e-4)"
    )
    g.add_argument(
        "--data-seed", type=values.seed, default=0, help="seed of the data split (default 0)"
    )
    g.add_argument("--normalize", action="store_true", help="standardize inputs per channel")
    g.add_argument(
        "--flatten",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flatten the inputs (default: for the MLP only)",
    )
    g.add_argument("--max-train", type=values.positive_int, help="cap on training examples")
    g.add_argument("--max-eval", type=values.positive_int, help="cap on validation/test examples")
    _run_options(p)
    p.set_defaults(command="train")


def _add_edits(sub: Any) -> None:
    p = sub.add_parser(
        "remove",
        help="remove training data from a model (GIF and baselines)",
        description="Remove training examples (a class, a list of indices, a random "
        "fraction or the examples of some sources) "
        "from a trained model; write the edited model and a report.",
    )
    p.add_argument(
        "--forget",
        required=True,
        metavar="SPEC",
        help="class:C (every training example of class C), indices:FILE, random:FRACTION "
        "(e.g. random:0.01, drawn with --seed) or sources:K (every example of K sources, "
        "for augmented data)",
    )
    _edit_options(p, EDIT_METHODS)
    p.set_defaults(command="remove")
    p = sub.add_parser(
        "relabel",
        help="change training labels of a model (GIF and baselines)",
        description="Apply the effect of changing training labels; write the "
        "edited model and a report.",
    )
    p.add_argument(
        "--changes",
        required=True,
        metavar="FILE.csv",
        help="CSV rows index,new_label (indices into the training split)",
    )
    _edit_options(p, RELABEL_METHODS)
    p.set_defaults(command="relabel")


def _add_score(sub: Any) -> None:
    p = sub.add_parser(
        "score",
        help="score training examples for chosen predictions",
        description="Which training examples help or harm chosen test "
        "predictions (positive = helpful).",
    )
    p.add_argument(
        "--queries",
        default="test:0-7",
        metavar="SPEC",
        help="test:0-7, validation:3,5 or indices:FILE (default test:0-7)",
    )
    p.add_argument("--k", type=values.positive_int, default=5, help="top-k per kind (default 5)")
    p.add_argument(
        "--train-examples",
        type=values.positive_int,
        help="score only the first N training examples",
    )
    p.add_argument(
        "--self-influence",
        dest="self_influence_top",
        action="store_true",
        help="also rank training examples by self-influence",
    )
    _checkpoint_options(p)
    g = p.add_argument_group("scoring")
    _edit_fields(g, _SOLVER_FIELDS, methods=SCORE_METHODS)
    g.add_argument("--damping", type=float, default=0.01, help="λ added to H (default 0.01)")
    _edit_fields(g, ("batch_size",), methods=SCORE_METHODS)
    _run_options(p)
    p.set_defaults(command="score")


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="run a paper experiment (seeds, tables, plots)",
        description="The paper's experiments at embedded scale.",
    )
    p.add_argument("experiment", choices=["class-removal", "selection", "backdoor"])
    p.add_argument("--seeds", type=values.positive_int, help="run seeds 0..N-1 (default 5)")
    p.add_argument("--quick", action="store_true", help="a fast sanity run (2 seeds, less work)")
    g = p.add_argument_group("experiment settings (override the defaults)")
    g.add_argument("--data", metavar="SPEC", help="data spec, as for train (e.g. mnist-aug:20000)")
    g.add_argument("--model", help="model name")
    g.add_argument("--width", type=float, help="width multiplier")
    g.add_argument("--epochs", type=values.positive_int, help="training epochs")
    g.add_argument("--max-train", type=values.positive_int, help="cap on training examples")
    g.add_argument("--ratios", type=values.floats, help="modification ratios, e.g. 0.01,0.05")
    g.add_argument("--schedules", type=values.names, help="newton,paper")
    g.add_argument("--methods", type=values.names, help="e.g. gif,original,finetune")
    g.add_argument("--criteria", type=values.names, help="selection criteria (bench selection)")
    g.add_argument("--forget-class", type=int, help="class to remove")
    overrides = [a.dest for a in g._group_actions]  # the settings the job gets as overrides
    g.add_argument(
        "--cache-dir",
        default="runs/experiment-cache",
        help="trained-model cache (default runs/experiment-cache)",
    )
    out_help = "output run directory (default runs/bench/EXPERIMENT)"
    _run_options(p, out_required=False, out_help=out_help, device_and_seed=False)
    p.set_defaults(command="bench", overrides=tuple(overrides))


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="regenerate report.md/html of a run directory",
        description="Redraw the plots and rewrite report.md and report.html from results.json.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    _output_options(p)
    p.set_defaults(command="report")


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="remove a class from a CNN on embedded MNIST, GIF vs baselines",
        description="Train (or load from the cache) a small CNN on 5,000 "
        "embedded MNIST images, remove one class with GIF and the baselines, "
        "retrain for reference, print the table and write a report.",
    )
    p.add_argument("--forget-class", type=int, default=8, help="class to remove (default 8)")
    p.add_argument("--epochs", type=values.positive_int, default=10, help="training epochs (10)")
    demo = DemoJob.signature().parameters
    names = [n for n in DemoJob.EDIT_FIELDS if n != "seed"]  # --seed: a run option
    helps = {
        "ratio": f"GIF modification ratio ({EDIT_DEFAULTS.ratio})",
        "hessian_examples": "retained examples in the Hessian sample (default "
        f"{demo['hessian_examples'].default})",
    }
    defaults = {n: demo[n].default for n in names}
    _edit_fields(p, names, methods=[], defaults=defaults, helps=helps)
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also GIF at 1%%/5%%/20%% for two criteria (accuracy vs ratio plot)",
    )
    p.add_argument("--cache-dir", default="runs/cache", help="trained-model cache (runs/cache)")
    _run_options(p, default_out="runs/demo")
    p.set_defaults(command="demo", threads=1)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``geninf`` and its subcommands."""
    parser = Parser(
        prog="geninf",
        description="Generalized influence functions: apply the effect of training data to a "
        "chosen subset of a model's parameters. Exit codes: 0 success, 2 bad input or usage, "
        "3 numerical failure.",
    )
    parser.add_argument("--version", action="version", version=f"geninf {__version__}")
    parser.add_argument(
        "--debug", dest="debug_global", action="store_true", help="show tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in (_add_demo, _add_train, _add_edits, _add_score, _add_bench, _add_report):
        add(sub)
    return parser
