"""Estimates for removal and label change: the subset J, then the direction x (a :class:`Plan`).

Removal of U from S = R ∪ U: H over R, g over U, scale r/(m − r) (influence methods), or the
second-order Δθ over every parameter with scale 1. Label change: g from
:func:`geninf.influence.label_change_gradient`, H over the data as trained, scale 1.

Two options replace data by a class-stratified, seeded sample (:func:`sample_indices`), the
counts of the update staying those of the full data:

- ``hessian_examples``: H over a sample of R (removal) or of the data as trained (label change);
- ``forget_examples``: g over a sample U_s ⊂ U of k of the r examples removed (or changed). The
  summed gradient Σ_U ∇ℓ is estimated by (r/k)·Σ_{U_s} ∇ℓ — the sample mean times the full count.
  For removal that is g over U_s with the scale r/(m − r) unchanged; for a label change g is
  multiplied by r/k. Without replacement, the estimate is unbiased when the class quotas are
  proportional (always for a one-class forget set); largest-remainder rounding otherwise tilts
  the class weights by under one example per class (and k below the number of classes drops
  classes). Its variance is (1 − k/r)·r²·S²/k per coordinate (S² the variance of the per-example
  gradients over U), so the direction's noise falls as 1/√k. The parameter selection (from the
  forget set), the second-order terms (g_U and H_U) and therefore the step search all see the
  sample. ``forget_examples = r`` uses every example, in their order (the full-data update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data import stratified_sample
from ..defaults import EDIT_DEFAULTS
from ..errors import InputError
from ..influence import removal_scale
from ..objective import Objective
from ..params.subset import ParameterSubset
from .methods import Plan, influence_plans, label_change_rhs, resolve_subset
from .record import ComputeUsed, EditMethod
from .second_order import second_order_terms
from .settings import EditSettings

__all__ = [
    "RelabelTask",
    "RemovalTask",
    "forget_sample",
    "hessian_sample",
    "relabel_plan",
    "removal_plan",
    "split_changes",
]


@dataclass(frozen=True)
class RemovalTask:
    """Removing ``forget`` (r examples) from the training set ``retain ∪ forget`` of ``model``."""

    model: nn.Module
    objective: Objective
    retain: Any
    forget: Any
    num_retain: int
    num_forget: int

    @property
    def num_train(self) -> int:
        return self.num_retain + self.num_forget

    @property
    def scale(self) -> float:
        """r/(m − r), the scale of the Newton removal update."""
        return removal_scale(self.num_train, self.num_forget)


@dataclass(frozen=True)
class RelabelTask:
    """Changing the targets of the examples ``old`` (now ``new``) within ``data`` (m examples)."""

    model: nn.Module
    objective: Objective
    data: tuple[Tensor, ...]
    old: tuple[Tensor, ...]
    new: tuple[Tensor, ...]
    corrected: tuple[Tensor, ...]

    @property
    def num_train(self) -> int:
        return int(self.data[0].shape[0])

    @property
    def num_changed(self) -> int:
        return int(self.old[0].shape[0])


def removal_plan(
    task: RemovalTask, s: EditSettings, compute: ComputeUsed, method: EditMethod
) -> list[Plan]:
    """The estimates of ``method`` for removing ``task.forget`` (one per damping tried)."""
    forget, num_forget = forget_sample(task.forget, task.num_forget, s)
    J, info = resolve_subset(task.model, task.objective, forget, method, s, compute)
    hessian_data, num_hessian = hessian_sample(task.retain, task.num_retain, s)
    if method is EditMethod.SECOND_ORDER:
        plan = _second_order_plan(task, s, compute, info, hessian_data, forget)
        return _note_sample([plan], num_forget, task.num_forget)
    hessian = (hessian_data, num_hessian)  # the retained objective: what iterated GIF
    return _influence(  # re-linearizes at the edited point
        task, method, J, info, hessian, hessian_data, num_forget, s, compute,
        scale=task.scale, target_data=forget, num_target=num_forget,
    )  # fmt: skip


def _second_order_plan(task, s, compute, info, hessian_data, forget) -> Plan:
    """Basu et al.'s estimate; ``damping="auto"`` uses the relative fallback (no path)."""
    spec = s.damping
    relative = {"relative": spec.value, "auto": EDIT_DEFAULTS.damping_fallback}.get(spec.mode)
    terms = second_order_terms(
        task.model,
        task.objective,
        hessian_data,
        forget,
        num_retain=task.num_retain,  # p = r/m from the full counts, as the Newton scale
        num_forget=task.num_forget,
        solver=s.solver,
        damping=spec.value if spec.mode == "absolute" else 0.0,
        relative_damping=relative,
        seed=s.seed,
        batch_size=s.opts.batch_size,
        hvp_method=s.opts.hvp_method,
        solver_options=s.opts.solver_options,
        check_determinism=s.opts.check_determinism,
        progress=s.progress,
        compute=compute,
    )
    diagnostics = dict(terms.diagnostics)
    lam = diagnostics.pop("damping")
    extra = {
        "p": terms.p,
        "first_term_norm": float(terms.first.norm()),
        "second_term_norm": float(terms.second.norm()),
        "damping": lam,
        "damping_info": {"spec": spec.describe(), "relative": relative},
    }
    everything = ParameterSubset.all(task.model)
    return Plan(everything, terms.total, 1.0, diagnostics, info, extra)


