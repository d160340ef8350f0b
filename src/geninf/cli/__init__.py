"""The ``geninf`` command. A thin shell over the library: parsing, printing, exit codes.

Each subcommand calls one job of :mod:`geninf.report.jobs` (or :func:`geninf.demo.run_demo`),
which writes a run directory and returns its results; the shell prints them (a summary, or the
results as JSON with ``--json``) and maps errors to exit codes:

- 0 success; 2 bad input or usage (argparse errors too, unwritable or existing output);
  3 numerical failure; 130 interrupted (nothing written); 1 an internal error (a bug).

Errors are one line on stderr (``geninf: error: ...``); ``--debug`` shows the traceback.
``--config FILE`` (every subcommand) reads options from a JSON or TOML file; the command line
overrides it (:mod:`geninf.cli.config`).
Under ``torchrun`` every rank computes and only rank 0 writes and prints.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..distributed import init_from_env, is_main_process
from ..errors import GenInfError, InputError, NumericalError
from ..report.document import markdown_table
from .config import expand_config
from .parser import build_parser

__all__ = ["build_parser", "main"]


def _job(command: str) -> Callable[..., dict[str, Any]]:
    if command == "demo":
        from ..demo import run_demo

        return run_demo
    from ..report import jobs

    return {
        "train": jobs.train_run,
        "remove": jobs.remove_run,
        "relabel": jobs.relabel_run,
        "score": jobs.score_run,
        "bench": jobs.bench_run,
        "report": jobs.regenerate_report,
    }[command]


def _call(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Call the job of ``args.command`` with the options its signature takes."""
    job = _job(args.command)
    given = vars(args)
    if args.command == "bench":  # the experiment settings (see _add_bench) go as overrides
        given["overrides"] = {k: given.pop(k) for k in given["overrides"]}
        given["out"] = given.get("out") or f"runs/bench/{args.experiment}"
    params = inspect.signature(job).parameters
    kwargs = {k: v for k, v in given.items() if k in params}
    if "progress" in params:
        kwargs["progress"] = not args.quiet
    if "argv" in params:
        kwargs["argv"] = list(argv)
    return job(**kwargs)


def _nothing_written(args: argparse.Namespace) -> str:
    """What an interrupted or failed command left behind, for its one-line message."""
    if args.command == "report":
        return "no file was left half-written (each is its previous or its new version)"
    return "no output was written"


def _public_path(filename: Any) -> str:
    """A path as the user knows it: ``DIR/.OUT.staging-XXXX/f`` (a run being written, see
    :class:`~geninf.report.RunDir`) becomes ``DIR/OUT/f``."""
    return re.sub(r"(^|/)\.([^/]+)\.staging-[^/]+", r"\1\2", str(filename))


def _internal(exc: BaseException) -> str:
    return (
        f"internal error: {type(exc).__name__}: {_one_line(exc)} "
        "(rerun with --debug for the traceback)"
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


_METRICS = ("test_acc", "self_acc", "self_test_acc", "f1", "changed_acc_new", "changed_acc_old")


def _summary(command: str, results: dict[str, Any], seconds: float) -> str:
    """A short human-readable account of a run (``--json`` prints the whole results)."""
    lines: list[str] = []
    if command == "demo":
        lines += [results.get("description", ""), "", results.get("table", "")]
    elif command == "train":
        m = results.get("metrics", {})
        lines.append(
            f"trained: test acc {m.get('test', {}).get('acc', float('nan')):.2f}%, "
            f"validation acc {m.get('validation', {}).get('acc', float('nan')):.2f}% "
            f"({results.get('num_parameters')} parameters)"
        )
    elif command in ("remove", "relabel"):
        metrics = results.get("metrics") or {}
        keys = [k for k in _METRICS if any(k in m for m in metrics.values())]
        rows = [
            [name, *(f"{m[k]:.4g}" if k in m else "—" for k in keys)] for name, m in metrics.items()
        ]
        lines.append(markdown_table(["model", *keys], rows))
    elif command == "score":
        for q in results.get("queries", [])[:8]:
            best = ", ".join(str(e["train"]) for e in q["helpful"])
            worst = ", ".join(str(e["train"]) for e in q["harmful"])
            lines.append(f"{q['split']}[{q['index']}]: helpful {best}; harmful {worst}")
    elif command == "bench":
        lines.append(f"experiment {results.get('name')} over seeds {results.get('seeds')}")
    for note in results.get("notes") or []:
        lines.append(f"note: {note}")
    lines.append(f"({seconds:.1f} s)")
    return "\n".join(line for line in lines if line is not None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``geninf`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.command is None:
        parser.print_help()
        return 2
    start = time.perf_counter()
    code, results = _execute(args, argv)
    if code is not None:
        return code
    if is_main_process():
        _print(args, results, time.perf_counter() - start)
    return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The options of ``argv`` (with its ``--config`` file), or the exit status of a usage
    error, ``--help`` or ``--version``."""
    try:
        full = expand_config(parser, argv)  # --config FILE: its options, then the command line
        return parser.parse_args(full)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 0
    except InputError as exc:  # a bad --config file
        if "--debug" in argv:
            raise
        print(f"geninf: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug in reading the options
        if "--debug" in argv:
            raise
        print(f"geninf: {_internal(exc)}", file=sys.stderr)
        return 1


def _execute(args: argparse.Namespace, argv: list[str]) -> tuple[int | None, dict[str, Any]]:
    """Run the job; (None, its results), or (the exit status, {}) after a one-line error."""
    debug = args.debug_global or getattr(args, "debug", False)
    try:
        init_from_env()  # under torchrun: one process group, data sharded over the ranks
        return None, _call(args, argv)
    except BaseException as exc:
        code, message = _failure(args, exc)
        if debug or code is None:  # --debug: the traceback
            raise
        print(f"geninf: {message}", file=sys.stderr)
        return code, {}


def _failure(args: argparse.Namespace, exc: BaseException) -> tuple[int | None, str]:
    """The exit status and one-line message of ``exc`` (None: not ours to handle)."""
    if isinstance(exc, NumericalError):
        return 3, f"numerical failure: {_one_line(exc)}"
    if isinstance(exc, InputError | GenInfError):
        return 2, f"error: {_one_line(exc)}"
    if isinstance(exc, KeyboardInterrupt):
        return 130, f"interrupted; {_nothing_written(args)}"
    if isinstance(exc, OSError):
        where = f" ({_public_path(exc.filename)})" if getattr(exc, "filename", None) else ""
        return 2, f"error: {exc.strerror or _one_line(exc)}{where}; {_nothing_written(args)}"
    if isinstance(exc, Exception):  # a bug: say so in one line, traceback with --debug
        return 1, _internal(exc)
    return None, ""


def _print(args: argparse.Namespace, results: dict[str, Any], seconds: float) -> None:
    """Print the results (``--json``) or a summary, the warnings and where the report is."""
    if getattr(args, "json", False):
        print(json.dumps(results, indent=2, allow_nan=False))
        return
    if not getattr(args, "quiet", False):
        for warning in results.get("warnings") or []:
            print(f"geninf: warning: {warning}", file=sys.stderr)
    print(_summary(args.command, results, seconds))
    out = getattr(args, "out", None) or getattr(args, "run_dir", None)
    if out:
        print(f"report: {out}/report.html")
