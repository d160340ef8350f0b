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

from ..errors import InputError
from ..influence import removal_scale
from ..objective import Objective
from ..params.subset import ParameterSubset
from .methods import Plan, influence_plan, label_change_rhs, resolve_subset
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
) -> Plan:
    """The estimate of ``method`` for removing ``task.forget`` (module docstring)."""
    J, info = resolve_subset(task.model, task.objective, task.forget, method, s, compute)
    if method is EditMethod.SECOND_ORDER:
        terms = second_order_terms(
            task.model,
            task.objective,
            task.retain,
            task.forget,
            num_retain=task.num_retain,
            num_forget=task.num_forget,
            solver=s.solver,
            damping=s.damping,
            batch_size=s.opts.batch_size,
            hvp_method=s.opts.hvp_method,
            solver_options=s.opts.solver_options,
            check_determinism=s.opts.check_determinism,
            progress=s.progress,
            compute=compute,
        )
        extra = {
            "p": terms.p,
            "first_term_norm": float(terms.first.norm()),
            "second_term_norm": float(terms.second.norm()),
        }
        everything = ParameterSubset.all(task.model)
        return Plan(everything, terms.total, 1.0, terms.diagnostics, info, extra)
    return influence_plan(
        task.model,
        task.objective,
        task.retain,
        task.num_retain,
        method=method,
        subset=J,
        info=info,
        scale=task.scale,
        solver=s.solver,
        damping=s.damping,
        opts=s.opts,
        compute=compute,
        progress=s.progress,
        target_data=task.forget,
        num_target=task.num_forget,
    )


def relabel_plan(
    task: RelabelTask, s: EditSettings, compute: ComputeUsed, method: EditMethod
) -> Plan:
    """The estimate of ``method`` for the label change (J selected from the old examples)."""
    J, info = resolve_subset(task.model, task.objective, task.old, method, s, compute)
    g = label_change_rhs(
        task.model, task.objective, task.old, task.new, task.num_train, s.opts, compute
    )
    return influence_plan(
        task.model,
        task.objective,
        task.data,
        task.num_train,
        method=method,
        subset=J,
        info=info,
        scale=1.0,
        solver=s.solver,
        damping=s.damping,
        opts=s.opts,
        compute=compute,
        progress=s.progress,
        gradient=g,
    )


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
