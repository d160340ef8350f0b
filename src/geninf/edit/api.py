"""``remove`` and ``relabel``: apply the effect of changing training data to a copy of a model.

Both return an :class:`~geninf.edit.EditResult`: the edited deep copy (the model passed in is
never changed) and an :class:`~geninf.edit.EditRecord`. Neither takes test data: every choice
(parameter selection, schedule, baseline checkpoint) is made from the training data and the
``validation`` score. Evaluate on the test split after the call returns.

Updates (signs as in :mod:`geninf.influence`):

- removal of U (r examples) from S = R ∪ U (m examples), influence methods: x from H over the
  retained data R and g over U; ``newton`` adds ``r/(m − r) · x`` to θ_J;
- label change: g = (1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)], H over the data as trained; ``newton``
  adds x;
- ``second_order`` (removal only): Δθ = I¹ + I″ with H over S (:mod:`.second_order`), added
  with scale 1;
- baselines: optimizer steps for a budget of example-gradient evaluations (:mod:`.baselines`);
  by default the budget an influence run with ``method="gif"`` and the same settings spends.
"""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..objective import as_objective
from ..params.subset import ParameterSubset
from .baselines import run_baseline
from .datautil import check_distinct, count_examples
from .methods import Plan, subset_info
from .plans import RemovalTask, relabel_plan, removal_plan, split_changes
from .record import ComputeUsed, EditMethod, EditRecord, EditResult, Schedule
from .schedules import describe_outcome, newton_update, paper_search
from .settings import EditSettings, check_settings
from .unlearning import RemovalData, run_unlearning
from .validation import evaluate_score

__all__ = ["relabel", "remove"]


def remove(
    model: nn.Module,
    objective: Any,
    retain_data: Any,
    forget_data: Any,
    *,
    method: EditMethod | str = "gif",
    subset: ParameterSubset | None = None,
    criterion: Any = "highest_gradients",
    ratio: float = 0.05,
    schedule: Schedule | str = "newton",
    validation: Any = None,
    solver: Any = "auto",
    damping: float = 0.0,
    seed: int = 0,
    budget: int | None = None,
    progress: bool = False,
    **options: Any,
) -> EditResult:
    """Remove ``forget_data`` from the training set of ``model``; return an edited copy.

    Args:
        model: the trained model (never modified); put it in eval mode.
        objective: None (cross-entropy), ``loss_fn(outputs, targets)`` or an Objective — the
            training objective (include the weight decay the model was trained with).
        retain_data: the training set without the forget set (R, m − r examples).
        forget_data: the examples to remove (U, r examples).
        method: an :class:`EditMethod` — ``gif``, ``freezing``, ``projecting``, ``original``,
            ``second_order``, ``finetune``, ``gradient_ascent`` or the unlearning baselines
            ``random_label``, ``l1_sparse``, ``scrub``, ``salun`` (:mod:`.unlearning`).
        subset: the parameters J that may move (gif/freezing/projecting); None selects them with
            ``select(model, objective, forget_data, criterion=..., ratio=..., seed=...)``.
        criterion: a :class:`~geninf.selection.Criterion` used when ``subset`` is None.
        ratio: the fraction of each layer to select, in (0, 1].
        schedule: a :class:`Schedule`, ``newton`` (one step with scale r/(m − r)) or ``paper``
            (step norm γ and step count k chosen on ``validation``).
        validation: a callable ``score(model) -> float`` (higher is better) computed on a
            validation split, e.g. :class:`ClassRemovalValidation`. Required by ``paper``; with
            ``newton`` it only scores the result. Never pass test data.
        solver: a solver name or instance (see :func:`geninf.get_solver`).
        damping: λ ≥ 0 added to the Hessian.
        seed: seed of the selection and of the baselines' batch order.
        budget: example-gradient evaluations for ``finetune``/``gradient_ascent`` (default: what
            ``method="gif"`` spends at the same settings, measured by running it).
        progress: show progress bars.
        **options: see :class:`~geninf.edit.options.EditOptions` (``batch_size``, ``gammas``,
            ``max_steps``, ``lr``, ``optimizer``, ``train_batch_size``, ``solver_options``, ...).

    Returns:
        An :class:`EditResult` with the edited copy and its :class:`EditRecord`.

    Raises:
        InputError: an unknown method, schedule or option; a bad ratio, damping, seed or budget;
            ``paper`` without ``validation``; an empty forget set; nothing retained.
    """
    start = time.perf_counter()
    s = check_settings(
        method=method,
        schedule=schedule,
        validation=validation,
        ratio=ratio,
        damping=damping,
        seed=seed,
        budget=budget,
        subset=subset,
        options=options,
        progress=progress,
        criterion=criterion,
        solver=solver,
    )
    obj = as_objective(objective)
    bs = s.opts.batch_size
    r = count_examples(obj, forget_data, "forget_data", bs)
    nothing_left = (
        "; the forget set is the whole training set, so nothing is retained: train a new model "
        "instead of editing this one"
    )
    n_keep = count_examples(obj, retain_data, "retain_data", bs, nothing_left)
    check_distinct(retain_data, forget_data)
    task = RemovalTask(model, obj, retain_data, forget_data, n_keep, r)
    compute = ComputeUsed()
    if s.method.is_baseline:
        ascent = s.method is EditMethod.GRADIENT_ASCENT
        data = forget_data if ascent else retain_data
        if s.method.is_unlearning:
            data = RemovalData(retain_data, forget_data)
        result = _baseline(
            model, obj, data, ascent, s, compute, lambda c: removal_plan(task, s, c, EditMethod.GIF)
        )
    else:
        result = _apply(model, removal_plan(task, s, compute, s.method), s, compute)
    return _finish(result, "remove", s, task.num_train, r, compute, start)


