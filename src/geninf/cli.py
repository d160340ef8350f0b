"""The ``geninf`` command. A thin shell over the library: parsing, printing, exit codes.

Exit codes: 0 success, 2 bad input or usage, 3 numerical failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .distributed import init_from_env, is_main_process
from .errors import InputError, NumericalError

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    """Remove one digit class from a small MLP with GIF and compare with retraining."""
    import torch

    from .demo import run_demo

    torch.set_num_threads(max(1, min(args.threads, torch.get_num_threads())))
    return run_demo(
        forget_class=args.forget_class,
        ratio=args.ratio,
        damping=args.damping,
        seed=args.seed,
        progress=not args.quiet,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geninf",
        description="Generalized influence functions: apply the effect of training data to a "
        "chosen subset of a model's parameters.",
    )
    parser.add_argument("--version", action="version", version=f"geninf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="remove a class from a small model on embedded digits, with GIF and baselines"
    )
    demo.add_argument("--forget-class", type=int, default=8, help="class to remove (default 8)")
    demo.add_argument("--ratio", type=float, default=0.05, help="fraction of parameters GIF moves")
    demo.add_argument(
        "--damping", type=float, default=0.01, help="λ added to the Hessian (default 0.01)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--json", action="store_true", help="print the result as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    start = time.perf_counter()
    init_from_env()  # under torchrun: one process group, data sharded over the ranks
    try:
        result = args.func(args)
    except InputError as exc:
        if args.debug:
            raise
        print(f"geninf: error: {exc}", file=sys.stderr)
        return 2
    except NumericalError as exc:
        if args.debug:
            raise
        print(f"geninf: numerical failure: {exc}", file=sys.stderr)
        return 3
    if not is_main_process():
        return 0
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print(result.get("table", ""))
        print(f"\n(total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
