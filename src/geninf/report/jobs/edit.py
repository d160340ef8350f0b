"""``geninf remove`` and ``geninf relabel``: edit a trained model and write a run directory.

Both load a checkpoint (with the data it was trained on, from its record), call
:func:`geninf.edit.remove` / :func:`geninf.edit.relabel` — which see the training data and a
validation score only — and then, for the report, evaluate the original, the edited and
(``retrain=True``) a model retrained from scratch without the removed data / on the corrected
labels, on the test split. The options are the fields of :class:`RemoveJob` /
:class:`RelabelJob`; the edit itself is an :class:`~geninf.edit.config.EditConfig`, the same
that ``geninf demo`` runs for each of its methods (:func:`remove_edit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

from torch import nn

from ...bench.datasets import Splits
from ...bench.models import build_model
from ...bench.training import evaluate, train_model
from ...edit import (
    ClassRemovalValidation,
    EditMethod,
    EditResult,
    LabelChangeValidation,
    relabel,
    remove,
)
from ...edit.config import EditConfig
from ...errors import InputError
from ..checkpoint import MODEL_FILE, Checkpoint, save_model
from ..rundir import RunDir
from .common import (
    agreement,
    base_config,
    collect_warnings,
    edit_metrics,
    finish,
    gradcam_figure,
    histograms,
)
from .config import (
    CheckpointJob,
    Started,
    checkpoint_objective,
    keyword_entry,
    run_in,
    start_job,
)
from .inputs import ForgetSet, load_data, parse_changes, parse_forget

__all__ = [
    "EditJob",
    "RelabelJob",
    "RemoveJob",
    "relabel_run",
    "remove_edit",
    "remove_run",
    "removal_validation",
    "solver_histories",
]


def removal_validation(splits: Splits, target: ForgetSet) -> ClassRemovalValidation | None:
    """The validation score of removing ``target``: the F1 of forgetting its class (None when
    the forget set is not a class)."""
    c = target.forget_class
    return ClassRemovalValidation(splits.validation, c) if c is not None else None


def remove_edit(
    model: nn.Module,
    objective: Any,
    target: ForgetSet,
    validation: Any,
    edit: EditConfig,
    progress: bool,
) -> EditResult:
    """Remove ``target.forget`` from ``model`` with :func:`geninf.edit.remove` as ``edit`` says
    (the call of ``geninf remove`` and of every method of ``geninf demo``)."""
    return remove(
        model,
        objective,
        target.retain,
        target.forget,
        validation=validation,
        progress=progress,
        **edit.kwargs(),
    )


def _retrain(ckpt: Checkpoint, data: Any, device: Any, progress: bool) -> nn.Module:
    arch, tr = ckpt.info["architecture"], ckpt.info.get("training") or {}
    if not tr.get("epochs"):
        raise InputError("the checkpoint has no training record; --retrain cannot repeat it")
    seed = int(tr.get("seed", 0))
    net = build_model(
        arch["model"],
        input_shape=tuple(arch["input_shape"]),
        num_classes=int(arch["num_classes"]),
        width=float(arch.get("width", 1.0)),
        seed=seed,
        **(arch.get("options") or {}),
    )
    out = train_model(
        net,
        data,
        epochs=int(tr["epochs"]),
        batch_size=int(tr.get("batch_size", 64)),
        lr=float(tr.get("lr", 1e-3)),
        weight_decay=float(tr.get("weight_decay", 0.0)),
        seed=seed,
        progress=progress,
        device=device,
    )
    return out.model.eval()


def solver_histories(record: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The solver's residual history of an edit record (two for second_order), for the plot."""
    solver = record.get("solver") or {}
    parts = {k: solver[k] for k in ("first", "second") if isinstance(solver.get(k), dict)}
    parts = parts or ({label: solver} if solver else {})
    return {
        (label if name == label else f"{label} ({name})"): {
            "products": d.get("products_history") or [],
            "residuals": d.get("residual_history") or [],
        }
        for name, d in parts.items()
        if d.get("residual_history")
    }


