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
  m = 1[|∇_θ L(U; θ₀)| ≥ q], q chosen so that m keeps the fraction ``salun_fraction`` of all
  trainable elements with the largest forget-loss gradient (one threshold over the whole model,
  as in the paper). The mask costs one gradient over U (r example gradients) from the budget.
- **l1_sparse** (Jia et al. 2023): each step minimizes L(B_R) + γ_t ‖θ‖₁ with the linearly
  decaying γ_t = ``l1_strength`` · (1 − t/T), t the step and T = ⌊budget / batch size⌋.
- **scrub** (Kurmanji et al. 2023): with KL_τ(B) = τ² · mean over B of
  KL(softmax(f₀(x)/τ) ‖ softmax(f(x)/τ)) (τ = ``scrub_temperature``), a *max* step minimizes
  −KL_τ(B_U) and a *min* step minimizes L(B_R) + ``scrub_alpha`` · KL_τ(B_R). Max and min steps
  alternate while less than the fraction ``scrub_max_fraction`` of the budget is spent, then
  only min steps run. The teacher's forward passes are counted in ``forward_examples``, not in
  the budget.

The hyper-parameters in ``code`` above are the keys of the option ``unlearning_options`` (a dict;
:data:`UNLEARNING_DEFAULTS` holds the values used for a key not given) and are checked by
:func:`check_unlearning_options`. The values a run used, with the optimizer's ``lr``, are in the
edit record (``record.extra["hyperparameters"]``).

random_label and salun need the forget data as an ``(inputs, targets)`` tuple of tensors with
integer class targets; scrub needs an objective with ``outputs(forward, batch)`` (e.g.
:class:`~geninf.objective.SupervisedObjective`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import as_batches
from ..errors import DataError, InputError
from ..objective import Objective, as_objective, check_loss
from .baselines import (
    BaselineOutcome,
    _ModuleForward,
    optimizer_settings,
    train_for_budget,
    trainable_copy,
)
from .datautil import is_tensor_tuple, training_batches
from .options import EditOptions
from .record import ComputeUsed, EditMethod
from .validation import ValidationScore

__all__ = [
    "UNLEARNING_DEFAULTS",
    "RemovalData",
    "check_unlearning_options",
    "random_wrong_labels",
    "run_unlearning",
    "saliency_mask",
    "unlearning_settings",
]

#: the hyper-parameters of the unlearning baselines (module docstring) and their defaults:
#: ``l1_strength`` γ of l1_sparse at the first step (> 0; the penalty decays linearly to 0);
#: ``salun_fraction`` the share of all trainable elements SalUn's mask keeps (0 < f ≤ 1);
#: ``scrub_alpha`` the weight of the distillation term of SCRUB's min steps (≥ 0);
#: ``scrub_temperature`` SCRUB's softmax temperature τ (> 0);
#: ``scrub_max_fraction`` the share of the budget during which SCRUB alternates max and min
#: steps (0 ≤ f ≤ 1)
UNLEARNING_DEFAULTS: dict[str, float] = {
    "l1_strength": 5e-4,
    "salun_fraction": 0.5,
    "scrub_alpha": 0.5,
    "scrub_temperature": 4.0,
    "scrub_max_fraction": 0.5,
}
# (lower bound, lower bound allowed, upper bound or None) of each hyper-parameter
_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "l1_strength": (0.0, False, None),
    "salun_fraction": (0.0, False, 1.0),
    "scrub_alpha": (0.0, True, None),
    "scrub_temperature": (0.0, False, None),
    "scrub_max_fraction": (0.0, True, 1.0),
}


