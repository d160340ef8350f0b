"""Run the paper's experiments at embedded scale and write results.json, table.md and PNGs.

    python benchmarks/run_experiments.py class-removal|selection|backdoor|all
        [--seeds N] [--quick] [--data digits|mnist5k|cifar10:PATH] [--model NAME] [--width W]
        [--epochs E] [--schedules newton,paper] [--out DIR] [--cache-dir DIR] [--progress]
        [--replot]

Defaults (5 seeds; measured with 1 thread on a 2-core machine shared with other jobs, load ~5:
class removal 8 min with training / 4.5 min with cached models, selection 1.5 min with cached
models, backdoor 10.5 min; CPU time about a third of that):

- class-removal and selection: scikit-learn digits, the 64-128-64-10 tanh MLP (17k parameters),
  40 epochs; remove class 8;
- backdoor: mnist5k (1,000 of its 3,500 training images, stratified), the paper's TinyNet at
  width 0.5, 40 epochs, 10% poisoned with the checkerboard trigger → label 4; paper schedule.

``--quick`` is a sanity run (2 seeds, fewer epochs and ratios). ``--data cifar10:PATH`` (the
CIFAR-10 python pickles) selects VGG-11 at width 0.25 with normalized inputs unless ``--model`` /
``--width`` say otherwise. Each experiment writes into ``OUT/<experiment>/``; trained models are
cached in ``--cache-dir`` (default ``runs/experiment-cache``, ignored by git).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from geninf.bench.experiments import (
    BackdoorConfig,
    BackdoorResult,
    ClassRemovalConfig,
    ClassRemovalResult,
    SelectionConfig,
    SelectionResult,
    run_backdoor,
    run_class_removal,
    run_selection_criteria,
    write_outputs,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _outputs import check_folder, claim, record  # noqa: E402

EXPERIMENTS = {
    "class-removal": ("class_removal", ClassRemovalConfig, run_class_removal),
    "selection": ("selection_criteria", SelectionConfig, run_selection_criteria),
    "backdoor": ("backdoor", BackdoorConfig, run_backdoor),
}
RESULTS = {
    "class-removal": ClassRemovalResult,
    "selection": SelectionResult,
    "backdoor": BackdoorResult,
}

QUICK: dict[str, dict[str, Any]] = {
    "class-removal": {"seeds": (0, 1), "epochs": 15, "ratios": (0.05,)},
    "selection": {"seeds": (0, 1), "epochs": 15, "ratios": (0.01, 0.05, 0.3)},
    "backdoor": {"seeds": (0, 1), "epochs": 15, "max_train": 500, "extra_gif_criteria": ()},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1); default 5")
    p.add_argument("--quick", action="store_true", help="a fast sanity run (2 seeds, less work)")
    p.add_argument("--data", help="digits, mnist5k or cifar10:PATH")
    p.add_argument("--model", help="mlp, small_cnn, tinynet, vgg11, resnet18")
    p.add_argument("--width", type=float, help="model width multiplier")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--schedules", help="comma-separated: newton,paper")
    p.add_argument("--out", default="benchmarks/results/experiments", help="output directory")
    p.add_argument("--cache-dir", default="runs/experiment-cache", help="trained-model cache")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument(
        "--replot",
        action="store_true",
        help="only redraw table.md and the plots from OUT/<experiment>/results.json",
    )
    return p.parse_args(argv)


def make_config(name: str, args: argparse.Namespace) -> Any:
    """The config of experiment ``name`` from the defaults, ``--quick`` and the flags."""
    _, cls, _ = EXPERIMENTS[name]
    over: dict[str, Any] = dict(QUICK[name]) if args.quick else {}
    if args.data:
        over["data"] = args.data
        if args.data.startswith("cifar10"):  # the bigger setting: VGG-11 on CIFAR-10
            over.update(model="vgg11", width=0.25, normalize=True, epochs=30, max_train=None)
        elif name == "backdoor" and args.data != "mnist5k":
            over["max_train"] = None
    for flag in ("model", "width", "epochs"):
        if getattr(args, flag) is not None:
            over[flag] = getattr(args, flag)
    if args.model == "mlp" and name == "backdoor" and args.width is None:
        over["width"] = 1.0
    if args.seeds is not None:
        over["seeds"] = tuple(range(args.seeds))
    if args.schedules:
        over["schedules"] = tuple(s.strip() for s in args.schedules.split(",") if s.strip())
    over.update(cache_dir=args.cache_dir, progress=args.progress)
    return dataclasses.replace(cls(), **over)


def claim_folder(folder: Path) -> None:
    """Check what ``write_outputs`` may replace in ``folder``: results.json, table.md, PNGs."""
    plots = sorted(folder.glob("*.png")) if folder.is_dir() else []
    claim(folder / "results.json", folder / "table.md", *plots)


def write_checked(result: Any, folder: Path) -> dict[str, Any]:
    """``write_outputs`` under ``_outputs``' rule: never over a file the suite did not write."""
    claim_folder(folder)
    paths = write_outputs(result, folder)
    record([paths["json"], paths["markdown"], *paths["plots"]])
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    check_folder(args.out)
    for name in names:
        claim_folder(Path(args.out) / EXPERIMENTS[name][0])
    if args.replot:
        for name in names:
            folder = Path(args.out) / EXPERIMENTS[name][0]
            data = json.loads((folder / "results.json").read_text())
            paths = write_checked(RESULTS[name].from_dict(data), folder)
            print(f"== {name}: redrawn {paths['markdown']} and {len(paths['plots'])} plots")
        return 0
    configs = {name: make_config(name, args) for name in names}  # validate every flag first
    for name in names:
        folder, _, run = EXPERIMENTS[name]
        start = time.perf_counter()
        result = run(configs[name])
        paths = write_checked(result, Path(args.out) / folder)
        seconds = time.perf_counter() - start
        print(f"== {name}: {seconds:.1f} s wall ({len(result.seeds)} seeds) -> {paths['markdown']}")
        print(Path(paths["markdown"]).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