def relabel(
    model: nn.Module,
    objective: Any,
    data: tuple[Tensor, ...],
    changes: tuple[Tensor, Tensor],
    *,
    method: EditMethod | str = "gif",
    subset: ParameterSubset | None = None,
    criterion: Any = "highest_gradients",
    ratio: float = 0.05,
    schedule: Schedule | str = "newton",
    validation: Any = None,
    solver: Any = "auto",
    damping: float = 0.0,
    seed: int = 0,
    budget: int | None = None,
    progress: bool = False,
    **options: Any,
) -> EditResult:
    """Change the labels of some training examples; return an edited copy of ``model``.

    ``data`` is the training set as trained, an ``(inputs, targets)`` tuple of tensors;
    ``changes = (indices, new_targets)`` gives the positions in ``data`` and their new targets.
    The influence methods move θ_J by x (``newton``) where x solves the system of ``method`` with
    g = (1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)] and H over ``data``; the subset is selected from the
    changed examples with their old targets. ``finetune`` trains on the corrected data set.
    ``second_order`` and ``gradient_ascent`` are removal methods: use :func:`remove`.

    The other arguments are those of :func:`remove`.

    Raises:
        InputError: as :func:`remove`; malformed ``data`` or ``changes``; a removal-only method.
    """
    start = time.perf_counter()
    s = check_settings(
        method=method,
        schedule=schedule,
        validation=validation,
        ratio=ratio,
        damping=damping,
        seed=seed,
        budget=budget,
        subset=subset,
        options=options,
        progress=progress,
        criterion=criterion,
        solver=solver,
    )
    if s.method.removal_only:
        raise InputError(
            f"method={s.method.value!r} is defined for removal only; use geninf.edit.remove (e.g. "
            "to remove the mislabeled examples) or a label-change method: gif, freezing, "
            "projecting, original, finetune"
        )
    task = split_changes(model, as_objective(objective), data, changes)
    compute = ComputeUsed()
    if s.method.is_baseline:
        result = _baseline(
            model,
            task.objective,
            task.corrected,
            False,
            s,
            compute,
            lambda c: relabel_plan(task, s, c, EditMethod.GIF),
        )
    else:
        result = _apply(model, relabel_plan(task, s, compute, s.method), s, compute)
    return _finish(result, "relabel", s, task.num_train, task.num_changed, compute, start)


# ------------------------------------------------------------------------------- application
def _apply(model: nn.Module, plan: Plan, s: EditSettings, compute: ComputeUsed) -> dict[str, Any]:
    if s.schedule is Schedule.PAPER:
        outcome = paper_search(
            model,
            plan.subset,
            plan.direction,
            s.score,
            s.opts.gammas,
            s.opts.max_steps,
            compute,
            progress=s.progress,
        )
    else:
        outcome = newton_update(model, plan.subset, plan.direction, plan.scale, s.score, compute)
    return {
        "model": outcome.model,
        "scale": plan.scale,
        "subset": plan.subset_info,
        "solver": plan.solver,
        "direction_norm": float(plan.direction.norm()),
        "update_norm": abs(outcome.alpha) * float(plan.direction.norm()),
        **describe_outcome(outcome),
        "extra": {**plan.extra, "alpha": outcome.alpha},
    }


def _baseline(model, obj, data, ascent, s: EditSettings, compute, reference) -> dict[str, Any]:
    if s.budget is None:
        probe = ComputeUsed()
        reference(probe)
        compute.budget, compute.budget_source = probe.example_gradients, "gif"
    else:
        compute.budget, compute.budget_source = s.budget, "given"
    score = s.score if s.schedule is Schedule.PAPER else None
    runner = run_unlearning if isinstance(data, RemovalData) else run_baseline
    how = {"method": s.method} if isinstance(data, RemovalData) else {"ascent": ascent}
    out = runner(
        model,
        obj,
        data,
        **how,
        budget=compute.budget,
        opts=s.opts,
        seed=s.seed,
        compute=compute,
        score=score,
    )
    best = out.best_score
    if best is None and s.score is not None:
        best = evaluate_score(s.score, out.model)
        compute.validation_evaluations += 1
    return {
        "model": out.model,
        "scale": None,
        "subset": subset_info(ParameterSubset.all(model), "all parameters"),
        "solver": None,
        "direction_norm": None,
        "update_norm": _distance(model, out.model),
        "steps": out.steps,
        "gamma": None,
        "validation_score": best,
        "schedule_scores": out.scores,
        "extra": {"total_steps": out.total_steps, "diverged": out.diverged, **out.extra},
    }


def _distance(a: nn.Module, b: nn.Module) -> float:
    total = 0.0
    pb = dict(b.named_parameters())
    for name, p in a.named_parameters():
        if p.requires_grad:
            total += float((pb[name].detach() - p.detach()).double().pow(2).sum())
    return total**0.5


def _finish(result, operation, s: EditSettings, m, r, compute, start) -> EditResult:
    model = result.pop("model")
    record = EditRecord(
        operation=operation,
        method=s.method.value,
        schedule=s.schedule.value,
        seed=s.seed,
        num_train=m,
        num_edited=r,
        validation=s.validation_info,
        compute=compute,
        options=s.record_options(),
        **result,
    )
    record.wall_time = time.perf_counter() - start
    return EditResult(model=model, record=record)