class _Case(NamedTuple):
    """What differs between removing and relabeling, once the data is loaded."""

    target: ForgetSet
    edit: Callable[[nn.Module, Any], EditResult]  # (model, objective) -> result
    retrain_data: Any
    metrics: Callable[[nn.Module], dict[str, float]]
    extra: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class EditJob(CheckpointJob):
    """The options of ``geninf remove`` / ``relabel`` but the target (see the subclasses).

    Attributes:
        retrain: also retrain from scratch for reference.
    """

    retrain: bool = False

    KIND: ClassVar[str] = ""
    EDIT_FIELDS: ClassVar[tuple[str, ...]] = tuple(f.name for f in fields(EditConfig))
    UNRECORDED: ClassVar[tuple[str, ...]] = ("force",)

    @property
    def settings(self) -> EditConfig:
        """The edit's settings (the defaults when the job was built without them)."""
        return self.edit or EditConfig()

    def case(self, splits: Splits, progress: bool) -> _Case:
        """The target, edit, retraining data, metrics and result fields of this job."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class RemoveJob(EditJob):
    """Remove ``forget`` (``class:C``, ``indices:FILE``, ``random:F`` or ``sources:K``, the last
    two drawn with ``seed``) from ``checkpoint``'s training set.

    The ``paper`` and ``search`` schedules choose their step on the validation F1 of forgetting
    class C, so they need ``class:C``. Returns the results (the content of ``results.json``).
    """

    forget: str

    KIND: ClassVar[str] = "remove"

    @property
    def input_file(self) -> str | None:
        return self.forget.partition(":")[2] if self.forget.startswith("indices:") else None

    def case(self, splits: Splits, progress: bool) -> _Case:
        edit = self.settings
        target = parse_forget(self.forget, splits, seed=edit.seed)
        if edit.schedule in ("paper", "search") and target.forget_class is None:
            raise InputError(
                f"--schedule {edit.schedule} chooses its step on the validation F1 of forgetting "
                "a class: use --forget class:C, or --schedule newton (or auto)"
            )
        validation = removal_validation(splits, target)
        return _Case(
            target,
            lambda model, obj: remove_edit(model, obj, target, validation, edit, progress),
            target.retain,
            lambda model: edit_metrics(model, splits, target),
            {"title": f"Removing {self.forget} with {edit.method}", "forget": target.describe()},
        )


@dataclass(frozen=True, kw_only=True)
class RelabelJob(EditJob):
    """Change the labels of training examples (CSV ``index,new_label``) of ``checkpoint``.

    The validation score (which steers the step search and ``damping="auto"``) is
    :class:`~geninf.edit.LabelChangeValidation`: the harmonic mean of the validation accuracy
    and the accuracy on the changed examples with their new labels.
    Returns the results (the content of ``results.json``).
    """

    changes: str

    KIND: ClassVar[str] = "relabel"

    @property
    def input_file(self) -> str | None:
        return self.changes

    def case(self, splits: Splits, progress: bool) -> _Case:
        edit = self.settings
        idx, new = parse_changes(self.changes, splits)
        x, y = splits.train
        corrected = y.clone()
        corrected[idx] = new
        target = ForgetSet(f"changes:{self.changes}", None, idx, (x[idx], new), (x, corrected))
        validation = LabelChangeValidation(splits.validation, (x[idx], new))

        def call(model: nn.Module, obj: Any) -> EditResult:
            return relabel(
                model,
                obj,
                splits.train,
                (idx, new),
                validation=validation,
                progress=progress,
                **edit.kwargs(),
            )

        def metrics(m: nn.Module) -> dict[str, float]:
            return {
                "test_acc": evaluate(m, *splits.test)["acc"],
                "changed_acc_new": evaluate(m, x[idx], new)["acc"],
                "changed_acc_old": evaluate(m, x[idx], y[idx])["acc"],
            }

        extra = {
            "title": f"Relabeling {len(idx)} training examples with {edit.method}",
            "changes": {"file": self.changes, "num_changed": len(idx), "num_train": len(y)},
        }
        return _Case(target, call, (x, corrected), metrics, extra)


def run_edit_job(job: EditJob) -> dict[str, Any]:
    """Run ``geninf remove`` or ``relabel`` (``job``'s class) into ``job.run.out``."""
    started = start_job(job.run)
    ckpt = job.load()
    return run_in(
        job.run,
        lambda run: _edit_body(job, ckpt, started, run),
        [ckpt.path, job.input_file],
    )


def _edit_body(job: EditJob, ckpt: Checkpoint, started: Started, run: RunDir) -> dict[str, Any]:
    splits = load_data(ckpt.info)
    progress = job.run.progress
    case = job.case(splits, progress)
    original = ckpt.model.to(started.device)
    caught: list[str] = []
    with collect_warnings(caught):
        result = case.edit(original, checkpoint_objective(ckpt))
        models = {"original": original}
        if job.retrain:
            models["retrained"] = _retrain(ckpt, case.retrain_data, started.device, progress)
    evaluated = {"original": original, "edited": result.model, **models}
    extra = {
        **case.extra,
        "metrics": {name: case.metrics(m) for name, m in evaluated.items()},
        "warnings": caught,
    }
    return _finish_edit(run, job, ckpt, splits, case.target, result, models, extra, started)


def _finish_edit(run, job, ckpt, splits, target, result, models, extra, started):
    """Shared tail of remove/relabel: metrics, figures, model file and run files."""
    record = result.record.to_dict()
    reference = models.get("retrained")
    out_models = {"original": models["original"], "edited": result.model}
    if reference is not None:
        out_models["retrained"] = reference
    info = dict(ckpt.info)
    info["edits"] = list(info.get("edits") or []) + [
        {
            "operation": job.KIND,
            "method": record["method"],
            "schedule": record["schedule"],
            "target": target.spec,
            "ratio": job.settings.ratio if EditMethod.parse(record["method"]).uses_subset else None,
            "parent": str(ckpt.path),
        }
    ]  # no timestamp: the same edit gives a byte-identical model file (config.json has one)
    if run.root is not None:
        save_model(run.file(MODEL_FILE), result.model, info)
    figures, notes = gradcam_figure(run, out_models, splits, target)
    results = {
        "kind": job.KIND,
        "model_file": MODEL_FILE,
        **extra,
        "histograms": histograms(out_models, splits, target),
        "solver_histories": solver_histories(record, record["method"]),
        "record": record,
        "wall_time": started.elapsed(),
    }
    if reference is not None:
        x = splits.test[0]
        results["agreement_with_retrained"] = agreement(
            {k: v for k, v in out_models.items() if k != "retrained"}, reference, x
        )
    config = base_config(job.KIND, job.options(), job.run.argv)
    config.update(checkpoint=ckpt.info, seeds={"edit": job.edit.seed})
    return finish(run, config, results, extra_plots=figures, notes=notes)


remove_run = keyword_entry(RemoveJob, run_edit_job, "remove_run")
relabel_run = keyword_entry(RelabelJob, run_edit_job, "relabel_run")
