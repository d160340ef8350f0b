"""Metrics of forgetting individual training examples, as the machine-unlearning literature
reports them (Jia et al. 2023 "l1-sparse", Fan et al. 2024 "SalUn").

Notation: F the forget set (removed training examples), R the retained training set, T the test
set; acc_D(θ) the accuracy (%) of the model on D; p(x) = softmax(f(x)) the predicted
distribution and p_y(x) its probability of the true class y.

- **UA**, unlearning accuracy = 100 − acc_F (higher: more of F is misclassified);
- **RA**, retain accuracy = acc_R; **TA**, test accuracy = acc_T;
- **MIA**, membership-inference efficacy (%): a logistic regression on per-example features
  (default: the confidence p_y; optionally the entropy −Σ_c p_c log p_c, the loss −log p_y and
  the 0/1 correctness), fitted on R labelled "member" against T labelled "non-member" (R
  subsampled with a seed to |T| examples so the two classes weigh the same), is applied to F;
  MIA = 100 · (fraction of F predicted non-member). A model that never saw F scores like on
  unseen data (high); one that memorized F scores near 0.
- **average gap** to a reference (retraining without F): (1/4) Σ_{k ∈ UA, RA, TA, MIA}
  |k(edited) − k(retrained)|, in percentage points (lower is better).
- per example on F: the loss ℓ_i = −log p_{y_i}(x_i) of the edited model against the retrained
  one — their empirical distributions compared by the 1-Wasserstein distance
  W₁ = (1/|F|) Σ_j |ℓ_(j) − ℓ'_(j)| (sorted losses, equal sample sizes), and the mean KL divergence
  of the predictions, (1/|F|) Σ_i KL(p'(x_i) ‖ p(x_i)) = (1/|F|) Σ_i Σ_c p'_c log(p'_c / p_c),
  p' the retrained model's predictions.

:class:`ForgetValidation` is a validation score for :func:`geninf.edit.remove` that needs no test
data and no retrained model (see its docstring).

Example:
    >>> average_gap({"UA": 3.0, "RA": 99.0, "TA": 95.0, "MIA": 10.0},
    ...             {"UA": 5.0, "RA": 100.0, "TA": 94.0, "MIA": 14.0})
    2.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._seed import check_seed
from ..errors import DataError, InputError
from .metrics import predict_logits

__all__ = [
    "GAP_KEYS",
    "MIA_FEATURES",
    "ForgetValidation",
    "average_gap",
    "forget_divergence",
    "membership_features",
    "mia_efficacy",
    "unlearning_metrics",
]

#: the four metrics averaged by :func:`average_gap`
GAP_KEYS = ("UA", "RA", "TA", "MIA")
#: the per-example features :func:`membership_features` can compute
MIA_FEATURES = ("confidence", "entropy", "loss", "correct")


def _check_data(data: Any, name: str) -> tuple[Tensor, Tensor]:
    ok = isinstance(data, tuple | list) and len(data) >= 2
    if not ok or not all(isinstance(t, Tensor) for t in data[:2]):
        raise DataError(f"{name} must be an (inputs, targets) tuple of tensors")
    if data[1].dim() != 1 or data[1].is_floating_point() or data[1].numel() == 0:
        raise DataError(f"{name} needs integer class targets of shape [N], N ≥ 1")
    return data[0], data[1]


def _log_probs(model: nn.Module, data: Any, name: str) -> tuple[Tensor, Tensor]:
    x, y = _check_data(data, name)
    logits = predict_logits(model, x).double()
    return F.log_softmax(logits, dim=1), y.cpu()


def membership_features(
    model: nn.Module, data: Any, features: Sequence[str] = ("confidence",)
) -> np.ndarray:
    """Per-example features [N, len(features)] of ``model`` on ``data`` (see the module
    docstring).

    Raises:
        InputError: an unknown feature name.
    """
    _check_features(features)
    return _features(*_log_probs(model, data, "data"), features)


def _check_features(features: Sequence[str]) -> None:
    unknown = [f for f in features if f not in MIA_FEATURES]
    if unknown or not features:
        raise InputError(f"unknown MIA feature(s) {unknown}; choose from {', '.join(MIA_FEATURES)}")


def _features(logp: Tensor, y: Tensor, features: Sequence[str]) -> np.ndarray:
    p = logp.exp()
    logp_y = logp.gather(1, y[:, None]).squeeze(1)
    columns = {
        "confidence": lambda: logp_y.exp(),
        "entropy": lambda: -(p * logp).sum(1),
        "loss": lambda: -logp_y,
        "correct": lambda: (logp.argmax(1) == y).double(),
    }
    return torch.stack([columns[f]() for f in features], 1).numpy()


def mia_efficacy(
    model: nn.Module,
    retain: Any,
    forget: Any,
    test: Any,
    *,
    features: Sequence[str] = ("confidence",),
    seed: int = 0,
) -> float:
    """MIA (%): the share of ``forget`` that an attack fitted on retain (member) versus test
    (non-member) predicts as non-member.

    The attack is ``sklearn`` logistic regression on standardized features; the retained examples
    are subsampled without replacement (generator seeded with ``seed``) to the size of the test
    set when they are more.
    """
    members, suspects, outsiders = (
        membership_features(model, d, features) for d in (retain, forget, test)
    )
    return _attack(members, suspects, outsiders, seed)


def _attack(members: np.ndarray, suspects: np.ndarray, outsiders: np.ndarray, seed: int) -> float:
    """% of ``suspects`` that the attack fitted on members vs outsiders calls non-member."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(members) > len(outsiders):
        g = torch.Generator().manual_seed(check_seed(seed))
        members = members[torch.randperm(len(members), generator=g)[: len(outsiders)].numpy()]
    x = np.concatenate([members, outsiders])
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(outsiders))])
    attack = make_pipeline(StandardScaler(), LogisticRegression())
    attack.fit(x, labels)
    return float(100.0 * np.mean(attack.predict(suspects) == 0))


