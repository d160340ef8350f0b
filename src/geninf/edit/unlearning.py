"""Machine-unlearning baselines that see the forget set U and the retained set R.

Each trains a deep copy of the model with the baselines' optimizer (``optimizer``, ``lr`` and
``train_batch_size`` of :class:`~geninf.edit.options.EditOptions`) on mini-batches drawn with a
generator seeded by ``seed``, in the model's current mode, until the next step would exceed the
budget of example-gradient evaluations (:mod:`geninf.edit.record`: a step on b examples costs b).
L(B) is the objective's mean loss on a batch B (regularizer included), f₀ the original model and
f the copy being trained. With the ``paper`` schedule the run is scored on validation at evenly
spaced checkpoints and the best checkpoint is returned, as for the other baselines.

- **random_label** (Golatkar et al. 2020; "RL" in the SalUn paper): every forget example gets a
  wrong label ỹ drawn once, uniformly among the other classes; each step minimizes
  ½ [L(B_U, ỹ) + L(B_R)] on a forget batch and a retained batch (the two halves weigh the same,
  however small U is). Cost per step |B_U| + |B_R|.
- **salun** (Fan et al. 2024): random_label, with every gradient multiplied by the saliency mask
  m = 1[|∇_θ L(U; θ₀)| ≥ q], q chosen so that m keeps the ``SALUN_FRACTION`` (half) of all
  trainable elements with the largest forget-loss gradient (one threshold over the whole model,
  as in the paper). The mask costs one gradient over U (r example gradients) from the budget.
- **l1_sparse** (Jia et al. 2023): each step minimizes L(B_R) + γ_t ‖θ‖₁ with the linearly
  decaying γ_t = ``L1_STRENGTH`` · (1 − t/T), t the step and T = ⌊budget / batch size⌋.
- **scrub** (Kurmanji et al. 2023): with KL_τ(B) = τ² · mean over B of
  KL(softmax(f₀(x)/τ) ‖ softmax(f(x)/τ)) (τ = ``SCRUB_TEMPERATURE``), a *max* step minimizes
  −KL_τ(B_U) and a *min* step minimizes L(B_R) + ``SCRUB_ALPHA`` · KL_τ(B_R). Max and min steps
  alternate while less than ``SCRUB_MAX_FRACTION`` of the budget is spent, then only min steps
  run. The teacher's forward passes are counted in ``forward_examples``, not in the budget.

random_label and salun need the forget data as an ``(inputs, targets)`` tuple of tensors with
integer class targets; scrub needs an objective with ``outputs(forward, batch)`` (e.g.
:class:`~geninf.objective.SupervisedObjective`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._seed import check_seed
from ..data import as_batches
from ..errors import DataError, InputError
from ..objective import Objective, as_objective, check_loss
from .baselines import (
    BaselineOutcome,
    _checkpoint,
    _checkpoint_interval,
    _ModuleForward,
    _optimizer,
    _restore,
)
from .datautil import is_tensor_tuple, training_batches
from .options import EditOptions
from .record import ComputeUsed, EditMethod
from .validation import ValidationScore

__all__ = [
    "L1_STRENGTH",
    "SALUN_FRACTION",
    "SCRUB_ALPHA",
    "SCRUB_MAX_FRACTION",
    "SCRUB_TEMPERATURE",
    "RemovalData",
    "random_wrong_labels",
    "run_unlearning",
    "saliency_mask",
]

#: γ of l1_sparse at the first step (the penalty γ_t‖θ‖₁ decays linearly to 0)
L1_STRENGTH = 5e-4
#: fraction of all trainable elements the SalUn mask keeps (largest |forget-loss gradient|)
SALUN_FRACTION = 0.5
#: weight of the distillation term of SCRUB's min steps
SCRUB_ALPHA = 0.5
#: SCRUB's softmax temperature τ
SCRUB_TEMPERATURE = 4.0
#: fraction of the budget during which SCRUB alternates max and min steps
SCRUB_MAX_FRACTION = 0.5


@dataclass(frozen=True)
class RemovalData:
    """The two data sets of a removal: ``retain`` (R) and ``forget`` (U)."""

    retain: Any
    forget: Any


def random_wrong_labels(targets: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A label ỹ ≠ y for every target y, uniform over the other ``num_classes − 1`` classes.

    Raises:
        InputError: fewer than two classes.
    """
    if num_classes < 2:
        raise InputError(f"random labels need at least 2 classes, the model has {num_classes}")
    shift = torch.randint(1, num_classes, targets.shape, generator=generator)
    return (targets.cpu() + shift) % num_classes