def relabel_plan(
    task: RelabelTask, s: EditSettings, compute: ComputeUsed, method: EditMethod
) -> list[Plan]:
    """The estimates of ``method`` for the label change (J selected from the old examples)."""
    pick = forget_indices(task.old, task.num_changed, s)
    old, num_old = _take(task.old, pick, task.num_changed)
    new = _take(task.new, pick, task.num_changed)[0]
    J, info = resolve_subset(task.model, task.objective, old, method, s, compute)
    g = label_change_rhs(task.model, task.objective, old, new, task.num_train, s.opts, compute)
    if num_old != task.num_changed:  # the sample's sum, scaled to the r changes (module doc)
        g = g * (task.num_changed / num_old)
    idx = sample_indices(task.data, task.num_train, s)
    hessian = _take(task.data, idx, task.num_train)
    corrected = _take(task.corrected, idx, 0)[0]  # what iterated GIF re-linearizes
    return _influence(
        task, method, J, info, hessian, corrected, num_old, s, compute, scale=1.0, gradient=g
    )


def _influence(task, method, J, info, hessian, objective_data, sampled, s, compute, **kw):
    """:func:`influence_plans` for ``task`` with H over ``hessian = (data, count)``; each plan
    re-linearizes ``task.objective`` over ``objective_data`` and notes that g saw ``sampled`` of
    the task's edited examples."""
    plans = influence_plans(
        task.model, task.objective, *hessian, method=method, subset=J, info=info, s=s,
        compute=compute, **kw,
    )  # fmt: skip
    for plan in plans:
        plan.objective = (task.objective, objective_data, hessian[1])
    total = task.num_forget if isinstance(task, RemovalTask) else task.num_changed
    return _note_sample(plans, sampled, total)


def _note_sample(plans: list[Plan], sampled: int, total: int) -> list[Plan]:
    """Record in each plan's ``extra`` how many of the ``total`` edited examples g saw."""
    if sampled != total:
        for plan in plans:
            plan.extra["forget_sample"] = {"examples": sampled, "of": total}
    return plans


def hessian_sample(data: Any, num: int, s: EditSettings) -> tuple[Any, int]:
    """A stratified sample of ``hessian_examples`` examples of ``data`` (seeded by ``s.seed``),
    or ``data`` itself when the option is None; returns ``(data, number of examples)``.

    Raises:
        InputError: the option is set but ``data`` is not a tuple of tensors with integer class
            targets, or it asks for more examples than ``data`` holds.
    """
    return _take(data, sample_indices(data, num, s), num)


def _take(data: Any, idx: Tensor | None, num: int) -> tuple[Any, int]:
    """``(data, num)`` unchanged when ``idx`` is None, else the rows ``idx`` and their count."""
    if idx is None:
        return data, num
    return tuple(t[idx.to(t.device)] for t in data), int(idx.numel())


