"""Shared pieces of the experiments: settings, data and cached models, edit options, results.

Every experiment follows the same protocol (method.md §6):

1. load the data once as train / validation / test splits (split seed ``data_seed``, fixed over
   the model seeds, so the spread over seeds is the spread over training randomness);
2. per seed, train the model and the references (retraining) on training data only, cached with
   :func:`~geninf.bench.train_cached` under a key made of the settings, the seed and a hash of
   the training tensors;
3. edit with :func:`geninf.edit.remove` / :func:`geninf.edit.relabel`, which see the training
   data and a validation score only — every choice (step count, step norm, baseline checkpoint)
   is made on the validation split;
4. only after an edit returned, evaluate its model on the test split (reported, never used to
   choose anything).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import platform
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...defaults import EDIT_DEFAULTS
from ...edit.config import EditConfig
from ...edit.damping import parse_damping
from ...edit.record import json_safe
from ...errors import ConvergenceWarning, InputError
from ...objective import SupervisedObjective
from ..datasets import Splits, load_dataset
from ..models import build_model
from ..training import train_cached, train_model

__all__ = [
    "ExperimentConfig",
    "edit_config",
    "edit_kwargs",
    "load_splits",
    "objective_of",
    "record_summary",
    "trained",
    "versions",
]


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings shared by every experiment (validated on construction).

    Attributes:
        seeds: model seeds (initialization and example order); one run per seed.
        data: ``"digits"``, ``"mnist5k"`` or ``"cifar10:PATH"`` (see :func:`load_dataset`).
        model: a :func:`~geninf.bench.build_model` name (``"mlp"``, ``"small_cnn"``, ...).
        width: width multiplier of the model.
        epochs: training epochs (original model and every retraining).
        lr: Adam learning rate of training.
        batch_size: training mini-batch size.
        weight_decay: L2 coefficient of training; the editing objective carries the same term.
        data_seed: seed of the train / validation / test split (fixed over model seeds).
        normalize: standardize the inputs per channel (statistics of the training split).
        max_train: cap on training examples (stratified sample), None for all.
        max_eval: cap on validation and on test examples, None for all.
        damping: the damping of every influence method (``"auto"``, ``"rel:ρ"`` or λ), by
            default the library's (:data:`geninf.defaults.EDIT_DEFAULTS`).
        solver: solver name for the influence systems (default: the library's).
        solver_options: keyword options of the solver (iteration cap, tolerance, ...); empty:
            the library's edit defaults.
        gammas: step norms γ the ``paper`` schedule tries.
        max_steps: largest step count k the ``paper`` schedule tries.
        edit_batch_size: examples per batch of the gradient and Hessian passes.
        baseline_lr: Adam learning rate of the fine-tuning / gradient-ascent baselines.
        baseline_checkpoints: with the ``paper`` schedule, how many evenly spaced checkpoints of
            a baseline run are scored on validation (the best one is kept).
        cache_dir: where trained models are cached (None: train without caching).
        progress: show progress bars.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    data: str = "digits"
    model: str = "mlp"
    width: float = 1.0
    epochs: int = 40
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    data_seed: int = 0
    normalize: bool = False
    max_train: int | None = None
    max_eval: int | None = None
    damping: float | str = EDIT_DEFAULTS.damping
    solver: str = EDIT_DEFAULTS.solver
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    gammas: tuple[float, ...] = (0.03, 0.1, 0.3)
    max_steps: int = 30
    edit_batch_size: int | None = 512
    baseline_lr: float = 1e-3
    baseline_checkpoints: int = 100
    cache_dir: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("seeds", "gammas"):
            value = getattr(self, name)
            if isinstance(value, numbers.Real):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "solver_options", dict(self.solver_options or {}))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", str(self.cache_dir))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field; subclasses extend this.

        Raises:
            InputError: a field has the wrong type or value (the message names it).
        """
        if not self.seeds:
            raise InputError("seeds is empty; give at least one seed, e.g. seeds=(0, 1, 2, 3, 4)")
        for s in self.seeds:
            _require_int("seeds", s, low=0)
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"seeds must be distinct, got {self.seeds}")
        for name in ("data", "model", "solver"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InputError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "max_steps", "baseline_checkpoints"):
            _require_int(name, getattr(self, name), low=1)
        _require_int("data_seed", self.data_seed, low=0)
        for name in ("max_train", "max_eval", "edit_batch_size"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name), low=1)
        for name in ("width", "lr", "baseline_lr"):
            _require_float(name, getattr(self, name), positive=True)
        _require_float("weight_decay", self.weight_decay, positive=False)
        parse_damping(self.damping)
        for g in self.gammas:
            _require_float("gammas", g, positive=True)
        if not self.gammas:
            raise InputError("gammas is empty; give at least one step norm, e.g. (0.1,)")
        for name in ("normalize", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings, JSON-ready."""
        return json_safe(asdict(self))

    @property
    def model_key(self) -> dict[str, Any]:
        """The settings that determine a trained model (with the seed and the data hash)."""
        keys = ("data", "data_seed", "normalize", "max_train", "model", "width", "epochs", "lr")
        out = {k: getattr(self, k) for k in keys}
        out.update(batch_size=self.batch_size, weight_decay=self.weight_decay)
        return out


def _require_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InputError(f"{name} must be an int >= {low}, got {value!r}")


def _require_float(name: str, value: Any, *, positive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        what = "a positive number" if positive else "a number >= 0"
        raise InputError(f"{name} must be {what}, got {value!r}")


def check_choices(name: str, values: Sequence[Any], allowed: Iterable[str]) -> tuple[str, ...]:
    """``values`` as a tuple of strings, each one of ``allowed`` (an InputError otherwise)."""
    allowed = list(allowed)
    if isinstance(values, str):
        values = (values,)
    out = tuple(str(getattr(v, "value", v)) for v in values)
    if not out:
        raise InputError(f"{name} is empty; choose from {', '.join(allowed)}")
    bad = [v for v in out if v not in allowed]
    if bad:
        raise InputError(f"unknown {name} {bad}; choose from {', '.join(allowed)}")
    return out


def check_ratios(name: str, values: Sequence[Any]) -> tuple[float, ...]:
    """``values`` as a tuple of fractions in (0, 1] (an InputError otherwise)."""
    if isinstance(values, numbers.Real):
        values = (values,)
    out = tuple(values)
    if not out:
        raise InputError(f"{name} is empty; give fractions of the parameters, e.g. (0.05,)")
    for r in out:
        _require_float(name, r, positive=True)
        if r > 1:
            raise InputError(f"{name} are fractions in (0, 1] (0.05 = 5%), got {r!r}")
    return tuple(float(r) for r in out)


# ---------------------------------------------------------------------- data, models, editing
def load_splits(config: ExperimentConfig) -> Splits:
    """The train / validation / test splits of ``config.data``."""
    return load_dataset(
        config.data,
        seed=config.data_seed,
        normalize=config.normalize,
        max_train=config.max_train,
        max_eval=config.max_eval,
    )


def objective_of(config: ExperimentConfig) -> SupervisedObjective:
    """Cross-entropy plus the training's L2 term (Adam's weight decay = ∇ of wd/2·‖θ‖²)."""
    return SupervisedObjective(weight_decay=config.weight_decay)


def data_hash(data: tuple[Tensor, Tensor]) -> str:
    """First 16 hex digits of the SHA-256 of the training tensors (part of the cache key)."""
    digest = hashlib.sha256()
    for t in data:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Trained:
    """A trained model and how it was obtained.

    ``wall_time`` is the time the training took when it ran (also when loaded from the cache);
    ``example_gradients`` its compute, epochs × training examples (the unit of
    :mod:`geninf.edit.record`).
    """

    model: nn.Module
    wall_time: float
    loaded: bool
    example_gradients: int = 0

    def reference_metrics(self) -> dict[str, float]:
        """Cost entries of a reference row: wall time and compute of the training."""
        return {"wall_time": self.wall_time, "example_gradients": self.example_gradients}


def trained(
    config: ExperimentConfig,
    splits: Splits,
    data: tuple[Tensor, Tensor],
    seed: int,
    tag: str,
) -> Trained:
    """Train (or load from ``config.cache_dir``) ``config.model`` on ``data`` with ``seed``.

    ``tag`` names the role (``"original"``, ``"retrain"``, ...); the cache key also holds the
    model settings, the seed and a hash of ``data``, so a changed setting never loads a stale
    model.
    """

    def build() -> nn.Module:
        return build_model(
            config.model,
            input_shape=splits.input_shape,
            num_classes=splits.num_classes,
            width=config.width,
            seed=seed,
        )

    def train(model: nn.Module) -> Any:
        return train_model(
            model,
            data,
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            seed=seed,
            progress=config.progress,
        )

    cost = config.epochs * int(data[1].shape[0])
    if config.cache_dir is None:
        out = train(build())
        return Trained(out.model.eval(), out.wall_time, False, cost)
    key = {**config.model_key, "seed": int(seed), "tag": tag, "train_data": data_hash(data)}
    cached = train_cached(Path(config.cache_dir), key, build, train)
    wall = float(cached.metadata.get("wall_time", 0.0))
    return Trained(cached.model, wall, cached.loaded, cost)


def edit_config(config: ExperimentConfig, **settings: Any) -> EditConfig:
    """The :class:`~geninf.edit.config.EditConfig` of an edit of the experiment: the settings
    ``config`` fixes (solver, damping, paper-schedule grid, batch size, the baselines' learning
    rate and checkpoints), then ``settings`` (method, schedule, seed, ratio, ...)."""
    fixed = EditConfig(
        solver=config.solver,
        damping=config.damping,
        solver_options=dict(config.solver_options) or None,
        gammas=tuple(config.gammas),
        max_steps=config.max_steps,
        batch_size=config.edit_batch_size,
        lr=config.baseline_lr,
        checkpoints=config.baseline_checkpoints,
    )
    return fixed.replace(**settings)


def edit_kwargs(config: ExperimentConfig, **settings: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`geninf.edit.remove` / ``relabel`` (:func:`edit_config`'s,
    with ``progress``)."""
    return {**edit_config(config, **settings).kwargs(), "progress": config.progress}