def saliency_mask(
    forward: Any, objective: Objective, data: Any, fraction: float, batch_size: int | None
) -> tuple[list[Tensor], int]:
    """SalUn's mask: 1 on the ``fraction`` of all elements with the largest |∇_θ L(data)|.

    The gradient is that of the mean loss over ``data`` (batches weighted by their size). Ties at
    the threshold are broken by position (``torch.topk``).

    Returns:
        ``(masks in forward.params order (bool, parameter shapes), examples used)``.
    """
    params = list(forward.params.values())
    sums = [torch.zeros_like(p) for p in params]
    total = 0
    for batch in as_batches(data, batch_size, name="forget_data"):
        n = int(objective.num_examples(batch))
        with torch.enable_grad():
            loss = check_loss(objective.loss(forward, batch), "saliency mask")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        for s, g in zip(sums, grads, strict=True):
            if g is not None:
                s.add_(g.detach(), alpha=n)
        total += n
    flat = torch.cat([s.abs().reshape(-1) for s in sums])
    keep = max(1, math.ceil(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, keep).indices] = True
    masks, lo = [], 0
    for p in params:
        masks.append(chosen[lo : lo + p.numel()].view(p.shape))
        lo += p.numel()
    return masks, total


class _Plan:
    """Draws the batches of each step of one method; ``next(used, t)`` → (cost, loss thunk)."""

    def __init__(self, method, model, forward, obj, data, opts, generator, compute, budget):
        self.method, self.forward, self.obj, self.compute = method, forward, obj, compute
        self.budget, self.bs = budget, opts.train_batch_size
        self.teacher = _ModuleForward(model)
        self.mask: list[Tensor] | None = None
        self.setup_cost = 0
        forget = data.forget
        if method in (EditMethod.RANDOM_LABEL, EditMethod.SALUN):
            forget = _relabelled(model, data.forget, generator)
        if method is EditMethod.SALUN:
            self.mask, self.setup_cost = saliency_mask(
                forward, obj, data.forget, SALUN_FRACTION, opts.batch_size
            )
            compute.add_gradient(self.setup_cost)
        self.retain = training_batches(data.retain, self.bs, generator, "retain_data")
        self.forget = training_batches(forget, self.bs, generator, "forget_data")

    def next(self, used: int, t: int) -> tuple[int, Callable[[], Tensor]]:
        obj, fw = self.obj, self.forward
        if self.method is EditMethod.L1_SPARSE:
            rb = _draw(self.retain)
            total = max(1, self.budget // self.bs)
            gamma = L1_STRENGTH * max(0.0, 1.0 - t / total)
            return _n(obj, rb), lambda: obj.loss(fw, rb) + gamma * _l1(fw.params)
        if self.method is EditMethod.SCRUB:
            if used < SCRUB_MAX_FRACTION * self.budget and t % 2 == 0:
                fb = _draw(self.forget)
                return _n(obj, fb), lambda: -self._distill(fb)
            rb = _draw(self.retain)
            return _n(obj, rb), lambda: obj.loss(fw, rb) + SCRUB_ALPHA * self._distill(rb)
        fb, rb = _draw(self.forget), _draw(self.retain)
        return _n(obj, fb) + _n(obj, rb), lambda: 0.5 * (obj.loss(fw, fb) + obj.loss(fw, rb))

    def _distill(self, batch: Any) -> Tensor:
        """KL_τ(batch) between the original model (teacher) and the copy (student)."""
        outputs = getattr(self.obj, "outputs", None)
        if outputs is None:
            raise InputError(
                "method='scrub' distills the model's outputs: use an objective with "
                "outputs(forward, batch), e.g. geninf.objective.SupervisedObjective"
            )
        with torch.no_grad():
            teacher = outputs(self.teacher, batch)
        self.compute.forward_examples += _n(self.obj, batch)
        student = outputs(self.forward, batch)
        tau = SCRUB_TEMPERATURE
        log_s = F.log_softmax(student / tau, dim=-1)
        return F.kl_div(log_s, F.softmax(teacher / tau, dim=-1), reduction="batchmean") * tau**2


def _draw(batches: Iterator[tuple[Any, bool]]) -> Any:
    return next(batches)[0]


def _n(obj: Objective, batch: Any) -> int:
    return int(obj.num_examples(batch))


def _l1(params: dict[str, Tensor]) -> Tensor:
    return sum(p.abs().sum() for p in params.values())  # type: ignore[return-value]


def _relabelled(model: nn.Module, forget: Any, generator: torch.Generator) -> tuple:
    """The forget data with seeded random wrong labels (needs class targets)."""
    ok = is_tensor_tuple(forget) and len(forget) >= 2 and forget[1].dim() == 1
    if not ok or forget[1].is_floating_point():
        raise DataError(
            "random labels replace class targets: pass forget_data as an (inputs, targets) "
            "tuple of tensors with integer targets of shape [N]"
        )
    with torch.no_grad():
        classes = int(model(forget[0][:1]).shape[-1])
    labels = random_wrong_labels(forget[1], classes, generator).to(forget[1].device)
    return (forget[0], labels, *forget[2:])


def run_unlearning(
    model: nn.Module,
    objective: Any,
    data: RemovalData,
    *,
    method: EditMethod | str,
    budget: int,
    opts: EditOptions,
    seed: int,
    compute: ComputeUsed,
    score: ValidationScore | None = None,
) -> BaselineOutcome:
    """Spend at most ``budget`` example gradients of ``method`` (see the module docstring).

    Raises:
        InputError: a method that is not one of this module's, a model without trainable
            parameters, a seed outside torch's range, or a budget smaller than the first step.
        DataError: random_label/salun with forget data that has no integer class targets.
    """
    method = EditMethod.parse(method)
    if not method.is_unlearning:
        raise InputError(
            f"run_unlearning runs random_label, l1_sparse, scrub or salun, not {method.value!r}"
        )
    work = copy.deepcopy(model)
    forward = _ModuleForward(work)
    params = list(forward.params.values())
    if not params:
        raise InputError("the model has no trainable parameter to fine-tune")
    generator = torch.Generator().manual_seed(check_seed(seed))
    obj = as_objective(objective)
    plan = _Plan(method, model, forward, obj, data, opts, generator, compute, budget)
    run = _Run(work, params, score, compute, plan.setup_cost)
    interval = _checkpoint_interval(budget, opts) if score is not None else 0
    optim = _optimizer(params, opts)
    while True:
        cost, loss = plan.next(run.used, run.steps)
        if run.used + cost > budget:
            if run.steps == 0:
                raise InputError(
                    f"budget={budget} example gradients is smaller than the first step of "
                    f"{method.value} ({run.used} + {cost}); raise budget or use smaller batches"
                )
            break
        snapshot = [p.detach().clone() for p in params]
        if not _take_step(optim, loss, params, plan.mask):
            _restore(params, snapshot)
            run.diverged = True
            break
        run.advance(cost)
        if interval and run.steps % interval == 0:
            run.checkpoint()
    return run.finish({"examples_used": run.used, "method": method.value})


class _Run:
    """The state of one run: spent examples, steps, validation checkpoints and the best one."""

    def __init__(self, work: nn.Module, params: list[Tensor], score, compute, spent: int):
        self.work, self.params, self.score, self.compute = work, params, score, compute
        self.used = spent  # the saliency mask, if any
        self.steps, self.diverged = 0, False
        self.best: tuple[float, int, list[Tensor]] | None = None
        self.checkpoints: dict[str, list[float]] = {"step": [], "score": []}

    def advance(self, cost: int) -> None:
        self.used, self.steps = self.used + cost, self.steps + 1
        self.compute.add_gradient(cost)
        self.compute.optimizer_steps += 1

    def checkpoint(self) -> None:
        self.best = _checkpoint(
            self.work,
            self.params,
            self.steps,
            self.score,
            self.compute,
            self.checkpoints,
            self.best,
        )

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
        if not torch.isfinite(loss.detach()):
            return False
        check_loss(loss, "unlearning step").backward()
    if mask is not None:
        for p, m in zip(params, mask, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)
    optim.step()
    return all(bool(torch.isfinite(p).all()) for p in params)
