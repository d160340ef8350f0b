"""End-to-end class removal on the embedded CNN: GIF against retraining, at equal F1, versus n.

    python benchmarks/class_removal_cost.py [--sizes 500 1000 2000 3500] [--seeds 0 1 2]
        [--iters 4 8 16 32] [--hessian-sample 1000] [--eval-every 5] [--threads 1]
        [--out benchmarks/results/class_removal_cost.json] [--quick] [--quiet]

The setting is the demo's (:mod:`geninf.demo`): the small CNN at width 0.5 (20k parameters) on
the embedded MNIST sample ``mnist5k`` (70/15/15 split: 3,500 train, 750 validation, 750 test),
trained 10 epochs with Adam (batch 64, lr 1e-3, weight decay 1e-4), class 8 removed. For each
training-set size n (a seeded stratified sample of the training split; validation and test are
always the whole splits) and seed:

1. train the original model on the n examples (seeded);
2. retrain from scratch on the retained examples with the same recipe and seed. Training time is
   the time of the optimizer steps only: every ``--eval-every`` steps the loop stops the clock and
   records the test F1 (the F1 of method.md §6: self accuracy on the removed training examples,
   accuracy on the test examples of the other classes) and the validation F1;
3. GIF with :func:`geninf.edit.remove` exactly as the demo calls it: Highest-k gradients on 5% of
   each layer, LSMR capped at ``max_iter`` iterations, damping 0.01, the ``paper`` schedule
   (γ ∈ {0.05, 0.1, 0.2}, k ≤ 12, chosen on the validation F1), batch 250; for every
   ``max_iter`` in ``--iters`` and two Hessian samples: a fixed-size stratified subsample of the
   retained examples (``--hessian-sample``, 1,000 like the demo) and the whole retained set.
   The edit API has no Hessian-subsample option: like the demo, the subsample is passed as
   ``retain_data`` (with the ``paper`` schedule only the direction matters, so the removal scale
   r/(m − r) computed from it is irrelevant). Its wall time is split into selection, the gradient
   of the forget set, the solver (Hessian set-up included: ``reverse_cached`` builds each batch's
   graph on the first product) and the step-size search, by timing wrappers around the library
   functions the edit calls.

Comparisons at equal F1, all measured in the same run:

- ``retrain-to-match``: the training time (and epochs, example-gradients) at the first checkpoint
  where retraining reaches the test F1 of the default GIF edit (demo settings: subsample,
  ``max_iter`` 8). It picks its stopping point on the test set, so it is the most favourable
  case for retraining; speed-up = t(retrain-to-match) / t(GIF).
- ``GIF-to-match``: the smallest ``max_iter`` of the sweep at which GIF's test F1 is within 0.01
  of full retraining's (null when none is); speed-up = t(full retrain) / t(that GIF edit).
- plus the plain ratio t(full retrain) / t(default GIF).

Analytic model (unit: one example's loss gradient, as in :mod:`geninf.edit.record`): retraining
costs E·(n − r) (E epochs, r removed examples); GIF costs r (selection by gradients) + r (forget
gradient) + 2·P·N_H (P Hessian-vector products over N_H examples; N_H = n − r with the whole
retained set, min(S, n − r) with a subsample of size S) plus a step search of forward passes over
the validation split that does not depend on n. Seconds per unit are fitted per stage on the
measured points (least squares) and the fitted lines are drawn over the points.

Writes ``--out`` (JSON: config, seeds, versions, raw numbers per seed and size, summaries,
ratios, the model's coefficients), and next to it ``.png`` (cost and speed-up against n, log
scale) and ``.md`` (tables). One torch thread unless ``--threads`` says otherwise. The defaults
took 12 minutes on the project's 2 shared cores; ``--quick`` (sizes 500 and 1000, seed 0,
max_iter 4 and 8) about half a minute. ``--replot`` redraws the plot and tables from the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import emit, versions
from _outputs import claim, save_figure, write_text
from torch import Tensor, nn
from tqdm.auto import tqdm

from geninf.bench.datasets import Splits, load_dataset, stratified_sample
from geninf.bench.experiments.class_removal import forget_split, removal_metrics
from geninf.bench.metrics import class_removal_metrics
from geninf.bench.models import num_parameters
from geninf.bench.training import train_model
from geninf.demo import DATA, MODEL, WIDTH, demo_model
from geninf.edit import ClassRemovalValidation, remove
from geninf.errors import ConvergenceWarning
from geninf.objective import SupervisedObjective

# by module path: ``geninf.influence`` the attribute is the function, not the subpackage
edit_api = importlib.import_module("geninf.edit.api")
edit_methods = importlib.import_module("geninf.edit.methods")
estimators = importlib.import_module("geninf.influence.estimators")

EPOCHS, FORGET = 10, 8  # the demo's data and CNN (geninf.demo)
TRAIN: dict[str, float | int] = {"batch_size": 64, "lr": 1e-3, "weight_decay": 1e-4}
EDIT: dict[str, Any] = {
    "method": "gif",
    "criterion": "highest_gradients",
    "ratio": 0.05,
    "schedule": "paper",
    "solver": "lsmr",
    "damping": 0.01,
    "gammas": (0.05, 0.1, 0.2),
    "max_steps": 12,
    "batch_size": 250,
}
DEFAULT_ITER = 8  # the demo's LSMR cap
F1_TOLERANCE = 0.01
TARGET_SPEEDUP = 10.0
STAGES = ("selection", "forget_gradient", "solver", "step_search")
HESSIAN_MODES = ("sample", "full")


# ------------------------------------------------------------------------------------ data
def subsample(splits: Splits, n: int, seed: int) -> Splits:
    """``splits`` with its training split cut to a seeded stratified sample of ``n`` examples."""
    x, y = splits.train
    gen = torch.Generator().manual_seed(10_000 + seed)
    idx = stratified_sample(y, n, generator=gen)
    return dataclasses.replace(splits, train=(x[idx], y[idx]))


# ------------------------------------------------------------------------------ retraining
def retrain_curve(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    *,
    epochs: int,
    seed: int,
    eval_every: int,
    evaluate: Callable[[nn.Module], dict[str, float]],
) -> dict[str, Any]:
    """Train ``model`` in place exactly as :func:`geninf.bench.training.train_model` does (same
    generator use, same skipped singleton batch, Adam with weight decay), stopping the clock
    every ``eval_every`` steps (and after each epoch) to record ``evaluate(model)``.

    Returns:
        ``checkpoints``: one dict per evaluation with ``step``, ``epoch`` (fractional),
        ``examples`` (example-gradients so far), ``seconds`` (training time so far) and the
        metrics; ``seconds`` and ``examples`` of the whole run; ``eval_seconds``.
    """
    inputs, targets = data
    n = int(targets.shape[0])
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(TRAIN["lr"]), weight_decay=float(TRAIN["weight_decay"])
    )
    order = torch.Generator().manual_seed(int(seed))
    bs = int(TRAIN["batch_size"])
    trained, seen, step, eval_seconds = 0.0, 0, 0, 0.0
    checkpoints: list[dict[str, Any]] = []

    def checkpoint(epoch: float) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        model.eval()
        row = {"step": step, "epoch": epoch, "examples": seen, "seconds": trained}
        row.update(evaluate(model))
        checkpoints.append(row)
        model.train()
        eval_seconds += time.perf_counter() - t

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        checkpoint(0.0)
        for epoch in range(int(epochs)):
            model.train()
            perm = torch.randperm(n, generator=order)
            t = time.perf_counter()
            for lo in range(0, n, bs):
                idx = perm[lo : lo + bs]
                if idx.numel() == 1 and n > 1:
                    continue
                loss = F.cross_entropy(model(inputs[idx]), targets[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += idx.numel()
                step += 1
                if step % eval_every == 0:
                    trained += time.perf_counter() - t
                    checkpoint(epoch + min(lo + bs, n) / n)
                    t = time.perf_counter()
            trained += time.perf_counter() - t
            if step % eval_every != 0:
                checkpoint(float(epoch + 1))
    model.eval()
    return {
        "checkpoints": checkpoints,
        "seconds": trained,
        "examples": seen,
        "steps": step,
        "eval_seconds": eval_seconds,
    }


def first_reaching(checkpoints: list[dict[str, Any]], f1: float) -> dict[str, Any] | None:
    """The first checkpoint whose test F1 is at least ``f1`` (None if none is)."""
    for row in checkpoints:
        if row["f1"] >= f1:
            return row
    return None


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """True when two models hold bit-identical state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------- GIF
@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Time the library functions an edit calls (selection, forget gradient, the whole
    influence solve, the step search) by wrapping them for the duration of the block."""
    times: dict[str, float] = {}
    targets = [
        (edit_methods, "select_with_summary", "selection"),
        (estimators, "_right_hand_side", "forget_gradient"),
        (edit_methods, "influence", "influence"),
        (edit_api, "paper_search", "step_search"),
    ]
    saved = []
    for module, name, label in targets:
        original = getattr(module, name, None)
        if original is None:  # the library changed: that stage is reported as None
            continue

        def wrapper(*args: Any, _f: Any = original, _k: str = label, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                times[_k] = times.get(_k, 0.0) + time.perf_counter() - t

        saved.append((module, name, original))
        setattr(module, name, wrapper)
    try:
        yield times
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def gif_edit(
    original: nn.Module,
    hessian_data: tuple[Tensor, Tensor],
    forget: tuple[Tensor, Tensor],
    validation: ClassRemovalValidation,
    *,
    seed: int,
    max_iter: int,
) -> tuple[nn.Module, dict[str, Any]]:
    """One GIF removal as the demo runs it; returns the edited model and its cost breakdown."""
    objective = SupervisedObjective(weight_decay=float(TRAIN["weight_decay"]))
    with stage_timers() as times, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # LSMR stops at max_iter by design
        res = remove(
            original,
            objective,
            hessian_data,
            forget,
            validation=validation,
            seed=seed,
            solver_options={"max_iter": int(max_iter)},
            **EDIT,
        )
    rec = res.record
    solver = rec.solver or {}
    solver_seconds = float(solver.get("wall_time") or 0.0)
    stages: dict[str, float | None] = {
        "selection": times.get("selection"),
        "forget_gradient": times.get("forget_gradient"),
        "solver": solver_seconds,
        "step_search": times.get("step_search"),
    }
    if "influence" in times and stages["forget_gradient"] is not None:
        # influence() = forget gradient + operator construction + solve; the small rest is
        # bookkeeping, counted with the solver
        stages["solver"] = times["influence"] - float(stages["forget_gradient"])
    known = sum(v for v in stages.values() if v is not None)
    c = rec.compute
    return res.model, {
        "max_iter": int(max_iter),
        "hessian_examples": int(hessian_data[1].shape[0]),
        "seconds": rec.wall_time,
        "stages": {**stages, "other": rec.wall_time - known},
        "products": solver.get("products"),
        "iterations": solver.get("iterations"),
        "residual": solver.get("residual"),
        "example_gradients": c.example_gradients,
        "hvp_example_gradients": c.hvp_example_gradients,
        "gradient_examples": c.gradient_examples,
        "validation_evaluations": c.validation_evaluations,
        "forward_examples": c.validation_evaluations * len(validation.targets),
        "selected": (rec.subset or {}).get("selected"),
        "gamma": rec.gamma,
        "steps": rec.steps,
        "validation_f1": rec.validation_score,
    }


def _metrics(model: nn.Module, splits: Splits, forget: Any, reference: nn.Module) -> dict:
    """Test-split accuracies, F1 and agreement with ``reference`` (method.md §6)."""
    m = removal_metrics(model, splits, FORGET, forget, reference)
    keys = ("test_acc", "self_acc", "self_test_acc", "f1", "f1_test", "agreement")
    return {k: m[k] for k in keys if k in m}


# -------------------------------------------------------------------------------- one run
def one_run(
    base: Splits,
    n: int,
    seed: int,
    args: argparse.Namespace,
    bar: Any,
    check_recipe: bool,
) -> dict[str, Any]:
    """Everything measured for one training-set size and seed."""
    splits = subsample(base, n, seed)
    retain, forget = forget_split(splits, FORGET)
    n_keep, r = int(retain[1].shape[0]), int(forget[1].shape[0])
    validation = ClassRemovalValidation(splits.validation, FORGET)

    bar.set_postfix_str(f"n={n} seed={seed}: original")
    t = time.perf_counter()
    original = train_model(
        demo_model(splits, seed), splits.train, epochs=EPOCHS, seed=seed, progress=False, **TRAIN
    ).model.eval()
    t_original = time.perf_counter() - t

    bar.set_postfix_str(f"n={n} seed={seed}: retrain")

    def evaluate(model: nn.Module) -> dict[str, float]:
        m = class_removal_metrics(model, splits, FORGET, forget)
        out = {k: m[k] for k in ("test_acc", "self_acc", "self_test_acc", "f1", "f1_test")}
        out["validation_f1"] = validation(model)
        return out

    retrained = demo_model(splits, seed)
    curve = retrain_curve(
        retrained, retain, epochs=EPOCHS, seed=seed, eval_every=args.eval_every, evaluate=evaluate
    )
    retrained.eval()
    recipe_ok = None
    if check_recipe:
        reference = train_model(
            demo_model(splits, seed), retain, epochs=EPOCHS, seed=seed, progress=False, **TRAIN
        ).model
        recipe_ok = same_weights(reference, retrained)
    final = _metrics(retrained, splits, forget, retrained)
    bar.update(1)

    gen = torch.Generator().manual_seed(seed)
    sample_idx = stratified_sample(retain[1], args.hessian_sample, generator=gen)
    hessian = {
        "sample": (retain[0][sample_idx], retain[1][sample_idx]),
        "full": retain,
    }
    gif: dict[str, dict[str, Any]] = {mode: {} for mode in HESSIAN_MODES}
    for mode in HESSIAN_MODES:
        for k in args.iters:
            if mode == "full" and n_keep <= args.hessian_sample:
                gif[mode][str(k)] = {**gif["sample"][str(k)], "same_as": "sample"}
                bar.update(1)
                continue
            bar.set_postfix_str(f"n={n} seed={seed}: GIF {mode} max_iter={k}")
            edited, cost = gif_edit(
                original, hessian[mode], forget, validation, seed=seed, max_iter=k
            )
            cost.update(_metrics(edited, splits, forget, retrained))
            gif[mode][str(k)] = cost
            bar.update(1)

    default = gif["sample"][str(DEFAULT_ITER)] if str(DEFAULT_ITER) in gif["sample"] else None
    comparisons: dict[str, Any] = {}
    for mode in HESSIAN_MODES:
        ref = gif[mode].get(str(DEFAULT_ITER)) or gif[mode][str(args.iters[0])]
        match = first_reaching(curve["checkpoints"], ref["f1"])
        within = [int(k) for k, row in gif[mode].items() if row["f1"] >= final["f1"] - F1_TOLERANCE]
        k_match = min(within) if within else None
        comparisons[mode] = {
            "gif_max_iter": ref["max_iter"],
            "gif_seconds": ref["seconds"],
            "gif_f1": ref["f1"],
            "gif_example_gradients": ref["example_gradients"],
            "retrain_to_match": None
            if match is None
            else {
                "seconds": match["seconds"],
                "epochs": match["epoch"],
                "steps": match["step"],
                "example_gradients": match["examples"],
                "f1": match["f1"],
            },
            "speedup_at_gif_f1": None if match is None else match["seconds"] / ref["seconds"],
            "compute_ratio_at_gif_f1": None
            if match is None
            else match["examples"] / ref["example_gradients"],
            "speedup_vs_full_retrain": curve["seconds"] / ref["seconds"],
            "compute_ratio_vs_full_retrain": curve["examples"] / ref["example_gradients"],
            "gif_max_iter_within_0.01_of_retrain": k_match,
            "speedup_at_retrain_f1": None
            if k_match is None
            else curve["seconds"] / gif[mode][str(k_match)]["seconds"],
            "best_gif_f1": max(row["f1"] for row in gif[mode].values()),
            "f1_gap_best_gif_to_retrain": final["f1"]
            - max(row["f1"] for row in gif[mode].values()),
        }
    return {
        "n": n,
        "seed": seed,
        "retained": n_keep,
        "removed": r,
        "original": {
            "seconds": t_original,
            "example_gradients": EPOCHS * n,
            **_metrics(original, splits, forget, retrained),
        },
        "retrain": {
            "seconds": curve["seconds"],
            "steps": curve["steps"],
            "example_gradients": curve["examples"],
            "eval_seconds_excluded": curve["eval_seconds"],
            "matches_train_model": recipe_ok,
            **final,
            "curve": curve["checkpoints"],
        },
        "gif": gif,
        "default_gif": default,
        "comparisons": comparisons,
    }


# ------------------------------------------------------------------------------- summaries
def mean_std(values: list[float | None]) -> dict[str, Any]:
    """Mean, sample std (ddof 1; 0 for one value) and count of the non-None values."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "count": 0, "of": len(values)}
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {"mean": statistics.fmean(xs), "std": sd, "count": len(xs), "of": len(values)}