def unlearning_metrics(
    model: nn.Module,
    retain: Any,
    forget: Any,
    test: Any,
    *,
    features: Sequence[str] = ("confidence",),
    seed: int = 0,
) -> dict[str, float]:
    """``{"UA", "RA", "TA", "MIA"}`` in % (module docstring), plus ``forget_acc`` and the mean
    losses ``forget_loss``, ``retain_loss``, ``test_loss`` (one forward pass over each set)."""
    _check_features(features)
    out: dict[str, float] = {}
    feats: dict[str, np.ndarray] = {}
    for key, data in (("forget", forget), ("retain", retain), ("test", test)):
        logp, y = _log_probs(model, data, f"{key} data")
        out[f"{key}_acc"] = float(100.0 * (logp.argmax(1) == y).double().mean())
        out[f"{key}_loss"] = float(-logp.gather(1, y[:, None]).mean())
        feats[key] = _features(logp, y, features)
    out["UA"] = 100.0 - out["forget_acc"]
    out["RA"] = out.pop("retain_acc")
    out["TA"] = out.pop("test_acc")
    out["MIA"] = _attack(feats["retain"], feats["forget"], feats["test"], seed)
    return out


def average_gap(
    metrics: Mapping[str, float], reference: Mapping[str, float], keys: Sequence[str] = GAP_KEYS
) -> float:
    """(1/|keys|) Σ_k |metrics[k] − reference[k]| (percentage points for the default keys).

    Raises:
        InputError: a key missing from either mapping.
    """
    missing = [k for k in keys if k not in metrics or k not in reference]
    if missing:
        raise InputError(f"average_gap needs {list(keys)} in both mappings; missing {missing}")
    return float(np.mean([abs(float(metrics[k]) - float(reference[k])) for k in keys]))


def forget_divergence(model: nn.Module, reference: nn.Module, forget: Any) -> dict[str, Any]:
    """Per-example comparison of ``model`` with ``reference`` (retraining) on ``forget``.

    Returns:
        ``{"kl": mean KL(p_ref ‖ p_model), "loss_w1": W₁ of the two loss distributions,
        "loss": [...], "reference_loss": [...]}`` (per-example losses in ``forget`` order).
    """
    logp, y = _log_probs(model, forget, "forget data")
    logq, _ = _log_probs(reference, forget, "forget data")
    kl = (logq.exp() * (logq - logp)).sum(1)
    loss = -logp.gather(1, y[:, None]).squeeze(1)
    ref_loss = -logq.gather(1, y[:, None]).squeeze(1)
    w1 = (torch.sort(loss).values - torch.sort(ref_loss).values).abs().mean()
    return {
        "kl": float(kl.mean()),
        "loss_w1": float(w1),
        "loss": loss.tolist(),
        "reference_loss": ref_loss.tolist(),
    }


class ForgetValidation:
    """A validation score for forgetting examples, from validation data and the forget set only.

    Retraining without F would treat F like unseen data, and the validation split V is unseen
    data; so the score rewards keeping the validation accuracy and making F look like V:

        S(θ) = a_V − |a_F − a_V| − λ · |ℓ̄_F − ℓ̄_V|

    with a the accuracies (fractions), ℓ̄ the mean cross-entropies and λ = ``loss_weight``. It
    needs neither test data nor a retrained model, and it penalizes forgetting too much
    (a_F ≪ a_V) as much as too little. Higher is better.

    Args:
        validation: the validation split, ``(inputs, targets)``.
        forget: the forget set, ``(inputs, targets)``.
        loss_weight: λ ≥ 0.
    """

    def __init__(self, validation: Any, forget: Any, *, loss_weight: float = 0.1):
        _check_data(validation, "validation")
        _check_data(forget, "forget")
        if not float(loss_weight) >= 0.0:
            raise InputError(f"loss_weight must be a number ≥ 0, got {loss_weight!r}")
        self.validation, self.forget, self.loss_weight = validation, forget, float(loss_weight)

    def details(self, model: nn.Module) -> dict[str, float]:
        """Accuracies (fractions) and mean losses on V and F, and the score."""
        out: dict[str, float] = {}
        for key, data in (("val", self.validation), ("forget", self.forget)):
            logp, y = _log_probs(model, data, key)
            out[f"{key}_acc"] = float((logp.argmax(1) == y).double().mean())
            out[f"{key}_loss"] = float(-logp.gather(1, y[:, None]).mean())
        gap = abs(out["forget_acc"] - out["val_acc"])
        out["score"] = (
            out["val_acc"] - gap - self.loss_weight * abs(out["forget_loss"] - out["val_loss"])
        )
        return out

    def __call__(self, model: nn.Module) -> float:
        return self.details(model)["score"]

    def describe(self) -> dict[str, Any]:
        """What the score is computed on (for edit records)."""
        return {
            "kind": "forget_examples",
            "formula": "a_V - |a_F - a_V| - loss_weight * |loss_F - loss_V|",
            "loss_weight": self.loss_weight,
            "num_validation": int(self.validation[1].numel()),
            "num_forget": int(self.forget[1].numel()),
        }
