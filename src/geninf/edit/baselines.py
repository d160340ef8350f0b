"""Unlearning baselines without influence: fine-tuning and gradient ascent at a fixed budget.

Both train a deep copy of the model with ``torch.optim`` (Adam or SGD) on mini-batches drawn
with a seeded generator, in the model's current mode (eval mode: dropout off, batch norm uses its
running statistics — the same function the influence methods differentiate):

- **finetune** minimizes the objective's mean loss on the retained (or corrected) data;
- **gradient ascent** maximizes the objective's mean loss on the forget data (the loss as the
  objective defines it, regularizer included).

The budget is counted in example-gradient evaluations (:mod:`geninf.edit.record`): a step on b
examples costs b, and the last batch of tensor data is cut so the budget is spent exactly. With
the ``paper`` schedule the run is scored on validation at ``checkpoints`` evenly spaced points
of the budget and the best checkpoint is returned; otherwise the last model is. If a step makes a
parameter non-finite (gradient ascent can diverge), the run stops at the last finite parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .._seed import check_seed
from ..errors import InputError
from ..objective import as_objective, check_loss
from .datautil import training_batches, truncate
from .options import EditOptions
from .record import ComputeUsed
from .validation import ValidationScore, evaluate_score

__all__ = [
    "BaselineOutcome",
    "BudgetPlan",
    "optimizer_settings",
    "run_baseline",
    "train_for_budget",
    "trainable_copy",
]


class BudgetPlan(Protocol):
    """The steps of a budgeted baseline, for :func:`train_for_budget`.

    Attributes:
        mask: per-parameter multipliers of the gradients (None: none), e.g. SalUn's saliency.
        setup_cost: example gradients spent before the first step (e.g. on the mask).
        hyperparameters: the settings the run used, for its record.
    """

    mask: list[Tensor] | None
    setup_cost: int
    hyperparameters: dict[str, Any]

    def next(self, used: int, t: int, room: int) -> tuple[int, Callable[[], Tensor]]:
        """The cost (example gradients) of step ``t`` and a thunk of its loss, given ``used``
        spent so far and ``room`` left."""
        ...


@dataclass
class BaselineOutcome:
    """The trained copy and what the run did.

    Attributes:
        model: the returned copy.
        steps: optimizer steps taken before the returned model.
        total_steps: optimizer steps taken in all.
        best_score: validation score of the returned model (None without validation).
        scores: ``{"step": [...], "score": [...]}`` at the checkpoints (paper schedule).
        diverged: True when a step produced non-finite parameters.
    """

    model: nn.Module
    steps: int
    total_steps: int
    best_score: float | None = None
    scores: dict[str, list[float]] | None = None
    diverged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _ModuleForward:
    """The (trainable) model as an objective's ``forward``: real parameters, ordinary calls."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def run_baseline(
    model: nn.Module,
    objective: Any,
    data: Any,
    *,
    ascent: bool,
    budget: int,
    opts: EditOptions,
    seed: int,
    compute: ComputeUsed,
    score: ValidationScore | None = None,
) -> BaselineOutcome:
    """Spend ``budget`` example gradients of (ascent or descent) steps on ``data``.

    Raises:
        InputError: a model without trainable parameters, a seed outside torch's range, or a
            budget smaller than one batch.
    """
    work, forward, generator = trainable_copy(model, seed)
    plan = _DataPlan(as_objective(objective), forward, data, opts, generator, ascent)
    name = "gradient_ascent" if ascent else "finetune"
    return train_for_budget(work, plan, name, budget, opts, compute, score)


def trainable_copy(model: nn.Module, seed: int) -> tuple[nn.Module, _ModuleForward, Any]:
    """A deep copy of ``model``, its forward over its trainable parameters and a generator
    seeded with ``seed``.

    Raises:
        InputError: a model without trainable parameters or a seed outside torch's range.
    """
    work = copy.deepcopy(model)
    forward = _ModuleForward(work)
    if not forward.params:
        raise InputError("the model has no trainable parameter to fine-tune")
    return work, forward, torch.Generator().manual_seed(check_seed(seed))


class _DataPlan:
    """Descent (or ascent) steps on the mini-batches of one data set; the last tensor batch is
    cut so the budget is spent exactly."""

    mask: list[Tensor] | None = None
    setup_cost = 0

    def __init__(self, obj, forward, data, opts: EditOptions, generator, ascent: bool):
        self.obj, self.forward, self.sign = obj, forward, -1.0 if ascent else 1.0
        self.batches = training_batches(data, opts.train_batch_size, generator, "training data")
        self.hyperparameters = optimizer_settings(opts)

    def next(self, used: int, t: int, room: int) -> tuple[int, Callable[[], Tensor]]:
        batch, can_cut = next(self.batches)
        n = int(self.obj.num_examples(batch))
        if n > room and can_cut:
            batch, n = truncate(batch, room), room
        return n, lambda: self.sign * self.obj.loss(self.forward, batch)


def optimizer_settings(opts: EditOptions) -> dict[str, Any]:
    """The optimizer settings of a baseline run, for its record."""
    return {"optimizer": opts.optimizer, "lr": opts.lr, "train_batch_size": opts.train_batch_size}


