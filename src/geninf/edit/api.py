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
import warnings
from typing import Any

from torch import Tensor, nn

from ..defaults import EDIT_DEFAULTS
from ..errors import EditWarning, InputError
from ..objective import as_objective
from ..params.subset import ParameterSubset
from .baselines import run_baseline
from .datautil import check_distinct, count_examples
from .iterate import iterate
from .methods import Plan, subset_info
from .plans import RemovalTask, relabel_plan, removal_plan, split_changes
from .record import ComputeUsed, EditMethod, EditRecord, EditResult, Schedule
from .schedules import (
    describe_outcome,
    newton_update,
    paper_search,
    refine_search,
    search_update,
)
from .settings import EditSettings, check_call
from .unlearning import RemovalData, run_unlearning
from .validation import evaluate_score

__all__ = ["relabel", "remove"]


#: the arguments :func:`remove` and :func:`relabel` share, documented once (``{edit_args}``)
_EDIT_ARGS = """\
        method: an :class:`EditMethod` — ``gif``, ``freezing``, ``projecting``, ``original``,
            ``second_order``, ``finetune``, ``gradient_ascent`` or the unlearning baselines
            ``random_label``, ``l1_sparse``, ``scrub``, ``salun`` (:mod:`.unlearning`).
        subset: the parameters J that may move (gif/freezing/projecting); None selects them with
            ``select(model, objective, forget_data, criterion=..., ratio=..., seed=...)``.
        criterion: a :class:`~geninf.selection.Criterion` used when ``subset`` is None.
        ratio: the fraction of each layer to select, in (0, 1].
        schedule: a :class:`Schedule`: ``auto`` (default: ``search`` with ``validation``, else
            ``newton``), ``newton`` (one step with scale r/(m − r)), ``search`` (a bracketing
            search for the step on ``validation``) or ``paper`` (the authors' γ × k grid).
        validation: a callable ``score(model) -> float`` (higher is better) computed on a
            validation split, e.g. :class:`ClassRemovalValidation`. Required by ``search`` and
            ``paper``; it also chooses ``damping="auto"`` and checks that the edit improved on
            the unedited model (:class:`~geninf.errors.EditWarning` if not). Never pass test
            data.
        solver: a solver name or instance (see :func:`geninf.get_solver`); by name, iterative
            solvers default to the edit tolerance and iteration cap of
            :data:`geninf.defaults.EDIT_DEFAULTS`.
        damping: ``"auto"`` (default; λ = ρ·‖H‖₂ with ρ chosen on ``validation`` from the
            option ``damping_path``, or the documented fallback without validation),
            ``"rel:ρ"`` (λ = ρ·‖H‖₂) or an absolute λ ≥ 0 (:mod:`geninf.edit.damping`).
        seed: seed of the selection and of the baselines' batch order.
        budget: example-gradient evaluations for ``finetune``/``gradient_ascent`` (default: what
            ``method="gif"`` spends at the same settings, measured by running it).
        progress: show progress bars.
        **options: see :class:`~geninf.edit.options.EditOptions` (``batch_size``,
            ``hessian_examples``, ``damping_path``, ``max_evaluations``, ``gammas``,
            ``max_steps``, ``lr``, ``optimizer``, ``train_batch_size``, ``solver_options``, ...)."""


def _edit_args(fn: Any) -> Any:
    """Put the documentation of the shared arguments into ``fn``'s docstring."""
    if fn.__doc__:  # None under python -OO
        fn.__doc__ = fn.__doc__.replace("        {edit_args}", _EDIT_ARGS)
    return fn


