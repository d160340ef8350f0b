"""One declaration of the editing options that jobs expose: :class:`EditConfig`.

The command line (``geninf remove``, ``relabel``, ``demo``), its ``--config`` files, the demo and
the experiment runners all describe an edit with an :class:`EditConfig`, and reach
:func:`geninf.edit.remove` / :func:`geninf.edit.relabel` through :meth:`EditConfig.kwargs`. A
field is declared once, here: its default, its command-line help (``metadata["help"]``) and the
kind of value it takes (``metadata["kind"]``, which :mod:`geninf.cli.parser` turns into an
argument type). Fields named like an :class:`~geninf.edit.options.EditOptions` option pass
through to the library by name when set, so a new option of the library needs one field here.

Example:
    >>> from geninf.edit.config import EditConfig
    >>> EditConfig(method="gif", ratio=0.05, max_iter=20).kwargs()["solver_options"]
    {'max_iter': 20}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..defaults import EDIT_DEFAULTS
from .options import EditOptions
from .unlearning import UNLEARNING_DEFAULTS

__all__ = ["EditConfig", "solver_options"]

_D = EDIT_DEFAULTS


def _opt(default: Any, help: str | None, kind: str | None = None, group: str = "edit") -> Any:
    """A field with its command-line help and value kind (see the module docstring); a field
    without a help has no flag."""
    return field(default=default, metadata={"help": help, "kind": kind, "group": group})


def solver_options(
    solver: str, max_iter: int | None = None, tol: float | None = None
) -> dict[str, Any] | None:
    """The solver options that ``--max-iter`` and ``--tol`` stand for with ``solver``.

    ``--max-iter`` caps the iterations of cg, lsmr, neumann_normal and auto (their
    ``max_iter``) and is LiSSA's ``depth`` (its number of recursion steps); the dense solver
    has neither iterations nor a tolerance, so both are ignored with it. None: no option.
    """
    if str(solver) == "dense":
        return None
    options: dict[str, Any] = {}
    if max_iter is not None:
        options["depth" if str(solver) == "lissa" else "max_iter"] = max_iter
    if tol is not None:
        options["tol"] = tol
    return options or None


@dataclass(frozen=True)
class EditConfig:
    """The settings of one edit, as a job (command line, config file, demo) gives them.

    Every field is the keyword argument of :func:`geninf.edit.remove` of the same name, but for
    ``max_iter`` and ``tol``, which join ``solver_options`` (:func:`solver_options`). None
    leaves an option at the library's default. Values are checked by the library when the edit
    runs (one-line :class:`~geninf.errors.InputError`).
    """

    method: str = _opt(_D.method, f"default {_D.method}", "method")
    criterion: str = _opt(
        _D.criterion,
        f"parameter selection for gif/freezing/projecting (default {_D.criterion})",
        "criterion",
    )
    ratio: float = _opt(
        _D.ratio, f"fraction of each layer that may move (default {_D.ratio})", "float"
    )
    solver: str = _opt(_D.solver, f"default {_D.solver}", "solver")
    max_iter: int | None = _opt(
        None,
        "solver iteration cap (lissa: its depth, the recursion steps; ignored by dense, which "
        "has no iterations)",
        "positive_int",
    )
    tol: float | None = _opt(None, "solver tolerance (ignored by dense)", "float")
    damping: float | str = _opt(
        _D.damping,
        "auto (λ = ρ·‖H‖ with ρ chosen on validation from --damping-path; without validation "
        f"ρ = {_D.damping_fallback:g}), rel:ρ (λ = ρ·‖H‖), or an absolute λ (default {_D.damping})",
        "damping",
    )
    damping_path: tuple[float, ...] | None = _opt(
        None,
        "relative dampings ρ that --damping auto tries (default "
        + ",".join(f"{v:g}" for v in _D.damping_path)
        + ")",
        "floats",
    )
    hessian_examples: int | None = _opt(
        None,
        "a stratified sample of this many examples for the Hessian (default: all)",
        "positive_int",
    )
    forget_examples: int | None = _opt(
        None,
        "a stratified sample of this many of the removed (or changed) examples for the "
        "gradient (default: all)",
        "positive_int",
    )
    batch_size: int | None = _opt(None, "examples per gradient/HVP batch", "positive_int")
    schedule: str = _opt(
        _D.schedule,
        "auto (default): search with a validation score (remove class:C), else newton; "
        "newton: one step with the theoretical scale; search: bracketing step search on "
        "validation; paper: the authors' step norm × count grid",
        "schedule",
        "schedule",
    )
    gammas: tuple[float, ...] | None = _opt(
        None, "paper schedule step norms, e.g. 0.03,0.1,0.3", "floats", "schedule"
    )
    max_steps: int | None = _opt(
        None, "paper schedule: largest step count", "positive_int", "schedule"
    )
    budget: int | None = _opt(
        None, "finetune/gradient_ascent: example-gradient evaluations", "positive_int", "schedule"
    )
    unlearning_options: Mapping[str, float] | None = _opt(
        None,
        "hyper-parameters of l1_sparse, salun and scrub as KEY=VALUE,... (keys: "
        + ", ".join(f"{k} (default {v:g})" for k, v in UNLEARNING_DEFAULTS.items())
        + ")",
        "key_values",
        "unlearning",
    )
    seed: int = field(default=0, metadata={"help": None, "kind": None, "group": "run"})
    # options without a flag of their own (the experiment runners set them)
    solver_options: Mapping[str, Any] | None = _opt(None, None, group="library")
    lr: float | None = _opt(None, None, group="library")
    checkpoints: int | None = _opt(None, None, group="library")

    def replace(self, **changes: Any) -> EditConfig:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`geninf.edit.remove` / :func:`geninf.edit.relabel`."""
        kw: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("method", "criterion", "ratio", "schedule", "solver", "damping")
        }
        given = {**(self.solver_options or {})}
        given.update(solver_options(self.solver, self.max_iter, self.tol) or {})
        kw.update(seed=self.seed, budget=self.budget, solver_options=given or None)
        for name in _LIBRARY_OPTIONS:
            if name == "solver_options":
                continue
            value = getattr(self, name, None)
            if isinstance(value, Mapping):
                kw[name] = dict(value)
            elif value is not None:
                kw[name] = tuple(value) if isinstance(value, list | tuple) else value
        return kw

    def for_budgeted_baseline(self, method: str, budget: int) -> EditConfig:
        """The config of baseline ``method`` given its ``budget``: the influence settings
        (selection, solver, damping, Hessian sample) do not apply to it and go back to their
        defaults, so its record shows only what it used."""
        keep = ("schedule", "gammas", "max_steps", "batch_size", "unlearning_options", "lr")
        keep += ("checkpoints", "seed")
        return EditConfig(method=method, budget=int(budget), **{k: getattr(self, k) for k in keep})


#: the fields passed to the library by name (an EditOptions option of the same name)
_LIBRARY_OPTIONS = tuple(
    f.name for f in fields(EditConfig) if f.name in {o.name for o in fields(EditOptions)}
)
