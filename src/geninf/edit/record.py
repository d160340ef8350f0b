"""What an edit returns: the edited copy and a record of how it was made.

Compute accounting (the one place it is defined). Cost is counted in **example-gradient
evaluations**, the cost of one example's loss gradient:

- a gradient of the mean loss over N examples costs N;
- one Hessian-vector product over N examples costs **2·N** (a forward-over-backward or double
  backward pass costs about two gradient passes; measured 2–4× on the project's models);
- one optimizer step of a baseline on a mini-batch of b examples costs b.

Forward-only passes (validation scores, output statistics of a selection criterion) are counted
apart, in ``validation_evaluations`` and ``forward_examples``, and are not part of the budget.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from torch import Tensor, nn

from .._choices import parse_choice

__all__ = [
    "HVP_COST",
    "ComputeUsed",
    "EditMethod",
    "EditRecord",
    "EditResult",
    "Schedule",
    "json_safe",
]

#: example-gradient evaluations charged per example for one Hessian-vector product
HVP_COST = 2


class EditMethod(str, Enum):
    """How an edit is computed (method.md §2–4).

    Members:
        GIF: θ_J ← θ_J + scale·x, x = argmin ‖H_{:,J} x − g‖ (generalized influence, subset J).
        FREEZING: x = H_JJ⁻¹ g_J (parameters outside J treated as constants).
        PROJECTING: x = [H⁻¹ g]_J (full solution, then keep J).
        ORIGINAL: x = H⁻¹ g on every parameter (Koh & Liang).
        SECOND_ORDER: Basu, You & Feizi (2020) group influence I¹ + I″, every parameter
            (removal only).
        FINETUNE: optimizer steps on the retained (or corrected) data at a matched compute budget.
        GRADIENT_ASCENT: optimizer steps that increase the forget data's loss, same budget
            (removal only).
        RANDOM_LABEL: fine-tuning on the forget data with seeded random wrong labels, paired
            with retained batches (Golatkar et al. 2020; SalUn's "RL"), same budget (removal only).
        L1_SPARSE: fine-tuning on the retained data with a decaying ℓ1 penalty γ_t‖θ‖₁ (Jia et
            al. 2023, "model sparsity can simplify machine unlearning"), same budget (removal
            only).
        SCRUB: teacher–student distillation (Kurmanji et al. 2023): steps that push the
            student's predictions on the forget data away from the original model's and steps
            that keep them on the retained data, same budget (removal only).
        SALUN: random labeling restricted to the weights of largest forget-loss gradient
            (saliency mask; Fan et al. 2024, "SalUn"), same budget (removal only).

    The four unlearning baselines are defined in :mod:`geninf.edit.unlearning`.
    """

    GIF = "gif"
    FREEZING = "freezing"
    PROJECTING = "projecting"
    ORIGINAL = "original"
    SECOND_ORDER = "second_order"
    FINETUNE = "finetune"
    GRADIENT_ASCENT = "gradient_ascent"
    RANDOM_LABEL = "random_label"
    L1_SPARSE = "l1_sparse"
    SCRUB = "scrub"
    SALUN = "salun"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any) -> EditMethod:
        """The member for ``value`` (a member or its string, any case)."""
        return parse_choice(cls, value, "edit method")

    @property
    def is_influence(self) -> bool:
        """True for the four estimators of :func:`geninf.influence.influence`."""
        return self in (
            EditMethod.GIF,
            EditMethod.FREEZING,
            EditMethod.PROJECTING,
            EditMethod.ORIGINAL,
        )

    @property
    def uses_subset(self) -> bool:
        """True when the method moves a parameter subset J (given or selected)."""
        return self in (EditMethod.GIF, EditMethod.FREEZING, EditMethod.PROJECTING)

    @property
    def is_baseline(self) -> bool:
        """True for the optimizer-based baselines, which spend a budget of example gradients."""
        return self in (EditMethod.FINETUNE, EditMethod.GRADIENT_ASCENT) or self.is_unlearning

    @property
    def is_unlearning(self) -> bool:
        """True for the baselines of :mod:`geninf.edit.unlearning` (given both the forget and
        the retained data)."""
        return self in (
            EditMethod.RANDOM_LABEL,
            EditMethod.L1_SPARSE,
            EditMethod.SCRUB,
            EditMethod.SALUN,
        )

    @property
    def removal_only(self) -> bool:
        """True for the methods defined for removal only (not for a label change)."""
        return self in (EditMethod.SECOND_ORDER, EditMethod.GRADIENT_ASCENT) or self.is_unlearning


class Schedule(str, Enum):
    """How an estimated direction x is applied.

    Members:
        NEWTON: one step with the theoretical scale — r/(m − r) for removal
            (:func:`geninf.influence.removal_scale`), 1 for a label change and for the
            second-order estimate. Baselines spend their whole budget and return the last model.
        PAPER: the authors' procedure — normalize x to norm γ, add it k = 1..max_steps times, keep
            the (γ, k) with the best validation score; γ from the grid ``gammas``. Baselines keep
            the checkpoint with the best validation score. Needs ``validation``. Kept to
            reproduce the paper; ``search`` is the default.
        SEARCH: a bracketing search over multipliers t of the Newton update t·scale·x, on the
            validation score (:mod:`geninf.edit.search`); it warns when the chosen step is on the
            edge of what it could search. Baselines keep the best checkpoint. Needs
            ``validation``.
        AUTO: ``search`` when a validation score is given, else ``newton`` (the default).
    """

    NEWTON = "newton"
    PAPER = "paper"
    SEARCH = "search"
    AUTO = "auto"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any) -> Schedule:
        """The member for ``value`` (a member or its string, any case)."""
        return parse_choice(cls, value, "schedule")


@dataclass
class ComputeUsed:
    """Compute an edit spent (see the module docstring for the unit).

    Attributes:
        hvps: Hessian-vector products.
        hvp_example_gradients: their cost, Σ 2·N over products on N examples.
        gradient_passes: gradient computations (full-data passes; one per baseline step).
        gradient_examples: examples whose gradient was computed (a pass over N examples adds N).
        optimizer_steps: baseline optimizer steps.
        forward_examples: examples evaluated forward only (selection by outputs).
        validation_evaluations: calls of the validation score.
        budget: the example-gradient budget a baseline was given (None for other methods).
        budget_source: ``"given"`` or ``"gif"`` (measured from a GIF run at the same settings).
    """

    hvps: int = 0
    hvp_example_gradients: int = 0
    gradient_passes: int = 0
    gradient_examples: int = 0
    optimizer_steps: int = 0
    forward_examples: int = 0
    validation_evaluations: int = 0
    budget: int | None = None
    budget_source: str | None = None

    @property
    def example_gradients(self) -> int:
        """Total cost in example-gradient evaluations (HVPs and gradients)."""
        return self.hvp_example_gradients + self.gradient_examples

    def add_hvps(self, count: int, num_examples: int) -> None:
        """Charge ``count`` Hessian-vector products over ``num_examples`` examples."""
        self.hvps += int(count)
        self.hvp_example_gradients += HVP_COST * int(count) * int(num_examples)

    def add_gradient(self, num_examples: int, passes: int = 1) -> None:
        """Charge ``passes`` gradient computations over ``num_examples`` examples in all."""
        self.gradient_passes += int(passes)
        self.gradient_examples += int(num_examples)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["example_gradients"] = self.example_gradients
        return out


@dataclass
class EditRecord:
    """Everything needed to understand and reproduce an edit (``to_dict()`` is JSON-ready).

    Attributes:
        operation: ``"remove"`` or ``"relabel"``.
        method: an :class:`EditMethod` value.
        schedule: a :class:`Schedule` value.
        seed: the seed of every random choice (selection, baseline batch order).
        num_train: m, training examples (retained + removed, or the relabeled data set).
        num_edited: removed examples (r) or changed labels.
        scale: the theoretical scale of the Newton update (r/(m − r), or 1); None for baselines.
        subset: the moved parameters: ``selected``, ``total``, ``fraction``, ``per_tensor``
            (selected/total per parameter tensor), ``source`` and the selection summary.
        solver: the solver diagnostics (``{"first": ..., "second": ...}`` for second order).
        steps: the chosen step count k (paper schedule) or baseline optimizer steps kept.
        gamma: the chosen step norm γ (paper schedule).
        direction_norm: ‖x‖ of the estimated direction (before scale or normalization).
        update_norm: ‖Δθ‖ actually applied.
        validation: what the validation score is computed on (None without validation).
        validation_score: the score of the returned model (when validation was given).
        schedule_scores: paper schedule — the score of every step, per γ (keys are γ as text);
            baselines — the score of every checkpoint.
        compute: a :class:`ComputeUsed`.
        damping: how λ was set — ``spec`` (``auto``, ``rel:ρ`` or λ), the curvature ``scale``
            estimate ‖H‖₂ and its ``scale_products``, the relative ``path`` and absolute
            ``lambdas`` tried with their validation ``scores``, the ``chosen`` λ and
            ``chosen_relative`` ρ (None when λ was absolute), and ``saturated``: ``"upper"`` /
            ``"lower"`` when the chosen ρ is the largest / smallest of the path and strictly
            beats its neighbour (a wider ``damping_path`` might do better; no warning is
            issued: in the robustness suite an edge was chosen in about a quarter of the edits,
            mostly ρ = 1, where more damping only turns the direction towards the gradient).
        step_search: the ``search`` schedule's multipliers, scores, choice, evaluations and
            ``saturated`` edge (None for other schedules).
        baseline_score: the unedited model's validation score (None without validation).
        improved: whether ``validation_score`` beats ``baseline_score`` (None without
            validation); False also issues an :class:`~geninf.errors.EditWarning`.
        wall_time: seconds for the whole edit.
        options: every argument and option that produced the edit.
        extra: method-specific details (second-order term norms, divergence, ...).
    """

    operation: str
    method: str
    schedule: str
    seed: int
    num_train: int
    num_edited: int
    scale: float | None = None
    subset: dict[str, Any] | None = None
    solver: dict[str, Any] | None = None
    steps: int | None = None
    gamma: float | None = None
    direction_norm: float | None = None
    update_norm: float = 0.0
    validation: dict[str, Any] | None = None
    validation_score: float | None = None
    schedule_scores: dict[str, list[float]] | None = None
    damping: dict[str, Any] | None = None
    step_search: dict[str, Any] | None = None
    baseline_score: float | None = None
    improved: bool | None = None
    compute: ComputeUsed = field(default_factory=ComputeUsed)
    wall_time: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (non-finite floats become None, tensors lists or scalars)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["compute"] = self.compute.to_dict()
        return json_safe(out)


@dataclass
class EditResult:
    """The edited model (a deep copy; the input model is never changed) and its record."""

    model: nn.Module
    record: EditRecord


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` accepts (enums → values, tensors → numbers/lists,
    non-finite floats → None, other objects → ``repr``)."""
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Tensor):
        return json_safe(value.item() if value.numel() == 1 else value.tolist())
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "to_dict"):
        return json_safe(value.to_dict())
    try:
        return json_safe(float(value))
    except (TypeError, ValueError):
        return repr(value)