def check_unlearning_options(options: Any) -> dict[str, float]:
    """``options`` (a dict of some keys of :data:`UNLEARNING_DEFAULTS`) checked, as floats.

    Raises:
        InputError: not a dict, an unknown key, or a value that is not a finite number in its
            range (see :data:`UNLEARNING_DEFAULTS`).
    """
    if not isinstance(options, dict):
        raise InputError(
            f"unlearning_options must be a dict such as {{'scrub_alpha': 0.5}}, got "
            f"{type(options).__name__}"
        )
    unknown = sorted(map(str, set(options) - set(UNLEARNING_DEFAULTS)))
    if unknown:
        raise InputError(
            f"unknown unlearning option(s) {', '.join(unknown)}; the keys are: "
            f"{', '.join(UNLEARNING_DEFAULTS)}"
        )
    out = {}
    for key, v in options.items():
        lo, closed, hi = _RANGES[key]
        number = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
        if not number or v < lo or (v == lo and not closed) or (hi is not None and v > hi):
            span = f"{'[' if closed else '('}{lo:g}, {'∞)' if hi is None else f'{hi:g}]'}"
            raise InputError(f"unlearning option {key} must be a number in {span}, got {v!r}")
        out[key] = float(v)
    return out


# the hyper-parameters each method uses
_USES = {
    EditMethod.L1_SPARSE: ("l1_strength",),
    EditMethod.SALUN: ("salun_fraction",),
    EditMethod.SCRUB: ("scrub_alpha", "scrub_temperature", "scrub_max_fraction"),
}


def unlearning_settings(opts: EditOptions) -> dict[str, float]:
    """The hyper-parameters a run with ``opts`` uses: the defaults, updated by
    ``opts.unlearning_options``."""
    return {**UNLEARNING_DEFAULTS, **(opts.unlearning_options or {})}


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
    """Draws the batches of each step of one method; ``next(used, t, room)`` → (cost, loss
    thunk), ``room`` the budget left."""

    def __init__(self, method, model, forward, obj, data, opts, generator, compute, budget):
        self.method, self.forward, self.obj, self.compute = method, forward, obj, compute
        self.bs, self.hp, self.budget = opts.train_batch_size, unlearning_settings(opts), budget
        used = _USES.get(method, ())
        self.hyperparameters = {**optimizer_settings(opts), **{k: self.hp[k] for k in used}}
        self.teacher = _ModuleForward(model)
        self.mask: list[Tensor] | None = None
        self.setup_cost = 0
        forget = data.forget
        if method in (EditMethod.RANDOM_LABEL, EditMethod.SALUN):
            forget = _relabelled(model, data.forget, generator)
        if method is EditMethod.SALUN:
            self.mask, self.setup_cost = saliency_mask(
                forward, obj, data.forget, self.hp["salun_fraction"], opts.batch_size
            )
            compute.add_gradient(self.setup_cost)
        self.retain = training_batches(data.retain, self.bs, generator, "retain_data")
        self.forget = training_batches(forget, self.bs, generator, "forget_data")

    def next(self, used: int, t: int, room: int) -> tuple[int, Callable[[], Tensor]]:
        obj, fw = self.obj, self.forward
        if self.method is EditMethod.L1_SPARSE:
            rb = _draw(self.retain)
            total = max(1, self.budget // self.bs)
            gamma = self.hp["l1_strength"] * max(0.0, 1.0 - t / total)
            return _n(obj, rb), lambda: obj.loss(fw, rb) + gamma * _l1(fw.params)
        if self.method is EditMethod.SCRUB:
            if used < self.hp["scrub_max_fraction"] * self.budget and t % 2 == 0:
                fb = _draw(self.forget)
                return _n(obj, fb), lambda: -self._distill(fb)
            rb = _draw(self.retain)
            alpha = self.hp["scrub_alpha"]
            return _n(obj, rb), lambda: obj.loss(fw, rb) + alpha * self._distill(rb)
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
        tau = self.hp["scrub_temperature"]
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
    work, forward, generator = trainable_copy(model, seed)
    obj = as_objective(objective)
    plan = _Plan(method, model, forward, obj, data, opts, generator, compute, budget)
    return train_for_budget(work, plan, method.value, budget, opts, compute, score)