def forget_sample(data: Any, num: int, s: EditSettings) -> tuple[Any, int]:
    """A stratified sample of ``forget_examples`` of the ``num`` examples removed (seeded by
    ``s.seed``), or ``data`` itself when the option is None or asks for all of them; returns
    ``(data, number of examples)``. Raises as :func:`hessian_sample`."""
    return _take(data, forget_indices(data, num, s), num)


def forget_indices(data: Any, num: int, s: EditSettings) -> Tensor | None:
    """The indices :func:`forget_sample` keeps (None: all of ``data``, in order)."""
    return sample_indices(data, num, s, option="forget_examples")


_OVER = {
    "hessian_examples": "the Hessian is computed over",
    "forget_examples": "to remove or change (the gradient's data)",
}


def sample_indices(
    data: Any, num: int, s: EditSettings, *, option: str = "hessian_examples"
) -> Tensor | None:
    """The indices :func:`hessian_sample` (or, with ``option="forget_examples"``,
    :func:`forget_sample`) keeps; None: all of ``data``, in order (also when the option asks for
    all ``num`` of them)."""
    size = getattr(s.opts, option)
    if size is None or size == num:
        return None
    if size > num:
        raise InputError(
            f"{option}={size} is more than the {num} examples {_OVER[option]}; give at most "
            f"{num}, or drop {option} to use them all"
        )
    ok = isinstance(data, tuple | list) and len(data) >= 2
    ok = ok and all(isinstance(t, Tensor) for t in data)
    if not ok or data[1].dim() != 1 or data[1].is_floating_point():
        raise InputError(
            f"{option} needs the data as an (inputs, targets, ...) tuple of tensors with "
            "integer class targets (it draws a class-stratified sample); sample the data "
            "yourself for other formats"
        )
    gen = torch.Generator().manual_seed(s.seed)
    return stratified_sample(data[1].cpu(), int(size), generator=gen)


def split_changes(model: nn.Module, objective: Objective, data: Any, changes: Any) -> RelabelTask:
    """Check ``data`` and ``changes = (indices, new_targets)``; build the :class:`RelabelTask`."""
    if (
        not isinstance(data, tuple | list)
        or len(data) < 2
        or not all(isinstance(t, Tensor) for t in data)
    ):
        raise InputError(
            "relabel needs data as an (inputs, targets) tuple of tensors, got "
            f"{type(data).__name__}"
        )
    data = tuple(data)
    m = int(data[0].shape[0]) if data[0].dim() else 0
    if m == 0 or any(t.dim() == 0 or t.shape[0] != m for t in data):
        raise InputError("relabel: data must be non-empty tensors with the same first dimension")
    if not isinstance(changes, tuple | list) or len(changes) != 2:
        raise InputError("changes must be a pair (indices, new_targets) of tensors")
    idx, new_targets = (torch.as_tensor(c) for c in changes)
    if idx.dim() != 1 or idx.numel() == 0 or idx.is_floating_point() or idx.dtype == torch.bool:
        raise InputError(
            f"changes[0] must be a non-empty 1-D integer tensor of indices into data, got "
            f"shape {tuple(idx.shape)} ({idx.dtype})"
        )
    idx = idx.to(device=data[1].device, dtype=torch.long)
    if int(idx.min()) < 0 or int(idx.max()) >= m or torch.unique(idx).numel() != idx.numel():
        raise InputError(f"changes[0] must hold distinct indices in [0, {m - 1}]")
    expected = (idx.numel(), *data[1].shape[1:])
    if tuple(new_targets.shape) != expected:
        raise InputError(
            f"changes[1] must hold one new target per index, shape {expected}; got "
            f"{tuple(new_targets.shape)}"
        )
    new_targets = new_targets.to(device=data[1].device, dtype=data[1].dtype)
    old = tuple(t[idx.to(t.device)] for t in data)
    new = (old[0], new_targets, *old[2:])
    targets = data[1].clone()
    targets[idx] = new_targets
    corrected = (data[0], targets, *data[2:])
    return RelabelTask(model, objective, data, old, new, corrected)