def summarize(runs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Per size: mean ± std over seeds of the headline numbers."""
    out: dict[str, Any] = {}
    for n in sizes:
        rs = [r for r in runs if r["n"] == n]
        row: dict[str, Any] = {
            "retained": mean_std([r["retained"] for r in rs]),
            "removed": mean_std([r["removed"] for r in rs]),
            "retrain_seconds": mean_std([r["retrain"]["seconds"] for r in rs]),
            "retrain_f1": mean_std([r["retrain"]["f1"] for r in rs]),
            "retrain_test_acc": mean_std([r["retrain"]["test_acc"] for r in rs]),
            "original_f1": mean_std([r["original"]["f1"] for r in rs]),
        }
        for mode in HESSIAN_MODES:
            cs = [r["comparisons"][mode] for r in rs]
            k = cs[0]["gif_max_iter"]
            gifs = [r["gif"][mode][str(k)] for r in rs]
            row[mode] = {
                "gif_max_iter": k,
                "gif_seconds": mean_std([g["seconds"] for g in gifs]),
                "gif_f1": mean_std([g["f1"] for g in gifs]),
                "gif_test_acc": mean_std([g["test_acc"] for g in gifs]),
                "gif_self_acc": mean_std([g["self_acc"] for g in gifs]),
                "gif_example_gradients": mean_std([g["example_gradients"] for g in gifs]),
                "stages": {
                    s: mean_std([g["stages"].get(s) for g in gifs]) for s in (*STAGES, "other")
                },
                "retrain_to_match_seconds": mean_std(
                    [c["retrain_to_match"] and c["retrain_to_match"]["seconds"] for c in cs]
                ),
                "retrain_to_match_epochs": mean_std(
                    [c["retrain_to_match"] and c["retrain_to_match"]["epochs"] for c in cs]
                ),
                "speedup_at_gif_f1": mean_std([c["speedup_at_gif_f1"] for c in cs]),
                "compute_ratio_at_gif_f1": mean_std([c["compute_ratio_at_gif_f1"] for c in cs]),
                "speedup_vs_full_retrain": mean_std([c["speedup_vs_full_retrain"] for c in cs]),
                "compute_ratio_vs_full_retrain": mean_std(
                    [c["compute_ratio_vs_full_retrain"] for c in cs]
                ),
                "speedup_at_retrain_f1": mean_std([c["speedup_at_retrain_f1"] for c in cs]),
                "gif_max_iter_within_0.01_of_retrain": [
                    c["gif_max_iter_within_0.01_of_retrain"] for c in cs
                ],
                "best_gif_f1": mean_std([c["best_gif_f1"] for c in cs]),
                "f1_by_max_iter": {
                    key: mean_std([r["gif"][mode][key]["f1"] for r in rs])
                    for key in rs[0]["gif"][mode]
                },
                "seconds_by_max_iter": {
                    key: mean_std([r["gif"][mode][key]["seconds"] for r in rs])
                    for key in rs[0]["gif"][mode]
                },
            }
        out[str(n)] = row
    return out


# ------------------------------------------------------------------------- analytic model
def _fit(xs: list[float], ys: list[float], intercept: bool = True) -> tuple[float, float]:
    """Least-squares ``y ≈ a + b·x`` (``a`` = 0 without intercept); returns ``(a, b)``."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if intercept and len(set(xs)) > 1:
        design = np.stack([np.ones_like(x), x], axis=1)
        a, b = np.linalg.lstsq(design, y, rcond=None)[0]
        if a < 0:  # a negative fixed cost is not physical: refit through the origin
            return 0.0, float((x @ y) / (x @ x))
        return float(a), float(b)
    return 0.0, float((x @ y) / (x @ x))


def analytic_model(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Fit seconds per example-gradient unit, stage by stage, and give the cost formulas."""
    p = statistics.fmean(r["removed"] / r["n"] for r in runs)
    gif_rows = [
        g
        for r in runs
        for mode in HESSIAN_MODES
        for g in r["gif"][mode].values()
        if "same_as" not in g
    ]
    pairs = [(r, g) for r in runs for mode in HESSIAN_MODES for g in r["gif"][mode].values()]
    pairs = [(r, g) for r, g in pairs if "same_as" not in g]
    sel = _fit([r["removed"] for r, _ in pairs], [g["stages"]["selection"] or 0 for _, g in pairs])
    grad = _fit(
        [r["removed"] for r, _ in pairs], [g["stages"]["forget_gradient"] or 0 for _, g in pairs]
    )
    hvp_units = [2 * (g["products"] or 0) * g["hessian_examples"] for g in gif_rows]
    solver = _fit(hvp_units, [g["stages"]["solver"] or 0 for g in gif_rows])
    search = statistics.fmean((g["stages"]["step_search"] or 0) for g in gif_rows)
    other = statistics.fmean(max(g["stages"]["other"], 0.0) for g in gif_rows)
    products = _fit([g["max_iter"] for g in gif_rows], [g["products"] or 0 for g in gif_rows])
    train = _fit(
        [r["retrain"]["example_gradients"] for r in runs],
        [r["retrain"]["seconds"] for r in runs],
        intercept=False,
    )
    # examples retraining needs to reach the default GIF's F1: constant or ∝ n?
    match = [
        (r["n"], r["comparisons"]["sample"]["retrain_to_match"]["example_gradients"])
        for r in runs
        if r["comparisons"]["sample"]["retrain_to_match"]
    ]
    # a + b·(1−p)·n: a = a fixed number of steps, b = a fixed number of epochs
    match_fit = _fit([(1 - p) * n for n, _ in match], [m for _, m in match]) if match else None
    search_forward = statistics.fmean(g["forward_examples"] for g in gif_rows)
    return {
        "unit": "one example's loss gradient (forward + backward); an HVP over N examples = 2N",
        "removed_fraction_p": p,
        "epochs": EPOCHS,
        "hessian_sample": args.hessian_sample,
        "formulas": {
            "retrain_full": "E·(1−p)·n",
            "retrain_to_match": "examples retraining needs to reach GIF's F1 (fitted both as a "
            "constant and as E*·(1−p)·n)",
            "gif": "p·n (selection) + p·n (forget gradient) + 2·P(max_iter)·N_H + "
            "G·K·V forward passes (step search, independent of n)",
            "N_H": "(1−p)·n with the whole retained set; min(S, (1−p)·n) with a subsample S",
            "P": "products of LSMR ≈ a + b·max_iter",
        },
        "coefficients": {
            "seconds_per_training_example_gradient": train[1],
            "selection_seconds": {"fixed": sel[0], "per_removed_example": sel[1]},
            "forget_gradient_seconds": {"fixed": grad[0], "per_removed_example": grad[1]},
            "solver_seconds": {"fixed": solver[0], "per_hvp_example_gradient": solver[1]},
            "step_search_seconds_constant": search,
            "step_search_forward_examples": search_forward,
            "other_seconds_constant": other,
            "products_vs_max_iter": {"a": products[0], "b": products[1]},
            "retrain_to_match_examples": None
            if match_fit is None
            else {"fixed": match_fit[0], "epochs": match_fit[1]},
        },
    }


def predict(model: dict[str, Any], n: float, mode: str, max_iter: int) -> dict[str, float]:
    """The analytic model's seconds and example-gradients at size ``n``."""
    c, p = model["coefficients"], model["removed_fraction_p"]
    keep, r = (1 - p) * n, p * n
    nh = keep if mode == "full" else min(float(model["hessian_sample"]), keep)
    prods = c["products_vs_max_iter"]["a"] + c["products_vs_max_iter"]["b"] * max_iter
    hvp_units = 2 * prods * nh
    gif_s = (
        c["selection_seconds"]["fixed"]
        + c["selection_seconds"]["per_removed_example"] * r
        + c["forget_gradient_seconds"]["fixed"]
        + c["forget_gradient_seconds"]["per_removed_example"] * r
        + c["solver_seconds"]["fixed"]
        + c["solver_seconds"]["per_hvp_example_gradient"] * hvp_units
        + c["step_search_seconds_constant"]
        + c["other_seconds_constant"]
    )
    tau = c["seconds_per_training_example_gradient"]
    full_units = model["epochs"] * keep
    fit = c["retrain_to_match_examples"] or {"fixed": 0.0, "epochs": 0.0}
    match_units = fit["fixed"] + fit["epochs"] * keep
    return {
        "gif_seconds": gif_s,
        "gif_example_gradients": 2 * r + hvp_units,
        "retrain_full_seconds": tau * full_units,
        "retrain_full_example_gradients": full_units,
        "retrain_to_match_seconds": tau * match_units,
        "retrain_to_match_example_gradients": match_units,
    }


def crossover(model: dict[str, Any], mode: str, key: str, target: float) -> float | None:
    """Smallest n (grid up to 10⁸) where the predicted ``key`` seconds ÷ GIF seconds ≥ target."""
    for n in np.logspace(2, 8, 601):
        pr = predict(model, float(n), mode, DEFAULT_ITER)
        if pr[key] / pr["gif_seconds"] >= target:
            return float(n)
    return None


# ----------------------------------------------------------------------------- outputs
def plot(result: dict[str, Any], path: Path) -> None:
    """Seconds against n (left) and speed-ups against n (right), measured and modelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, model = result["runs"], result["analytic_model"]
    sizes = result["config"]["sizes"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    grid = np.logspace(math.log10(min(sizes) * 0.8), math.log10(60_000), 100)

    def points(get: Callable[[dict[str, Any]], float | None]) -> tuple[list, list]:
        xs, ys = [], []
        for r in runs:
            v = get(r)
            if v is not None:
                xs.append(r["n"])
                ys.append(v)
        return xs, ys

    series = [
        ("retrain (10 epochs)", "C0", lambda r: r["retrain"]["seconds"], "retrain_full_seconds"),
        (
            "retrain to GIF's F1",
            "C1",
            lambda r: (r["comparisons"]["sample"]["retrain_to_match"] or {}).get("seconds"),
            "retrain_to_match_seconds",
        ),
        (
            f"GIF, Hessian on {model['hessian_sample']} retained",
            "C2",
            lambda r: r["comparisons"]["sample"]["gif_seconds"],
            "gif_seconds",
        ),
        (
            "GIF, Hessian on all retained",
            "C3",
            lambda r: r["comparisons"]["full"]["gif_seconds"],
            "gif_seconds",
        ),
    ]
    for i, (label, color, get, key) in enumerate(series):
        xs, ys = points(get)
        ax.scatter(xs, ys, color=color, s=16, label=f"{label} (measured)")
        mode = "full" if i == 3 else "sample"
        ax.plot(grid, [predict(model, n, mode, DEFAULT_ITER)[key] for n in grid], color=color,
                ls="--", lw=1)  # fmt: skip
    ax.axvline(max(sizes), color="gray", lw=0.6, ls=":", label="largest measured n")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size n")
    ax.set_ylabel("seconds (1 thread)")
    ax.set_title(
        "Class removal cost: points measured, dashed = fitted model (extrapolated right of the "
        "dotted line)",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    for mode, color in (("sample", "C2"), ("full", "C3")):
        xs, ys = points(lambda r, m=mode: r["comparisons"][m]["speedup_vs_full_retrain"])
        bx.scatter(xs, ys, color=color, s=16, marker="o",
                   label=f"full retrain ÷ GIF ({mode} Hessian)")  # fmt: skip
        bx.plot(
            grid,
            [
                predict(model, n, mode, DEFAULT_ITER)["retrain_full_seconds"]
                / predict(model, n, mode, DEFAULT_ITER)["gif_seconds"]
                for n in grid
            ],
            color=color,
            ls="--",
            lw=1,
        )
    xs, ys = points(lambda r: r["comparisons"]["sample"]["speedup_at_gif_f1"])
    bx.scatter(xs, ys, color="C1", s=16, marker="s", label="retrain-to-GIF's-F1 ÷ GIF (sample)")
    bx.plot(
        grid,
        [
            predict(model, n, "sample", DEFAULT_ITER)["retrain_to_match_seconds"]
            / predict(model, n, "sample", DEFAULT_ITER)["gif_seconds"]
            for n in grid
        ],
        color="C1",
        ls="--",
        lw=1,
    )
    bx.axhline(TARGET_SPEEDUP, color="red", lw=0.8, label="target 10×")
    bx.axhline(1.0, color="gray", lw=0.6)
    bx.axvline(max(sizes), color="gray", lw=0.6, ls=":")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xlabel("training-set size n")
    bx.set_ylabel("time(retrain) ÷ time(GIF)")
    bx.set_title("Speed-up of GIF over retraining (>1: GIF faster)", fontsize=9)
    bx.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _fmt(ms: dict[str, Any], digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± std`` of a :func:`mean_std` summary, with the count when seeds are missing."""
    if ms["mean"] is None:
        return "—"
    text = f"{ms['mean'] * scale:.{digits}f}"
    if ms["count"] > 1:
        text += f" ± {ms['std'] * scale:.{digits}f}"
    if ms["count"] < ms["of"]:
        text += f" ({ms['count']}/{ms['of']})"
    return text


def _m(ms: dict[str, Any] | None) -> float | None:
    """The mean of a :func:`mean_std` summary (None when it has no value)."""
    return None if not ms or ms.get("mean") is None else float(ms["mean"])


def verdict(result: dict[str, Any]) -> list[str]:
    """Statements about the 10× target computed from the summary (default GIF, subsample)."""
    cfg, summ = result["config"], result["summary"]
    n = max(cfg["sizes"])
    s = summ[str(n)]
    m = s["sample"]
    st = {k: _m(v) or 0.0 for k, v in m["stages"].items()}
    t_gif, t_re = _m(m["gif_seconds"]) or float("nan"), _m(s["retrain_seconds"]) or float("nan")
    f_gif, f_re = _m(m["gif_f1"]) or float("nan"), _m(s["retrain_f1"]) or float("nan")
    out = [
        f"At n = {n} (largest), default GIF (Hessian on {cfg['hessian_sample']} retained, "
        f"max_iter {DEFAULT_ITER}): {t_gif:.2f} s, test F1 {f_gif:.4f}; full retraining "
        f"{t_re:.2f} s, F1 {f_re:.4f} (gap {f_re - f_gif:+.4f}); best GIF F1 over the sweep "
        f"{_m(m['best_gif_f1']) or float('nan'):.4f}."
    ]
    for key, text in (
        ("speedup_at_gif_f1", "retraining stopped at GIF's F1 ÷ GIF"),
        ("speedup_at_retrain_f1", "full retraining ÷ GIF at F1 within 0.01 of retraining"),
        ("speedup_vs_full_retrain", "full retraining ÷ default GIF (unequal F1)"),
    ):
        per_n = []
        for size in cfg["sizes"]:
            ms = summ[str(size)]["sample"][key]
            v = _m(ms)
            seeds = f" ({ms['count']}/{ms['of']} seeds)" if ms["count"] < ms["of"] else ""
            none = (
                "— (retraining never reached GIF's F1)"
                if key == "speedup_at_gif_f1"
                else "— (no max_iter within 0.01)"
            )
            per_n.append(f"n={size}: " + (none if v is None else f"{v:.3g}×{seeds}"))
        v = _m(m[key])
        miss = "" if v is None else (
            f" — target {TARGET_SPEEDUP:g}× met" if v >= TARGET_SPEEDUP
            else f" — target {TARGET_SPEEDUP:g}× missed by a factor {TARGET_SPEEDUP / v:.0f}"
        )  # fmt: skip
        out.append(f"{text}: {'; '.join(per_n)}{miss} (at n = {n}).")
    shares = ", ".join(f"{k} {100 * v / t_gif:.1f}%" for k, v in st.items() if t_gif > 0)
    epoch = t_re / EPOCHS if t_re == t_re else float("nan")
    forwards = result["analytic_model"]["coefficients"]["step_search_forward_examples"]
    out.append(
        f"Where GIF's time goes at n = {n}: {shares}. The step search alone "
        f"({st['step_search']:.2f} s: {forwards:,.0f} "
        f"validation forward passes) costs as much as {st['step_search'] / epoch:.1f} epochs of "
        f"retraining; the solver ({st['solver']:.2f} s) {st['solver'] / epoch:.1f} epochs."
    )  # fmt: skip
    floor = st["selection"] + st["forget_gradient"] + max(st["other"], 0.0)
    match = _m(m["retrain_to_match_seconds"])
    if match is not None and floor > 0:
        out.append(
            f"Even with a free solver and a free step search GIF would take {floor:.2f} s "
            f"(selection + forget gradient): at most {match / floor:.0f}× faster than retraining "
            f"to its F1 ({match:.2f} s) and {t_re / floor:.0f}× faster than full retraining."
        )
    cross = result.get("crossovers", {})
    if "full_retrain_sample" in cross:
        c = cross["full_retrain_sample"]["n"]
        out.append(
            "Fitted model: full retraining ÷ GIF reaches 10× at n ≈ "
            + ("beyond 10⁸" if c is None else f"{c:,.0f}")
            + " (GIF's cost is flat in n with a fixed Hessian sample; retraining's grows as "
            "E·(1−p)·n); retraining to GIF's F1 needs " + _match_text(result) + "."
        )
    return out


def _match_text(result: dict[str, Any]) -> str:
    """The fitted cost of retraining to GIF's F1 and where it would reach 10×, as text."""
    fit = result["analytic_model"]["coefficients"].get("retrain_to_match_examples")
    if not fit:
        return "no fit (retraining never reached GIF's F1)"
    c = result["crossovers"].get("retrain_to_match_sample", {}).get("n")
    at = "beyond 10⁸" if c is None else f"n ≈ {c:,.0f}"
    return (
        f"{fit['fixed']:,.0f} + {fit['epochs']:.2f}·(1−p)·n example-gradients, so that ratio "
        f"reaches 10× at {at}"
    )


def markdown(result: dict[str, Any]) -> str:
    """The tables of ``class_removal_cost.md``."""
    cfg, summ, model = result["config"], result["summary"], result["analytic_model"]
    seeds = cfg["seeds"]
    lines = [
        "# Class removal on the embedded CNN: GIF against retraining",
        "",
        f"Small CNN width {WIDTH} ({result['parameters']:,} parameters) on {DATA}, class "
        f"{FORGET} removed, {EPOCHS} epochs of Adam; GIF as in the demo (5% Highest-k "
        f"gradients, LSMR, damping {EDIT['damping']}, paper schedule on validation F1). "
        f"Mean ± std over seeds {seeds}; {cfg['threads']} torch thread(s); command "
        f"`{result['command']}`. F1 is the test F1 of method.md §6. Default GIF = LSMR "
        f"max_iter {DEFAULT_ITER}.",
        "",
        "## Verdict on the target (≥ 10× faster than retraining at F1 within 0.01)",
        "",
        *[f"- {line}" for line in verdict(result)],
        "",
        "## At equal F1",
        "",
        "Speed-ups are time(retraining) ÷ time(GIF), > 1 when GIF is faster. *At GIF's F1*: "
        "retraining stopped at the first checkpoint reaching the default GIF's test F1. *At "
        "retrain's F1*: full retraining against the GIF edit with the smallest max_iter whose F1 "
        "is within 0.01 of it (per seed; none: no max_iter of the sweep gets there).",
        "",
        "| n (Hessian) | retained | retrain 10 ep (s) | retrain F1 | GIF (s) | GIF F1 | retrain "
        "to GIF's F1 (s) | (epochs) | speed-up at GIF's F1 | max_iter within 0.01 of retrain "
        "F1 | speed-up at retrain's F1 | full retrain ÷ default GIF |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shared = [n for n in cfg["sizes"] if summ[str(n)]["full"]["gif_seconds"]["mean"] is not None
              and _m(summ[str(n)]["retained"]) is not None
              and (_m(summ[str(n)]["retained"]) or 0) <= cfg["hessian_sample"]]  # fmt: skip
    for mode, title in (("sample", f"Hessian on {cfg['hessian_sample']}"), ("full", "all")):
        for n in cfg["sizes"]:
            s = summ[str(n)]
            m = s[mode]
            within = m["gif_max_iter_within_0.01_of_retrain"]
            lines.append(
                f"| {n} ({title}) | {_fmt(s['retained'], 0)} | {_fmt(s['retrain_seconds'])} | "
                f"{_fmt(s['retrain_f1'], 4)} | {_fmt(m['gif_seconds'])} | "
                f"{_fmt(m['gif_f1'], 4)} | {_fmt(m['retrain_to_match_seconds'])} | "
                f"{_fmt(m['retrain_to_match_epochs'], 2)} | {_fmt(m['speedup_at_gif_f1'], 3)}× | "
                f"{', '.join('none' if w is None else str(w) for w in within)} | "
                f"{_fmt(m['speedup_at_retrain_f1'], 3)}× | "
                f"{_fmt(m['speedup_vs_full_retrain'], 3)}× |"
            )
    if shared:
        lines += [
            "",
            f"At n = {', '.join(map(str, shared))} the retained set is not larger than "
            f"{cfg['hessian_sample']}: both Hessians are the whole retained set (same runs).",
        ]
    lines += [
        "",
        "## Where GIF's time goes (default GIF, seconds)",
        "",
        "| n | Hessian | selection | forget gradient | solver (incl. set-up) | step search | "
        "other | total | example-gradients |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in HESSIAN_MODES:
        for n in cfg["sizes"]:
            m = summ[str(n)][mode]
            st = m["stages"]
            lines.append(
                f"| {n} | {mode} | {_fmt(st['selection'])} | {_fmt(st['forget_gradient'])} | "
                f"{_fmt(st['solver'])} | {_fmt(st['step_search'])} | {_fmt(st['other'])} | "
                f"{_fmt(m['gif_seconds'])} | {_fmt(m['gif_example_gradients'], 0)} |"
            )
    lines += [
        "",
        "## GIF test F1 by LSMR max_iter",
        "",
        "| n | Hessian | " + " | ".join(f"max_iter {k}" for k in cfg["iters"]) + " | retrain |",
        "|---|---|" + "---|" * (len(cfg["iters"]) + 1),
    ]
    for mode in HESSIAN_MODES:
        for n in cfg["sizes"]:
            s = summ[str(n)]
            m = s[mode]
            cells = [
                f"{_fmt(m['f1_by_max_iter'][str(k)], 4)} "
                f"({_fmt(m['seconds_by_max_iter'][str(k)], 1)} s)"
                for k in cfg["iters"]
            ]
            lines.append(
                f"| {n} | {mode} | " + " | ".join(cells) + f" | {_fmt(s['retrain_f1'], 4)} |"
            )
    c = model["coefficients"]
    nan = float("nan")
    fit = c["retrain_to_match_examples"] or {"fixed": nan, "epochs": nan}
    us_sel = c["selection_seconds"]["per_removed_example"] * 1e6
    us_grad = c["forget_gradient_seconds"]["per_removed_example"] * 1e6
    us_hvp = c["solver_seconds"]["per_hvp_example_gradient"] * 1e6
    us_train = c["seconds_per_training_example_gradient"] * 1e6
    prods = c["products_vs_max_iter"]
    lines += [
        "",
        "## Analytic model (unit: one example-gradient)",
        "",
        f"- retraining: E·(1−p)·n with E = {EPOCHS}, p = {model['removed_fraction_p']:.3f}; "
        f"{us_train:.1f} µs per example-gradient (fitted).",
        f"- retraining to GIF's F1 (fitted): {fit['fixed']:,.0f} + {fit['epochs']:.2f}·(1−p)·n "
        "example-gradients.",
        f"- GIF: 2·p·n (selection + forget gradient: {us_sel:.0f} + {us_grad:.0f} µs per removed "
        f"example) + 2·P·N_H (solver: {us_hvp:.1f} µs per HVP example-gradient, "
        f"P ≈ {prods['a']:.1f} + {prods['b']:.2f}·max_iter) + step search "
        f"{c['step_search_seconds_constant']:.2f} s ({c['step_search_forward_examples']:,.0f} "
        f"forward examples, flat in n) + other {c['other_seconds_constant']:.2f} s.",
        f"- N_H = (1−p)·n (all retained) or min({model['hessian_sample']}, (1−p)·n).",
    ]
    for text in result["crossovers"].values():
        at = "beyond 10⁸" if text["n"] is None else f"{text['n']:,.0f}"
        lines.append(f"- predicted n for {text['what']}: {at}")
    lines += [
        "",
        "Model against measurement (default GIF; mean over seeds, seconds):",
        "",
        "| n | Hessian | GIF measured | GIF model | error | retrain measured | retrain model | "
        "error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in cfg["sizes"]:
        for mode in HESSIAN_MODES:
            rows = [x for x in result["model_check"] if x["n"] == n and x["mode"] == mode]
            if not rows:
                continue
            g = statistics.fmean(x["gif_seconds"] for x in rows)
            t = statistics.fmean(x["retrain_seconds"] for x in rows)
            gp, tp = rows[0]["gif_predicted"], rows[0]["retrain_predicted"]
            lines.append(
                f"| {n} | {mode} | {g:.2f} | {gp:.2f} | {(gp - g) / g:+.0%} | {t:.2f} | "
                f"{tp:.2f} | {(tp - t) / t:+.0%} |"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (module docstring); ``--quick`` shrinks sizes, seeds and the sweep."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 3500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, nargs="+", default=[4, 8, 16, 32],
                    help="LSMR max_iter values of the GIF sweep")  # fmt: skip
    ap.add_argument("--hessian-sample", type=int, default=1000,
                    help="size S of the fixed Hessian subsample")  # fmt: skip
    ap.add_argument("--eval-every", type=int, default=5,
                    help="optimizer steps between F1 checkpoints of retraining")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default="benchmarks/results/class_removal_cost.json")
    ap.add_argument("--quick", action="store_true",
                    help="sizes 500 1000, seed 0, max_iter 4 8: a smoke run")  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the .png and .md from the --out JSON")  # fmt: skip
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.seeds, args.iters = [500, 1000], [0], [4, 8]
    args.sizes = sorted(set(args.sizes))
    args.iters = sorted(set(args.iters))
    if DEFAULT_ITER not in args.iters:
        ap.error(f"--iters must include {DEFAULT_ITER}, the demo's max_iter")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every size and seed, fit the model, write the JSON, the plot and the tables."""
    args = parse_args(argv)
    claim(args.out, Path(args.out).with_suffix(".png"), Path(args.out).with_suffix(".md"))
    if args.replot:
        out = Path(args.out)
        result = json.loads(out.read_text())
        result["verdict"] = verdict(result)
        emit_quiet(result, out)
        plot(result, out.with_suffix(".png"))
        write_text(out.with_suffix(".md"), markdown(result))
        print(out.with_suffix(".md").read_text())
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    base = load_dataset(DATA, seed=0)
    too_big = [n for n in args.sizes if n > base.sizes["train"]]
    if too_big:
        raise SystemExit(f"sizes {too_big} exceed the {base.sizes['train']} training examples")
    per_run = 1 + 2 * len(args.iters)
    bar = tqdm(total=len(args.sizes) * len(args.seeds) * per_run, desc="class removal cost",
               disable=args.quiet)  # fmt: skip
    runs = []
    for seed in args.seeds:
        for n in args.sizes:
            check = seed == args.seeds[0] and n == args.sizes[0]
            runs.append(one_run(base, n, seed, args, bar, check))
    bar.close()
    model = analytic_model(runs, args)
    crossovers = {
        "full_retrain_sample": {
            "what": "full retraining ÷ GIF (subsample Hessian) ≥ 10×",
            "n": crossover(model, "sample", "retrain_full_seconds", TARGET_SPEEDUP),
        },
        "full_retrain_full": {
            "what": "full retraining ÷ GIF (all retained in the Hessian) ≥ 10×",
            "n": crossover(model, "full", "retrain_full_seconds", TARGET_SPEEDUP),
        },
        "retrain_to_match_sample": {
            "what": "retraining-to-GIF's-F1 ÷ GIF (subsample Hessian) ≥ 10×",
            "n": crossover(model, "sample", "retrain_to_match_seconds", TARGET_SPEEDUP),
        },
    }
    residuals = []
    for r in runs:
        for mode in HESSIAN_MODES:
            g = r["gif"][mode][str(DEFAULT_ITER)]
            pr = predict(model, r["n"], mode, DEFAULT_ITER)
            residuals.append(
                {
                    "n": r["n"],
                    "seed": r["seed"],
                    "mode": mode,
                    "gif_seconds": g["seconds"],
                    "gif_predicted": pr["gif_seconds"],
                    "retrain_seconds": r["retrain"]["seconds"],
                    "retrain_predicted": pr["retrain_full_seconds"],
                }
            )
    out = Path(args.out)
    result = {
        "benchmark": "class_removal_cost",
        "command": " ".join(["python", "benchmarks/class_removal_cost.py", *sys.argv[1:]])
        if argv is None
        else " ".join(["python", "benchmarks/class_removal_cost.py", *argv]),
        "config": {
            "data": DATA,
            "model": MODEL,
            "width": WIDTH,
            "epochs": EPOCHS,
            "train": TRAIN,
            "forget_class": FORGET,
            "edit": {k: list(v) if isinstance(v, tuple) else v for k, v in EDIT.items()},
            "default_max_iter": DEFAULT_ITER,
            "sizes": args.sizes,
            "seeds": args.seeds,
            "iters": args.iters,
            "hessian_sample": args.hessian_sample,
            "eval_every": args.eval_every,
            "threads": torch.get_num_threads(),
            "f1_tolerance": F1_TOLERANCE,
            "target_speedup": TARGET_SPEEDUP,
            "quick": args.quick,
            "splits": base.sizes,
        },
        "parameters": num_parameters(demo_model(base, 0)),
        "versions": versions(),
        "summary": summarize(runs, args.sizes),
        "analytic_model": model,
        "crossovers": crossovers,
        "model_check": residuals,
        "runs": runs,
        "wall_time": time.perf_counter() - start,
    }
    result["verdict"] = verdict(result)
    emit_quiet(result, out)
    plot(result, out.with_suffix(".png"))
    write_text(out.with_suffix(".md"), markdown(result))
    print(out.with_suffix(".md").read_text())


def emit_quiet(result: dict[str, Any], path: Path) -> None:
    """Write ``result`` as JSON to ``path`` (atomically) without printing the long curves."""
    import io
    from contextlib import redirect_stdout

    with redirect_stdout(io.StringIO()):
        emit(result, str(path))


if __name__ == "__main__":
    main()
