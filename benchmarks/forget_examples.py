"""Forgetting training examples: GIF and the unlearning baselines against retraining.

    python benchmarks/forget_examples.py [--setting digits-mlp|mnist-cnn|mnist-aug-sources]
        [--out FILE.json] [--seeds 0 1 2] [--fractions 0.01 0.1] [--size N] [--sources K]
        [--epochs E] [--budget retrain|gif] [--threads N] [--quick] [--resume]

Settings (per seed s; every model trained with seeded Adam, lr 1e-3, batch 64, weight decay
1e-4, and the edits use the same regularized objective):

- ``digits-mlp`` (default): the embedded digits set (seeded stratified split: 1,259 train, 269
  validation, 269 test), the bench MLP 64-32-10 (tanh, 2,410 parameters), 40 epochs; a random
  1% or 10% of the training set is forgotten (``geninf.edit.random_forget_indices``, seed s).
- ``mnist-cnn``: the 5,000 embedded MNIST images (``mnist5k``: 3,500 train, 750 validation, 750
  test), the small CNN of the demo (width 0.5, 20,522 parameters), 10 epochs; random 1% / 10%.
- ``mnist-aug-sources``: ``mnist-aug:N`` (``--size``, default 10,000: two copies of each source
  image, the copy of a training source stays in training), the same CNN, 10 epochs; every copy
  of K = ``--sources`` (50) training source images is forgotten
  (``geninf.edit.source_forget_indices``, seed s).

The reference is the model retrained from scratch on the retained data with the same seed and
recipe; "retrain (other seed)" retrains with another seed and measures the seed noise every gap
contains. Methods, all through ``geninf.edit.remove`` on the training data and a validation
score only (no test data steers any choice):

- ``gif [CRITERION]``: the library's defaults (schedule, damping, solver, ratio), the subset
  selected from the forget set with the criterion; ``gif [highest_gradients, newton]`` is the raw
  one-shot Newton update (scale r/(m − r)) and ``gif [highest_gradients, paper]`` the authors'
  step-norm/step-count search on the validation score. On the CNN settings the Hessian is that
  of a stratified sample of ``HESSIAN_EXAMPLES`` retained examples (batches of 250), and the
  paper schedule tries at most 10 steps per step norm (instead of 30), to fit the time;
- the baselines ``finetune``, ``gradient_ascent``, ``random_label``, ``l1_sparse``, ``scrub``,
  ``salun``: each runs every point of its grid (``GRIDS``: the learning rate and the method's main
  hyper-parameter) with Adam, batch 64, the ``paper`` schedule (the best of 20 checkpoints on the
  validation score), and keeps the point with the best validation score. The whole search
  shares one budget B of example-gradient evaluations, B / (grid size) per point: the cost
  column counts every point. B is retraining's cost (epochs × retained examples, ``--budget
  retrain``, default) or what ``gif [highest_gradients]`` spent on the same seed (``--budget
  gif``).

The validation score is ``geninf.bench.unlearning_metrics.ForgetValidation``:
S = a_V − |a_F − a_V| − 0.1·|ℓ̄_F − ℓ̄_V| on the validation split V and the forget set F — retraining
would treat F like unseen data, so S rewards validation accuracy and F looking like V.

Metrics (``geninf.bench.unlearning_metrics``): UA = 100 − forget accuracy, RA, TA (retain and
test accuracy), MIA efficacy (logistic-regression attack on the confidence, fitted on retain vs
test, % of the forget set predicted non-member), their average absolute gap to retraining, and
per forget example the KL(p_retrain ‖ p_edited) and the W₁ distance between the loss
distributions. Mean ± sample std (ddof=1) over seeds. Writes the JSON to ``--out`` (default per
setting, ``benchmarks/results/forget_examples*.json``) after every seed (``"complete": false``
until the end; ``--resume`` reuses the finished seeds of a run with the same configuration) and
a markdown table next to it, and prints the JSON.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
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
from geninf.edit import random_forget_indices, remove, source_forget_indices, split_forget
from geninf.objective import SupervisedObjective

WEIGHT_DECAY = 1e-4
HESSIAN_EXAMPLES = 250
CRITERIA = ("highest_gradients", "highest_outputs", "saliency", "random")
#: each baseline's grid (chosen on validation); keys other than lr go to unlearning_options
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {
    "finetune": {"lr": (1e-4, 1e-3, 1e-2)},
    "gradient_ascent": {"lr": (1e-5, 1e-4, 1e-3)},
    "random_label": {"lr": (1e-4, 1e-3, 1e-2)},
    "l1_sparse": {"lr": (1e-3, 1e-2), "l1_strength": (1e-4, 1e-3)},
    "scrub": {"lr": (1e-4, 1e-3), "scrub_alpha": (0.1, 1.0)},
    "salun": {"lr": (1e-4, 1e-3), "salun_fraction": (0.1, 0.5)},
}
COLUMNS = (*GAP_KEYS, "gap", "kl", "loss_w1")
RESULTS = "benchmarks/results"


@dataclass(frozen=True)
class Setting:
    """One workload: data, model, training recipe and what is forgotten."""

    name: str
    data: str
    model: str
    epochs: int
    out: str
    title: str
    model_kw: dict[str, Any] = field(default_factory=dict)
    flatten: bool = False
    gif: dict[str, Any] = field(default_factory=dict)  # options of every GIF run
    paper: dict[str, Any] = field(default_factory=dict)  # extra options of the paper schedule
    baseline: dict[str, Any] = field(default_factory=dict)  # options of every baseline run
    skip: tuple[str, ...] = ()  # methods left out (for time)


SETTINGS = {
    "digits-mlp": Setting(
        "digits-mlp", "digits", "mlp", 40, f"{RESULTS}/forget_examples.json",
        "Forgetting random training examples (digits MLP)", {"hidden": (32,)}, flatten=True,
    ),
    "mnist-cnn": Setting(
        "mnist-cnn", "mnist5k", "small_cnn", 10, f"{RESULTS}/forget_examples_mnist_cnn.json",
        "Forgetting random training examples (small CNN, embedded MNIST)", {"width": 0.5},
        gif={"hessian_examples": HESSIAN_EXAMPLES, "batch_size": 250}, paper={"max_steps": 10},
        baseline={"checkpoints": 10},
    ),
    "mnist-aug-sources": Setting(
        "mnist-aug-sources", "mnist-aug:{size}", "small_cnn", 10,
        f"{RESULTS}/forget_examples_mnist_aug.json",
        "Forgetting every copy of some source images (small CNN, mnist-aug)", {"width": 0.5},
        gif={"hessian_examples": HESSIAN_EXAMPLES, "batch_size": 250}, paper={"max_steps": 10},
        baseline={"checkpoints": 10},
        skip=("gif [random]", "gif [highest_gradients, paper]"),
    ),
}  # fmt: skip


def train(setting: Setting, splits, data, seed: int, epochs: int) -> torch.nn.Module:
    net = build_model(
        setting.model, input_shape=splits.input_shape, num_classes=splits.num_classes,
        seed=seed, **setting.model_kw,
    )  # fmt: skip
    train_model(net, data, epochs=epochs, seed=seed, weight_decay=WEIGHT_DECAY, progress=False)
    return net.eval()


def evaluate_model(model, reference, parts, seed: int) -> dict[str, float]:
    retain, forget, test = parts
    out = unlearning_metrics(model, retain, forget, test, seed=seed)
    div = forget_divergence(model, reference, forget)
    out.update(kl=div["kl"], loss_w1=div["loss_w1"])
    return out


class Editor:
    """Runs ``geninf.edit.remove`` for one (model, forget set) and times it."""

    def __init__(self, model, retain, forget, validation, seed: int, setting: Setting):
        self.args = (model, SupervisedObjective(weight_decay=WEIGHT_DECAY), retain, forget)
        self.validation, self.seed, self.setting = validation, seed, setting

    def __call__(self, **kw: Any) -> dict[str, Any]:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = remove(*self.args, validation=self.validation, seed=self.seed, **kw)
        return {
            "model": res.model,
            "example_gradients": res.record.compute.example_gradients,
            "seconds": time.perf_counter() - t,
            "steps": res.record.steps,
            "chosen_score": res.record.validation_score,
        }

    def gif(self, **kw: Any) -> dict[str, Any]:
        return self(method="gif", **self.setting.gif, **kw)

    def tuned(self, name: str, budget: int) -> dict[str, Any]:
        """The grid point of ``name`` with the best validation score; cost: all points."""
        grid = GRIDS[name]
        points = [dict(zip(grid, v, strict=True)) for v in itertools.product(*grid.values())]
        trials = []
        for point in points:
            hp = {k: v for k, v in point.items() if k != "lr"}
            extra = {"unlearning_options": hp} if hp else {}
            run = self(method=name, schedule="paper", budget=budget // len(points),
                       lr=point["lr"], **self.setting.baseline, **extra)  # fmt: skip
            trials.append({**run, "point": point})
        best = max(trials, key=lambda r: r["chosen_score"])
        return {
            "model": best["model"],
            "example_gradients": sum(r["example_gradients"] for r in trials),
            "seconds": sum(r["seconds"] for r in trials),
            "steps": best["steps"],
            "chosen": best["point"],
            "grid": [{"point": r["point"], "validation_score": r["chosen_score"]} for r in trials],
        }


def edits(editor: Editor, budget: int | None) -> dict[str, dict]:
    """Every method's edited model, cost and seconds; the baselines share ``budget`` example
    gradients over their grid (None: what ``gif [highest_gradients]`` spent)."""
    gif = {f"gif [{crit}]": {"criterion": crit} for crit in CRITERIA}
    gif["gif [highest_gradients, newton]"] = {"schedule": "newton"}
    gif["gif [highest_gradients, paper]"] = {"schedule": "paper", **editor.setting.paper}
    runs = {k: editor.gif(**kw) for k, kw in gif.items() if k not in editor.setting.skip}
    if budget is None:
        budget = runs["gif [highest_gradients]"]["example_gradients"]
    for name in GRIDS:
        runs[name] = editor.tuned(name, budget)
    return runs


def forget_set(setting: Setting, splits, fraction: float, sources: int, seed: int):
    y = splits.train[1]
    if setting.name == "mnist-aug-sources":
        return source_forget_indices(splits.sources["train"], sources, seed)
    return random_forget_indices(len(y), fraction, seed)


def run_seed(setting: Setting, spec: str, seed: int, fraction: float, args, cache: dict) -> dict:
    splits = load_dataset(spec, seed=seed, flatten=setting.flatten)
    x, y = splits.train
    idx = forget_set(setting, splits, fraction, args.sources, seed)
    retain, forget = split_forget((x, y), idx)
    if seed not in cache:  # the original model is shared by the fractions of a seed
        cache.clear()
        cache[seed] = train(setting, splits, (x, y), seed, args.epochs)
    model = cache[seed]
    t = time.perf_counter()
    retrained = train(setting, splits, retain, seed, args.epochs)
    retrain_seconds = time.perf_counter() - t
    other = train(setting, splits, retain, seed + 1000, args.epochs)
    parts = (retain, forget, splits.test)
    validation = ForgetValidation(splits.validation, forget)
    retrain_cost = args.epochs * len(retain[1])
    editor = Editor(copy.deepcopy(model), retain, forget, validation, seed, setting)
    methods = {
        "original": {"model": model, "example_gradients": 0, "seconds": 0.0},
        "retrain (other seed)": {
            "model": other, "example_gradients": retrain_cost, "seconds": retrain_seconds,
        },
        **edits(editor, retrain_cost if args.budget == "retrain" else None),
    }  # fmt: skip
    reference = evaluate_model(retrained, retrained, parts, seed)
    out: dict[str, Any] = {"seed": seed, "num_forget": int(idx.numel()), "methods": {}}
    out["methods"]["retrain"] = {
        **reference, "gap": 0.0, "example_gradients": retrain_cost, "seconds": retrain_seconds,
    }  # fmt: skip
    for label, m in methods.items():
        metrics = evaluate_model(m["model"], retrained, parts, seed)
        metrics["gap"] = average_gap(metrics, reference)
        metrics["validation_score"] = validation(m["model"])
        out["methods"][label] = {**metrics, **{k: v for k, v in m.items() if k != "model"}}
    out["num_train"] = len(y)
    return out


def summarize(per_seed: list[dict]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for label in per_seed[0]["methods"]:
        row: dict[str, Any] = {}
        for key in (*COLUMNS, "example_gradients", "seconds"):
            vals = np.array([r["methods"][label][key] for r in per_seed], dtype=float)
            std = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
            row[key] = {"mean": float(vals.mean()), "std": std}
        chosen = [r["methods"][label].get("chosen") for r in per_seed]
        if chosen[0] is not None:
            row["chosen"] = chosen
        table[label] = row
    return table


def _point(p: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in p.items())


def markdown(result: dict) -> str:
    c = result["config"]
    budget = (
        "retraining's cost (epochs × retained examples)"
        if c["budget"] == "retrain"
        else "what gif [highest_gradients] spent on the same seed"
    )
    lines = [
        f"# {c['title']}",
        "",
        f"`{result['command']}`",
        "",
        f"{c['data']}, {c['model']} {c['model_kw']}, {c['epochs']} epochs; seeds {c['seeds']}; "
        "mean ± sample std. UA/RA/TA/MIA in %; gap = mean |Δ| of the four to retraining "
        "(points); KL = mean KL(p_retrain ‖ p) on the forget set; W₁ = distance of the "
        "forget-loss distributions; cost in example-gradient evaluations. **Baselines' budget: "
        f"{budget}, shared by all points of the hyper-parameter grid** (chosen on validation; "
        "the cost column counts every point).",
    ]
    if not result.get("complete", True):
        lines += ["", "**Partial run: not every seed has finished.**"]
    for frac, summary in result["summary"].items():
        lines += ["", f"## {result['forget'][frac]}", ""]
        lines += ["| method | UA | RA | TA | MIA | avg gap ↓ | KL ↓ | W₁ ↓ | cost | s |"]
        lines += ["|---|---|---|---|---|---|---|---|---|---|"]
        for label, row in summary.items():
            cells = [f"{row[k]['mean']:.2f} ± {row[k]['std']:.2f}" for k in COLUMNS[:5]]
            cells += [f"{row[k]['mean']:.3f}" for k in ("kl", "loss_w1")]
            cost = f"{row['example_gradients']['mean']:.3g}"
            lines.append(
                f"| {label} | {' | '.join(cells)} | {cost} | {row['seconds']['mean']:.1f} |"
            )
        lines += ["", "Chosen on validation (per seed):", ""]
        lines += [
            f"- {label}: " + "; ".join(_point(p) for p in row["chosen"])
            for label, row in summary.items()
            if "chosen" in row
        ]
    lines += ["", f"Total run time: {result['wall_time']:.0f} s.", ""]
    return "\n".join(lines)


def config(args, setting: Setting, spec: str) -> dict[str, Any]:
    return {
        "setting": setting.name,
        "title": setting.title,
        "data": spec,
        "model": setting.model,
        "model_kw": setting.model_kw,
        "epochs": args.epochs,
        "weight_decay": WEIGHT_DECAY,
        "forget": f"sources:{args.sources}" if setting.name == "mnist-aug-sources" else "random",
        "fractions": args.fractions,
        "seeds": args.seeds,
        "criteria": CRITERIA,
        "gif_options": setting.gif,
        "paper_options": setting.paper,
        "baseline_options": setting.baseline,
        "left_out": setting.skip,
        "grids": GRIDS,
        "budget": args.budget,
        "baseline_budget": (
            "retraining's: epochs x retained examples, shared by the grid points"
            if args.budget == "retrain"
            else "example gradients of gif [highest_gradients], same seed, shared by the grid"
        ),
        "validation": "ForgetValidation(validation split, forget set), loss_weight 0.1",
        "std": "sample standard deviation (ddof=1) over seeds",
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=list(SETTINGS), default="digits-mlp")
    ap.add_argument("--out", help="JSON output (default per setting, in benchmarks/results)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--size", type=int, default=10000, help="N of mnist-aug:N")
    ap.add_argument("--sources", type=int, default=50, help="source images forgotten")
    ap.add_argument("--epochs", type=int, help="training epochs (default per setting)")
    ap.add_argument(
        "--budget",
        choices=["retrain", "gif"],
        default="retrain",
        help="baselines' example gradients, grid included: retraining's (epochs × retained "
        "examples, default) or what gif [highest_gradients] spent",
    )
    ap.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs: a smoke run")
    ap.add_argument("--resume", action="store_true", help="reuse finished seeds of --out")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    setting = SETTINGS[args.setting]
    args.out = args.out or setting.out
    args.epochs = args.epochs or setting.epochs
    if setting.name == "mnist-aug-sources":
        args.fractions = [0.0]  # one forget set: the copies of --sources source images
    if args.quick:
        args.seeds, args.epochs = args.seeds[:2], 3
    return args


def main() -> None:
    args = parse_args()
    setting = SETTINGS[args.setting]
    spec = setting.data.format(size=args.size)
    claim(args.out, Path(args.out).with_suffix(".md"))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    result = {
        "benchmark": "forget_examples",
        "command": shlex.join(["python", "benchmarks/forget_examples.py", *sys.argv[1:]]),
        "config": config(args, setting, spec),
        "complete": False,
    }
    per_fraction: dict[str, list[dict]] = {}
    if args.resume and out.exists():
        old = json.loads(out.read_text())
        same = {k: v for k, v in result["config"].items() if k != "seeds"}
        if {k: v for k, v in old["config"].items() if k != "seeds"} == json.loads(json.dumps(same)):
            per_fraction = old["per_seed"]
            result["previous_wall_time"] = old["wall_time"]
    start, cache = time.perf_counter(), {}
    for seed, f in itertools.product(args.seeds, args.fractions):
        runs = per_fraction.setdefault(str(f), [])
        if any(r["seed"] == seed for r in runs):
            continue
        runs.append(run_seed(setting, spec, seed, f, args, cache))
        save(result, per_fraction, setting, args, time.perf_counter() - start)
    result["complete"] = True
    print(save(result, per_fraction, setting, args, time.perf_counter() - start))


def save(result, per_fraction, setting: Setting, args, wall: float) -> str:
    """Write the JSON and the markdown table of what has finished; return the JSON text."""
    result["forget"] = {
        f: (
            f"forget every copy of {args.sources} source images ({runs[0]['num_forget']} of "
            f"{runs[0]['num_train']} examples)"
            if setting.name == "mnist-aug-sources"
            else f"forget {float(f):.0%} ({runs[0]['num_forget']} examples)"
        )
        for f, runs in per_fraction.items()
    }
    result["summary"] = {f: summarize(runs) for f, runs in per_fraction.items()}
    result["per_seed"] = per_fraction
    result["versions"] = versions()
    result["wall_time"] = result.get("previous_wall_time", 0.0) + wall
    text = json.dumps(result, indent=2)
    out = Path(args.out)
    write_text(out, text + "\n")
    write_text(out.with_suffix(".md"), markdown(json.loads(text)))
    return text


if __name__ == "__main__":
    main()
