"""Forgetting random training examples: GIF and the unlearning baselines against retraining.

    python benchmarks/forget_examples.py [--out FILE.json] [--seeds 0 1 2]
        [--fractions 0.01 0.1] [--epochs 40] [--threads N] [--quick]

Setting (per seed s): the embedded digits data set (seeded stratified split: 1,259 train, 269
validation, 269 test); the bench MLP 64-32-10 (tanh, 2,410 parameters) trained 40 epochs with
seeded Adam (lr 1e-3, batch 64, weight decay 1e-4; the edits use the same regularized objective).
A fraction (1% or 10%) of the training set, drawn with seed s
(``geninf.edit.random_forget_indices``), is forgotten. The reference is the model retrained from
scratch on the retained data with the same seed and recipe; "retrain (other seed)" retrains with
another seed and measures the seed noise every gap contains.

Methods, all through ``geninf.edit.remove`` on the training data and a validation score only
(no test data steers any choice):

- ``gif [CRITERION]``: the library's defaults (schedule, damping, solver, ratio), the subset
  selected from the forget set with the criterion; ``gif [highest_gradients, newton]`` is the raw
  one-shot Newton update (scale r/(m − r)) and ``gif [highest_gradients, paper]`` the authors'
  step-norm/step-count search on the validation score;
- the baselines ``finetune``, ``gradient_ascent``, ``random_label``, ``l1_sparse``, ``scrub``,
  ``salun``: the budget of example-gradient evaluations that ``gif [highest_gradients]`` spent on
  the same seed (``--budget gif``) or, by default, retraining's cost (epochs × retained examples:
  GIF's default costs several times more, and a full run at its budget takes about an hour here),
  Adam lr 1e-3, batch 64, and the checkpoint (of 20) with the best validation
  score (``schedule="paper"``) — without it gradient ascent runs until the model is destroyed.

The validation score is ``geninf.bench.unlearning_metrics.ForgetValidation``:
S = a_V − |a_F − a_V| − 0.1·|ℓ̄_F − ℓ̄_V| on the validation split V and the forget set F — retraining
would treat F like unseen data, so S rewards validation accuracy and F looking like V.

Metrics (``geninf.bench.unlearning_metrics``): UA = 100 − forget accuracy, RA, TA (retain and
test accuracy), MIA efficacy (logistic-regression attack on the confidence, fitted on retain vs
test, % of the forget set predicted non-member), their average absolute gap to retraining, and
per forget example the KL(p_retrain ‖ p_edited) and the W₁ distance between the loss
distributions. Mean ± sample std (ddof=1) over seeds. Writes the JSON to ``--out`` (default
``benchmarks/results/forget_examples.json``) and a markdown table next to it, and prints the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import versions
from _outputs import claim, write_text

from geninf.bench import build_model, load_dataset, train_model
from geninf.bench.unlearning_metrics import (
    GAP_KEYS,
    ForgetValidation,
    average_gap,
    forget_divergence,
    unlearning_metrics,
)
from geninf.edit import random_forget_indices, remove, split_forget
from geninf.objective import SupervisedObjective

WEIGHT_DECAY = 1e-4
CRITERIA = ("highest_gradients", "highest_outputs", "saliency", "random")
BASELINES = ("finetune", "gradient_ascent", "random_label", "l1_sparse", "scrub", "salun")
COLUMNS = (*GAP_KEYS, "gap", "kl", "loss_w1")


def train(splits, data, *, seed: int, epochs: int, hidden: tuple[int, ...]) -> torch.nn.Module:
    net = build_model(
        "mlp", input_shape=splits.input_shape, num_classes=splits.num_classes,
        seed=seed, hidden=hidden,
    )  # fmt: skip
    train_model(net, data, epochs=epochs, seed=seed, weight_decay=WEIGHT_DECAY, progress=False)
    return net.eval()


def evaluate_model(model, reference, parts, seed: int) -> dict[str, float]:
    retain, forget, test = parts
    out = unlearning_metrics(model, retain, forget, test, seed=seed)
    div = forget_divergence(model, reference, forget)
    out.update(kl=div["kl"], loss_w1=div["loss_w1"])
    return out


def edits(model, retain, forget, validation, seed: int, budget: int | None) -> dict[str, dict]:
    """Every method's edited model, example-gradient evaluations and seconds; the baselines get
    ``budget`` example gradients (None: what ``gif [highest_gradients]`` spent)."""
    obj = SupervisedObjective(weight_decay=WEIGHT_DECAY)
    runs: dict[str, dict[str, Any]] = {}

    def run(label: str, **kw: Any) -> None:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = remove(model, obj, retain, forget, validation=validation, seed=seed, **kw)
        runs[label] = {
            "model": res.model,
            "example_gradients": res.record.compute.example_gradients,
            "seconds": time.perf_counter() - t,
            "steps": res.record.steps,
        }

    for crit in CRITERIA:
        run(f"gif [{crit}]", method="gif", criterion=crit)
    run("gif [highest_gradients, newton]", method="gif", schedule="newton")
    run("gif [highest_gradients, paper]", method="gif", schedule="paper")
    if budget is None:
        budget = runs["gif [highest_gradients]"]["example_gradients"]
    for name in BASELINES:
        run(name, method=name, schedule="paper", budget=budget)
    return runs


def run_seed(seed: int, fraction: float, epochs: int, hidden: tuple[int, ...], budget: str) -> dict:
    splits = load_dataset("digits", seed=seed, flatten=True)
    x, y = splits.train
    idx = random_forget_indices(len(y), fraction, seed)
    retain, forget = split_forget((x, y), idx)
    t = time.perf_counter()
    model = train(splits, (x, y), seed=seed, epochs=epochs, hidden=hidden)
    train_seconds = time.perf_counter() - t
    t = time.perf_counter()
    retrained = train(splits, retain, seed=seed, epochs=epochs, hidden=hidden)
    retrain_seconds = time.perf_counter() - t
    other = train(splits, retain, seed=seed + 1000, epochs=epochs, hidden=hidden)
    parts = (retain, forget, splits.test)
    validation = ForgetValidation(splits.validation, forget)
    reference = evaluate_model(retrained, retrained, parts, seed)
    retrain_cost = epochs * len(retain[1])
    methods = {
        "original": {"model": model, "example_gradients": 0, "seconds": 0.0},
        "retrain (other seed)": {
            "model": other, "example_gradients": retrain_cost, "seconds": retrain_seconds,
        },
        **edits(
            copy.deepcopy(model), retain, forget, validation, seed,
            retrain_cost if budget == "retrain" else None,
        ),
    }  # fmt: skip
    out: dict[str, Any] = {"seed": seed, "num_forget": int(idx.numel()), "methods": {}}
    out["methods"]["retrain"] = {
        **reference, "gap": 0.0, "example_gradients": retrain_cost, "seconds": retrain_seconds,
    }  # fmt: skip
    for label, m in methods.items():
        metrics = evaluate_model(m["model"], retrained, parts, seed)
        metrics["gap"] = average_gap(metrics, reference)
        metrics["validation_score"] = validation(m["model"])
        extra = {k: v for k, v in m.items() if k != "model"}
        out["methods"][label] = {**metrics, **extra}
    out["train_seconds"] = train_seconds
    return out


def summarize(per_seed: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label in per_seed[0]["methods"]:
        row = {}
        for key in (*COLUMNS, "example_gradients", "seconds"):
            vals = np.array([r["methods"][label][key] for r in per_seed], dtype=float)
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[key] = {"mean": float(vals.mean()), "std": std}
        table[label] = row
    return table


def markdown(result: dict) -> str:
    s = result["config"]
    lines = [
        "# Forgetting random training examples (digits MLP)",
        "",
        f"digits, MLP 64-{'-'.join(map(str, s['hidden']))}-10 tanh, {s['epochs']} epochs; seeds "
        f"{s['seeds']}; mean ± sample std. UA/RA/TA/MIA in %; gap = mean |Δ| of the four to "
        "retraining (points); KL = mean KL(p_retrain ‖ p) on the forget set; W₁ = distance of "
        "the forget-loss distributions; cost in example-gradient evaluations.",
    ]
    for frac, summary in result["summary"].items():
        lines += [
            "",
            f"## forget {float(frac):.0%} ({result['num_forget'][frac]} examples)",
            "",
            "| method | UA | RA | TA | MIA | avg gap ↓ | KL ↓ | W₁ ↓ | cost | s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, row in summary.items():
            cells = [f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}" for k in COLUMNS[:5]]
            cells += [f"{row[k]['mean']:.3f}" for k in ("kl", "loss_w1")]
            cost = f"{row['example_gradients']['mean']:.3g}"
            lines.append(
                f"| {label} | {' | '.join(cells)} | {cost} | {row['seconds']['mean']:.1f} |"
            )
    lines += ["", f"Total run time: {result['wall_time']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/forget_examples.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32])
    ap.add_argument(
        "--budget",
        choices=["retrain", "gif"],
        default="retrain",
        help="baselines' example gradients: retraining's (epochs × retained examples, default) "
        "or what gif [highest_gradients] spent",
    )
    ap.add_argument("--quick", action="store_true", help="2 seeds, 10 epochs: a smoke run")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    claim(args.out, Path(args.out).with_suffix(".md"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.epochs = args.seeds[:2], 10
    start = time.perf_counter()
    per_fraction = {
        str(f): [run_seed(s, f, args.epochs, tuple(args.hidden), args.budget) for s in args.seeds]
        for f in args.fractions
    }
    result = {
        "benchmark": "forget_examples",
        "command": shlex.join(["python", "benchmarks/forget_examples.py", *sys.argv[1:]]),
        "config": {
            "data": "digits",
            "model": "mlp",
            "hidden": args.hidden,
            "epochs": args.epochs,
            "weight_decay": WEIGHT_DECAY,
            "fractions": args.fractions,
            "seeds": args.seeds,
            "criteria": CRITERIA,
            "baselines": BASELINES,
            "baseline_budget": (
                "retraining's: epochs x retained examples"
                if args.budget == "retrain"
                else "example gradients of gif [highest_gradients], same seed"
            ),
            "validation": "ForgetValidation(validation split, forget set), loss_weight 0.1",
            "std": "sample standard deviation (ddof=1) over seeds",
        },
        "num_forget": {f: runs[0]["num_forget"] for f, runs in per_fraction.items()},
        "summary": {f: summarize(runs) for f, runs in per_fraction.items()},
        "per_seed": per_fraction,
        "versions": versions(),
    }
    result["wall_time"] = time.perf_counter() - start
    out = Path(args.out)
    text = json.dumps(result, indent=2)
    write_text(out, text + "\n")
    write_text(out.with_suffix(".md"), markdown(result))
    print(text)


if __name__ == "__main__":
    main()