def quiet_edit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an edit function with its ConvergenceWarnings silenced (the record keeps them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _solver_summary(solver: Any) -> dict[str, Any]:
    if not isinstance(solver, dict):
        return {}
    parts = [solver[k] for k in ("first", "second") if isinstance(solver.get(k), dict)] or [solver]
    return {
        "solver_converged": all(bool(p.get("converged")) for p in parts),
        "solver_residual": max(float(p.get("residual") or 0.0) for p in parts),
    }


def record_summary(record: Any) -> dict[str, Any]:
    """The numbers of an :class:`~geninf.edit.EditRecord` that go into the per-run metrics."""
    c = record.compute
    out: dict[str, Any] = {
        "wall_time": record.wall_time,
        "example_gradients": c.example_gradients,
        "hvps": c.hvps,
        "optimizer_steps": c.optimizer_steps,
        "validation_score": record.validation_score,
        "steps": record.steps,
        "gamma": record.gamma,
        "update_norm": record.update_norm,
        "selected_fraction": (record.subset or {}).get("fraction"),
    }
    out.update(_solver_summary(record.solver))
    return {k: v for k, v in out.items() if v is not None}


def versions() -> dict[str, str]:
    """Versions of what produced a result (and the thread count, which moves weights ~1e-7)."""
    import numpy

    from ... import __version__

    return {
        "geninf": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": str(torch.get_num_threads()),
    }