@_edit_args
def remove(
    model: nn.Module,
    objective: Any,
    retain_data: Any,
    forget_data: Any,
    *,
    method: EditMethod | str = EDIT_DEFAULTS.method,
    subset: ParameterSubset | None = None,
    criterion: Any = EDIT_DEFAULTS.criterion,
    ratio: float = EDIT_DEFAULTS.ratio,
    schedule: Schedule | str = EDIT_DEFAULTS.schedule,
    validation: Any = None,
    solver: Any = EDIT_DEFAULTS.solver,
    damping: float | str = EDIT_DEFAULTS.damping,
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
        {edit_args}

    Returns:
        An :class:`EditResult` with the edited copy and its :class:`EditRecord`.

    Raises:
        InputError: an unknown method, schedule or option; a bad ratio, damping, seed or budget;
            ``search``/``paper`` without ``validation``; an empty forget set; nothing retained.

    Warns:
        EditWarning: the edited model's validation score is not above the unedited model's, or
            the step search stopped on the edge of the steps it could try.
    """
    start = time.perf_counter()
    s = check_call(locals())
    task = _removal_task(model, as_objective(objective), retain_data, forget_data, s)
    compute = ComputeUsed()
    if s.method.is_baseline:
        result = _removal_baseline(task, s, compute)
    else:
        result = _apply(model, removal_plan(task, s, compute, s.method), s, compute)
    _check_improved(model, result, s, compute)
    return _finish(result, "remove", s, task.num_train, task.num_forget, compute, start)


def _removal_task(model, obj, retain_data, forget_data, s: EditSettings) -> RemovalTask:
    """Count and check the data of a removal."""
    bs = s.opts.batch_size
    r = count_examples(obj, forget_data, "forget_data", bs)
    nothing_left = (
        "; the forget set is the whole training set, so nothing is retained: train a new model "
        "instead of editing this one"
    )
    n_keep = count_examples(obj, retain_data, "retain_data", bs, nothing_left)
    check_distinct(retain_data, forget_data)
    return RemovalTask(model, obj, retain_data, forget_data, n_keep, r)


def _removal_baseline(task: RemovalTask, s: EditSettings, compute: ComputeUsed) -> dict:
    """Fine-tuning / gradient ascent / an unlearning baseline on the removal's data."""
    ascent = s.method is EditMethod.GRADIENT_ASCENT
    data = task.forget if ascent else task.retain
    if s.method.is_unlearning:
        data = RemovalData(task.retain, task.forget)
    return _baseline(
        task.model,
        task.objective,
        data,
        ascent,
        s,
        compute,
        lambda c: removal_plan(task, s, c, EditMethod.GIF),
    )


@_edit_args
def relabel(
    model: nn.Module,
    objective: Any,
    data: tuple[Tensor, ...],
    changes: tuple[Tensor, Tensor],
    *,
    method: EditMethod | str = EDIT_DEFAULTS.method,
    subset: ParameterSubset | None = None,
    criterion: Any = EDIT_DEFAULTS.criterion,
    ratio: float = EDIT_DEFAULTS.ratio,
    schedule: Schedule | str = EDIT_DEFAULTS.schedule,
    validation: Any = None,
    solver: Any = EDIT_DEFAULTS.solver,
    damping: float | str = EDIT_DEFAULTS.damping,
    seed: int = 0,
    budget: int | None = None,
    progress: bool = False,
    **options: Any,
) -> EditResult:
    """Change the labels of some training examples; return an edited copy of ``model``.

    The influence methods move θ_J by x (``newton``) where x solves the system of ``method`` with
    g = (1/m) Σ_W [∇ℓ(z_i) − ∇ℓ(z'_i)] and H over ``data``; the subset is selected from the
    changed examples with their old targets. ``finetune`` trains on the corrected data set.
    ``second_order`` and ``gradient_ascent`` are removal methods: use :func:`remove`.

    Args:
        model, objective: as for :func:`remove`.
        data: the training set as trained, an ``(inputs, targets)`` tuple of tensors.
        changes: ``(indices, new_targets)``: positions in ``data`` and their new targets.
        {edit_args}

    Returns:
        An :class:`EditResult` with the edited copy and its :class:`EditRecord`.

    Raises:
        InputError: as :func:`remove`; malformed ``data`` or ``changes``; a removal-only method.
    """
    start = time.perf_counter()
    s = check_call(locals())
    if s.method.removal_only:
        raise InputError(
            f"method={s.method.value!r} is defined for removal only; use geninf.edit.remove (e.g. "
            "to remove the mislabeled examples) or a label-change method: gif, freezing, "
            "projecting, original, finetune"
        )
    task = split_changes(model, as_objective(objective), data, changes)
    compute = ComputeUsed()
    if s.method.is_baseline:  # finetune on the corrected data; its budget from GIF's plan
        gif = lambda c: relabel_plan(task, s, c, EditMethod.GIF)  # noqa: E731
        result = _baseline(model, task.objective, task.corrected, False, s, compute, gif)
    else:
        result = _apply(model, relabel_plan(task, s, compute, s.method), s, compute)
    _check_improved(model, result, s, compute)
    return _finish(result, "relabel", s, task.num_train, task.num_changed, compute, start)


# ------------------------------------------------------------------------------- application
def _apply(model: nn.Module, plans: list[Plan], s: EditSettings, compute: ComputeUsed) -> dict:
    """Schedule every plan (one per damping tried), keep the best on validation."""
    scored = [(plan, _schedule(model, plan, s, compute, len(plans) == 1)) for plan in plans]
    plan, outcome = scored[0]
    chosen = 0
    if s.score is not None:  # the first best wins: ties go to the larger damping
        plan, outcome = max(scored, key=lambda po: po[1].best_score)  # type: ignore[arg-type,return-value]
        chosen = next(i for i, (p, _) in enumerate(scored) if p is plan)
        if len(plans) > 1 and s.schedule is Schedule.SEARCH and outcome.search is not None:
            outcome = refine_search(
                model,
                outcome.search,
                plan.subset,
                plan.direction,
                plan.scale,
                s.score,
                compute,
                EDIT_DEFAULTS.step_refine,
            )
    outcome, steps = iterate(plan, outcome, s, compute)
    info = dict(plan.extra.get("damping_info") or {})
    if info.get("path") is not None and s.score is not None:
        info["scores"] = [o.best_score for _, o in scored]
        info["saturated"] = _path_edge(info["scores"], chosen)
    info["chosen"] = plan.extra.get("damping")
    if info.get("scale"):
        info["chosen_relative"] = float(info["chosen"]) / float(info["scale"])
    extra = {k: v for k, v in plan.extra.items() if k != "damping_info"}
    return {
        "model": outcome.model,
        "scale": plan.scale,
        "subset": plan.subset_info,
        "solver": plan.solver,
        "direction_norm": float(plan.direction.norm()),
        "update_norm": (
            _distance(model, outcome.model)  # several directions: measure the move itself
            if steps
            else abs(outcome.alpha) * float(plan.direction.norm())
        ),
        **describe_outcome(outcome),
        "damping": info,
        "extra": {**extra, "alpha": outcome.alpha, **({"iterations": steps} if steps else {})},
    }


def _path_edge(scores: list[Any], chosen: int) -> str | None:
    """``"upper"`` (the largest ρ) or ``"lower"`` (the smallest) when the chosen damping is on an
    edge of the path and strictly beats its neighbour there: a value beyond the path might be
    better still. None otherwise (an inner choice, a tie, or a one-value path)."""
    if len(scores) < 2 or any(v is None for v in scores):
        return None
    if chosen == 0 and scores[0] > scores[1]:
        return "upper"
    if chosen == len(scores) - 1 and scores[-1] > scores[-2]:
        return "lower"
    return None


def _schedule(model, plan: Plan, s: EditSettings, compute: ComputeUsed, final: bool):
    if s.schedule is Schedule.PAPER:
        return paper_search(
            model,
            plan.subset,
            plan.direction,
            s.score,
            s.opts.gammas,
            s.opts.max_steps,
            compute,
            progress=s.progress,
        )
    if s.schedule is Schedule.SEARCH:
        return search_update(
            model,
            plan.subset,
            plan.direction,
            plan.scale,
            s.score,
            compute,
            max_evaluations=s.opts.max_evaluations,
            refine_rounds=EDIT_DEFAULTS.step_refine if final else 0,
        )
    return newton_update(model, plan.subset, plan.direction, plan.scale, s.score, compute)


def _baseline(model, obj, data, ascent, s: EditSettings, compute, reference) -> dict[str, Any]:
    if s.budget is None:
        probe = ComputeUsed()
        reference(probe)
        compute.budget, compute.budget_source = probe.example_gradients, "gif"
    else:
        compute.budget, compute.budget_source = s.budget, "given"
    score = s.score if s.schedule in (Schedule.PAPER, Schedule.SEARCH) else None
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


def _check_improved(model: nn.Module, result: dict, s: EditSettings, compute) -> None:
    """Score the unedited model; warn (and record) when the edit did not beat it."""
    saturated = (result.get("step_search") or {}).get("saturated")
    if saturated:
        bound = "largest" if saturated == "upper" else "smallest"
        warnings.warn(
            f"the step search chose the {bound} step it could try (multiplier "
            f"{result['step_search']['best']:g} of the Newton update); a step beyond it might be "
            "better: check the validation score's range, the damping, or try schedule='paper'",
            EditWarning,
            stacklevel=3,
        )
    if s.score is None or result.get("validation_score") is None:
        return
    before = evaluate_score(s.score, model)
    compute.validation_evaluations += 1
    after = float(result["validation_score"])
    result["baseline_score"], result["improved"] = before, after > before
    if after <= before:
        advice = (
            "a larger budget, or an influence method such as method='gif'"
            if s.method.is_baseline
            else "a larger ratio, criterion='random', damping='auto' with a longer "
            "damping_path, or method='finetune'"
        )
        warnings.warn(
            f"the edit did not improve the validation score ({before:.4g} unedited, {after:.4g} "
            f"edited by {s.method.value}); try {advice}",
            EditWarning,
            stacklevel=3,
        )


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
