"""Estimates for removal and label change: the subset J, then the direction x (a :class:`Plan`).

Removal of U from S = R ∪ U: H over R, g over U, scale r/(m − r) (influence methods), or the
second-order Δθ over every parameter with scale 1. Label change: g from
:func:`geninf.influence.label_change_gradient`, H over the data as trained, scale 1.
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

__all__ = ["RelabelTask", "RemovalTask", "relabel_plan", "removal_plan", "split_changes"]


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
    J, info = resolve_subset(task.model, task.objective, task.forget, method, s, compute)
    hessian_data, num_hessian = hessian_sample(task.retain, task.num_retain, s)
    if method is EditMethod.SECOND_ORDER:
        return [_second_order_plan(task, s, compute, info, hessian_data)]
    plans = influence_plans(
        task.model,
        task.objective,
        hessian_data,
        num_hessian,
        method=method,
        subset=J,
        info=info,
        scale=task.scale,
        s=s,
        compute=compute,
        target_data=task.forget,
        num_target=task.num_forget,
    )
    for plan in plans:  # what iterated GIF re-linearizes: the retained objective
        plan.objective = (task.objective, hessian_data, num_hessian)
    return plans


def _second_order_plan(task, s, compute, info, hessian_data) -> Plan:
    """Basu et al.'s estimate; ``damping="auto"`` uses the relative fallback (no path)."""
    spec = s.damping
    relative = {"relative": spec.value, "auto": EDIT_DEFAULTS.damping_fallback}.get(spec.mode)
    terms = second_order_terms(
        task.model,
        task.objective,
        hessian_data,
        task.forget,
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
    J, info = resolve_subset(task.model, task.objective, task.old, method, s, compute)
    g = label_change_rhs(
        task.model, task.objective, task.old, task.new, task.num_train, s.opts, compute
    )
    idx = sample_indices(task.data, task.num_train, s)
    hessian_data, num_hessian = _take(task.data, idx, task.num_train)
    plans = influence_plans(
        task.model,
        task.objective,
        hessian_data,
        num_hessian,
        method=method,
        subset=J,
        info=info,
        scale=1.0,
        s=s,
        compute=compute,
        gradient=g,
    )
    for plan in plans:  # what iterated GIF re-linearizes: the corrected objective
        plan.objective = (task.objective, _take(task.corrected, idx, 0)[0], num_hessian)
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


def sample_indices(data: Any, num: int, s: EditSettings) -> Tensor | None:
    """The indices :func:`hessian_sample` keeps (None: all of ``data``)."""
    size = s.opts.hessian_examples
    if size is None:
        return None
    if size > num:
        raise InputError(
            f"hessian_examples={size} is more than the {num} examples the Hessian is computed "
            f"over; give at most {num}, or drop hessian_examples to use them all"
        )
    ok = isinstance(data, tuple | list) and len(data) >= 2
    ok = ok and all(isinstance(t, Tensor) for t in data)
    if not ok or data[1].dim() != 1 or data[1].is_floating_point():
        raise InputError(
            "hessian_examples needs the data as an (inputs, targets, ...) tuple of tensors with "
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