def train_for_budget(
    work: nn.Module,
    plan: BudgetPlan,
    name: str,
    budget: int,
    opts: EditOptions,
    compute: ComputeUsed,
    score: ValidationScore | None,
) -> BaselineOutcome:
    """Take the steps of ``plan`` on ``work`` until the next one would exceed ``budget``.

    ``plan.next(used, steps, room)`` gives the cost of the next step (example gradients) and a
    thunk of its loss; ``plan.mask`` (or None) multiplies the gradients; ``plan.setup_cost`` was
    spent before the first step. With ``score`` the run is scored at evenly spaced checkpoints
    (``opts.checkpoints`` of them over the budget left after the set-up, spaced by example
    gradients) and the best one is returned.

    Raises:
        InputError: a budget smaller than the first step.
    """
    run = _Run(work, score, compute, plan.setup_cost)
    every = mark = 0  # example gradients between checkpoints; the next checkpoint's count
    optim = _optimizer(run.params, opts)
    while run.used < budget:
        cost, loss = plan.next(run.used, run.steps, budget - run.used)
        if score is not None and not every:
            every = _checkpoint_spacing(budget - run.used, cost, opts.checkpoints)
            mark = run.used + every
        if run.used + cost > budget:
            if run.steps == 0:
                raise InputError(
                    f"budget={budget} example gradients is smaller than the first step of "
                    f"{name} ({run.used} + {cost}); raise budget or use smaller batches"
                )
            break
        snapshot = [p.detach().clone() for p in run.params]
        if not _take_step(optim, loss, run.params, plan.mask):
            _restore(run.params, snapshot)
            run.diverged = True
            break
        run.advance(cost)
        if every and run.used >= mark:
            run.checkpoint()
            while mark <= run.used:
                mark += every
    return run.finish({"examples_used": run.used, "hyperparameters": plan.hyperparameters})


class _Run:
    """The state of one run: spent examples, steps, validation checkpoints and the best one."""

    def __init__(self, work: nn.Module, score, compute: ComputeUsed, spent: int):
        self.work, self.score, self.compute = work, score, compute
        self.params = [p for p in work.parameters() if p.requires_grad]
        self.used = spent  # e.g. SalUn's saliency mask
        self.steps, self.diverged = 0, False
        self.best: tuple[float, int, list[Tensor]] | None = None
        self.checkpoints: dict[str, list[float]] = {"step": [], "score": []}

    def advance(self, cost: int) -> None:
        self.used, self.steps = self.used + cost, self.steps + 1
        self.compute.add_gradient(cost)
        self.compute.optimizer_steps += 1

    def checkpoint(self) -> None:
        value = evaluate_score(self.score, self.work)
        self.compute.validation_evaluations += 1
        self.checkpoints["step"].append(self.steps)
        self.checkpoints["score"].append(value)
        if self.best is None or value > self.best[0]:
            self.best = (value, self.steps, [p.detach().clone() for p in self.params])

    def finish(self, extra: dict[str, Any]) -> BaselineOutcome:
        """The last model, or with validation the best checkpoint (the last one scored too)."""
        done = self.checkpoints["step"]
        if self.score is not None and self.steps > 0 and (not done or done[-1] != self.steps):
            self.checkpoint()
        kept = self.steps
        if self.best is not None:
            kept = self.best[1]
            _restore(self.params, self.best[2])
        return BaselineOutcome(
            model=self.work,
            steps=kept,
            total_steps=self.steps,
            best_score=self.best[0] if self.best is not None else None,
            scores=self.checkpoints if self.score is not None else None,
            diverged=self.diverged,
            extra=extra,
        )


def _optimizer(params: list[Tensor], opts: EditOptions) -> torch.optim.Optimizer:
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr)
    return torch.optim.Adam(params, lr=opts.lr)


def _checkpoint_spacing(room: int, step_cost: int, checkpoints: int) -> int:
    """Example gradients between checkpoints: ``checkpoints`` of them over ``room``, in whole
    steps of the first step's cost (so a run of equal steps is scored every k-th step; a
    random-label or SalUn step spends a forget and a retain batch, a SCRUB step either)."""
    step_cost = max(1, step_cost)
    total_steps = math.ceil(room / step_cost)
    return max(1, math.ceil(total_steps / checkpoints)) * step_cost


def _take_step(
    optim: torch.optim.Optimizer,
    loss_fn: Callable[[], Tensor],
    params: list[Tensor],
    mask: list[Tensor] | None,
) -> bool:
    """One optimizer step on ``loss_fn()`` (gradients masked by ``mask``); False when the loss or
    the new parameters are not finite."""
    optim.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = loss_fn()
        if isinstance(loss, Tensor) and loss.dim() == 0 and not torch.isfinite(loss.detach()):
            return False
        check_loss(loss, "baseline step").backward()
    if mask is not None:
        for p, m in zip(params, mask, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)
    optim.step()
    return all(bool(torch.isfinite(p).all()) for p in params)


def _restore(params: list[Tensor], values: list[Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
