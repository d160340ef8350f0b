"""Unlearning baselines without influence: fine-tuning and gradient ascent at a fixed budget.

Both train a deep copy of the model with ``torch.optim`` (Adam or SGD) on mini-batches drawn
with a seeded generator, in the model's current mode (eval mode: dropout off, batch norm uses its
running statistics — the same function the influence methods differentiate):

- **finetune** minimizes the objective's mean loss on the retained (or corrected) data;
- **gradient ascent** maximizes the objective's mean loss on the forget data (the loss as the
  objective defines it, regularizer included).

The budget is counted in example-gradient evaluations (:mod:`geninf.edit.record`): a step on b
examples costs b, and the last batch of tensor data is cut so the budget is spent exactly. With
the ``paper`` schedule the run is scored on validation at ``checkpoints`` evenly spaced steps and
the best checkpoint is returned; otherwise the last model is. If a step makes a parameter
non-finite (gradient ascent can diverge), the run stops at the last finite parameters.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._seed import check_seed
from ..errors import InputError
from ..objective import as_objective, check_loss
from .datautil import training_batches, truncate
from .options import EditOptions
from .record import ComputeUsed
from .validation import ValidationScore, evaluate_score

__all__ = ["BaselineOutcome", "run_baseline"]


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
    work = copy.deepcopy(model)
    forward = _ModuleForward(work)
    params = list(forward.params.values())
    if not params:
        raise InputError("the model has no trainable parameter to fine-tune")
    obj = as_objective(objective)
    optim = _optimizer(params, opts)
    generator = torch.Generator().manual_seed(check_seed(seed))
    batches = training_batches(data, opts.train_batch_size, generator, "training data")
    interval = _checkpoint_interval(budget, opts) if score is not None else 0
    best: tuple[float, int, list[Tensor]] | None = None
    checkpoints: dict[str, list[float]] = {"step": [], "score": []}
    used, steps, diverged = 0, 0, False
    while used < budget:
        batch, can_cut = next(batches)
        n = int(obj.num_examples(batch))
        if used + n > budget:
            if not can_cut:
                if steps == 0:
                    raise InputError(
                        f"budget={budget} example gradients is smaller than one batch of {n} "
                        "examples; raise budget or use smaller batches"
                    )
                break
            batch, n = truncate(batch, budget - used), budget - used
        snapshot = [p.detach().clone() for p in params]
        if not _step(optim, obj, forward, batch, ascent, params):
            _restore(params, snapshot)
            diverged = True
            break
        used, steps = used + n, steps + 1
        compute.add_gradient(n)
        compute.optimizer_steps += 1
        if interval and (steps % interval == 0 or used >= budget):
            best = _checkpoint(work, params, steps, score, compute, checkpoints, best)
    if score is not None and (best is None or checkpoints["step"][-1] != steps) and steps > 0:
        best = _checkpoint(work, params, steps, score, compute, checkpoints, best)
    kept = steps
    if best is not None:
        kept = best[1]
        _restore(params, best[2])
    return BaselineOutcome(
        model=work,
        steps=kept,
        total_steps=steps,
        best_score=best[0] if best is not None else None,
        scores=checkpoints if score is not None else None,
        diverged=diverged,
        extra={"examples_used": used},
    )


def _optimizer(params: list[Tensor], opts: EditOptions) -> torch.optim.Optimizer:
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr)
    return torch.optim.Adam(params, lr=opts.lr)


def _checkpoint_interval(budget: int, opts: EditOptions) -> int:
    total_steps = math.ceil(budget / opts.train_batch_size)
    return max(1, math.ceil(total_steps / opts.checkpoints))


def _step(optim, obj, forward, batch, ascent: bool, params: list[Tensor]) -> bool:
    """One optimizer step; False when the loss or the new parameters are not finite."""
    optim.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = obj.loss(forward, batch)
        if not torch.isfinite(loss.detach()):
            return False
        loss = check_loss(loss, "baseline step")
        (-loss if ascent else loss).backward()
    optim.step()
    return all(bool(torch.isfinite(p).all()) for p in params)


def _restore(params: list[Tensor], values: list[Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)


def _checkpoint(work, params, steps, score, compute, checkpoints, best):
    value = evaluate_score(score, work)
    compute.validation_evaluations += 1
    checkpoints["step"].append(steps)
    checkpoints["score"].append(value)
    if best is None or value > best[0]:
        return (value, steps, [p.detach().clone() for p in params])
    return best
