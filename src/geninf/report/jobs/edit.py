"""``geninf remove`` and ``geninf relabel``: edit a trained model and write a run directory.

Both load a checkpoint (with the data it was trained on, from its record), call
:func:`geninf.edit.remove` / :func:`geninf.edit.relabel` — which see the training data and a
validation score only — and then, for the report, evaluate the original, the edited and
(``retrain=True``) a model retrained from scratch without the removed data / on the corrected
labels, on the test split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from ...bench.models import build_model
from ...bench.training import evaluate, train_model
from ...defaults import EDIT_DEFAULTS
from ...distributed import is_main_process
from ...edit import ClassRemovalValidation, LabelChangeValidation, relabel, remove
from ...errors import InputError
from ...objective import SupervisedObjective
from ..checkpoint import MODEL_FILE, Checkpoint, load_checkpoint, save_model
from ..rundir import RunDir
from .common import (
    agreement,
    base_config,
    collect_warnings,
    edit_metrics,
    finish,
    gradcam_figure,
    histograms,
    set_threads,
    solver_options,
)
from .inputs import ForgetSet, load_data, parse_changes, parse_forget, resolve_device

__all__ = ["relabel_run", "remove_run"]


def _edit_kwargs(o: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "method": o["method"],
        "criterion": o["criterion"],
        "ratio": o["ratio"],
        "schedule": o["schedule"],
        "solver": o["solver"],
        "damping": o["damping"],
        "seed": o["seed"],
        "budget": o.get("budget"),
        "solver_options": solver_options(o["solver"], o.get("max_iter"), o.get("tol")),
    }
    for key in ("gammas", "max_steps", "batch_size", "damping_path", "hessian_examples"):
        if o.get(key) is not None:
            kw[key] = tuple(o[key]) if key in ("gammas", "damping_path") else o[key]
    return kw


def _retrain(ckpt: Checkpoint, data: Any, device: Any, progress: bool) -> nn.Module:
    arch, tr = ckpt.info["architecture"], ckpt.info.get("training") or {}
    if not tr.get("epochs"):
        raise InputError("the checkpoint has no training record; --retrain cannot repeat it")
    net = build_model(
        arch["model"],
        input_shape=tuple(arch["input_shape"]),
        num_classes=int(arch["num_classes"]),
        width=float(arch.get("width", 1.0)),
        seed=int(tr.get("seed", 0)),
        **(arch.get("options") or {}),
    )
    out = train_model(
        net,
        data,
        epochs=int(tr["epochs"]),
        batch_size=int(tr.get("batch_size", 64)),
        lr=float(tr.get("lr", 1e-3)),
        weight_decay=float(tr.get("weight_decay", 0.0)),
        seed=int(tr.get("seed", 0)),
        progress=progress,
        device=device,
    )
    return out.model.eval()


def _solver_histories(record: dict[str, Any], label: str) -> dict[str, Any]:
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


def _prepare(o: dict[str, Any], extra_inputs: Sequence[str | None]) -> tuple[Any, ...]:
    set_threads(o.get("threads"))
    dev = resolve_device(o["device"])
    overrides = {k: o.get(k) for k in ("model", "width", "data")}
    ckpt = load_checkpoint(o["checkpoint"], overrides=overrides)
    run = RunDir(
        o["out"], force=o["force"], inputs=[ckpt.path, *extra_inputs], enabled=is_main_process()
    )
    return dev, ckpt, run


def _finish_edit(run, o, ckpt, splits, target, result, models, kind, extra, argv, start):
    """Shared tail of remove/relabel: metrics, figures, model file and run files."""
    record = result.record.to_dict()
    reference = models.get("retrained")
    out_models = {"original": models["original"], "edited": result.model, **models}
    out_models.pop("retrained", None)
    if reference is not None:
        out_models["retrained"] = reference
    info = dict(ckpt.info)
    info["edits"] = list(info.get("edits") or []) + [
        {
            "operation": kind,
            "method": record["method"],
            "schedule": record["schedule"],
            "target": target.spec,
            "ratio": o["ratio"],
            "parent": str(ckpt.path),
        }
    ]  # no timestamp: the same edit gives a byte-identical model file (config.json has one)
    if run.root is not None:
        save_model(run.file(MODEL_FILE), result.model, info)
    figures, notes = gradcam_figure(run, out_models, splits, target)
    results = {
        "kind": kind,
        "model_file": MODEL_FILE,
        **extra,
        "histograms": histograms(out_models, splits, target),
        "solver_histories": _solver_histories(record, record["method"]),
        "record": record,
        "wall_time": time.perf_counter() - start,
    }
    if reference is not None:
        x = splits.test[0]
        results["agreement_with_retrained"] = agreement(
            {k: v for k, v in out_models.items() if k != "retrained"}, reference, x
        )
    config = base_config(kind, {k: v for k, v in o.items() if k not in ("force",)}, argv)
    config.update(checkpoint=ckpt.info, seeds={"edit": o["seed"]})
    return finish(run, config, results, extra_plots=figures, notes=notes)


def remove_run(
    *,
    checkpoint: str,
    forget: str,
    out: str,
    method: str = EDIT_DEFAULTS.method,
    criterion: str = EDIT_DEFAULTS.criterion,
    ratio: float = EDIT_DEFAULTS.ratio,
    schedule: str = EDIT_DEFAULTS.schedule,
    solver: str = EDIT_DEFAULTS.solver,
    max_iter: int | None = None,
    tol: float | None = None,
    damping: float | str = EDIT_DEFAULTS.damping,
    damping_path: Sequence[float] | None = None,
    hessian_examples: int | None = None,
    gammas: Sequence[float] | None = None,
    max_steps: int | None = None,
    budget: int | None = None,
    batch_size: int | None = None,
    retrain: bool = False,
    seed: int = 0,
    data: str | None = None,
    model: str | None = None,
    width: float | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
    argv: Sequence[str] = (),
) -> dict[str, Any]:
    """Remove ``forget`` (``class:C``, ``indices:FILE``, ``random:F`` or ``sources:K``, the last
    two drawn with ``seed``) from ``checkpoint``'s training set.

    The ``paper`` schedule chooses its step on the validation F1 of forgetting class C, so it
    needs ``class:C``. Returns the results (the content of ``results.json``).
    """
    o = dict(locals())
    o.pop("argv")
    start = time.perf_counter()
    index_file = forget.partition(":")[2] if forget.startswith("indices:") else None
    dev, ckpt, run = _prepare(o, [index_file])
    try:
        splits = load_data(ckpt.info)
        target = parse_forget(forget, splits, seed=seed)
        c = target.forget_class
        if schedule in ("paper", "search") and c is None:
            raise InputError(
                f"--schedule {schedule} chooses its step on the validation F1 of forgetting a "
                "class: use --forget class:C, or --schedule newton (or auto)"
            )
        validation = ClassRemovalValidation(splits.validation, c) if c is not None else None
        wd = float((ckpt.info.get("training") or {}).get("weight_decay", 0.0))
        original = ckpt.model.to(dev)
        caught: list[str] = []
        with collect_warnings(caught):
            result = remove(
                original,
                SupervisedObjective(weight_decay=wd),
                target.retain,
                target.forget,
                validation=validation,
                progress=progress,
                **_edit_kwargs(o),
            )
            models = {"original": original}
            if retrain:
                models["retrained"] = _retrain(ckpt, target.retain, dev, progress)
        metrics = {
            name: edit_metrics(m, splits, target)
            for name, m in {"original": original, "edited": result.model, **models}.items()
        }
        extra = {
            "title": f"Removing {forget} with {method}",
            "forget": target.describe(),
            "metrics": metrics,
            "warnings": caught,
        }
        results = _finish_edit(
            run, o, ckpt, splits, target, result, models, "remove", extra, argv, start
        )
    except BaseException:
        run.abort()
        raise
    run.commit()
    return results


def relabel_run(
    *,
    checkpoint: str,
    changes: str,
    out: str,
    method: str = EDIT_DEFAULTS.method,
    criterion: str = EDIT_DEFAULTS.criterion,
    ratio: float = EDIT_DEFAULTS.ratio,
    schedule: str = EDIT_DEFAULTS.schedule,
    solver: str = EDIT_DEFAULTS.solver,
    max_iter: int | None = None,
    tol: float | None = None,
    damping: float | str = EDIT_DEFAULTS.damping,
    damping_path: Sequence[float] | None = None,
    hessian_examples: int | None = None,
    gammas: Sequence[float] | None = None,
    max_steps: int | None = None,
    budget: int | None = None,
    batch_size: int | None = None,
    retrain: bool = False,
    seed: int = 0,
    data: str | None = None,
    model: str | None = None,
    width: float | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
    progress: bool = True,
    argv: Sequence[str] = (),
) -> dict[str, Any]:
    """Change the labels of training examples (CSV ``index,new_label``) of ``checkpoint``.

    The validation score (which steers the step search and ``damping="auto"``) is
    :class:`~geninf.edit.LabelChangeValidation`: the harmonic mean of the validation accuracy
    and the accuracy on the changed examples with their new labels.
    Returns the results (the content of ``results.json``).
    """
    o = dict(locals())
    o.pop("argv")
    start = time.perf_counter()
    dev, ckpt, run = _prepare(o, [changes])
    try:
        splits = load_data(ckpt.info)
        idx, new = parse_changes(changes, splits)
        x, y = splits.train
        corrected = y.clone()
        corrected[idx] = new
        target = ForgetSet(f"changes:{changes}", None, idx, (x[idx], new), (x, corrected))
        wd = float((ckpt.info.get("training") or {}).get("weight_decay", 0.0))
        original = ckpt.model.to(dev)

        validation = LabelChangeValidation(splits.validation, (x[idx], new))
        caught: list[str] = []
        with collect_warnings(caught):
            result = relabel(
                original,
                SupervisedObjective(weight_decay=wd),
                splits.train,
                (idx, new),
                validation=validation,
                progress=progress,
                **_edit_kwargs(o),
            )
            models = {"original": original}
            if retrain:
                models["retrained"] = _retrain(ckpt, (x, corrected), dev, progress)
        metrics = {}
        for name, m in {"original": original, "edited": result.model, **models}.items():
            metrics[name] = {
                "test_acc": evaluate(m, *splits.test)["acc"],
                "changed_acc_new": evaluate(m, x[idx], new)["acc"],
                "changed_acc_old": evaluate(m, x[idx], y[idx])["acc"],
            }
        extra = {
            "title": f"Relabeling {len(idx)} training examples with {method}",
            "changes": {"file": changes, "num_changed": len(idx), "num_train": len(y)},
            "metrics": metrics,
            "warnings": caught,
        }
        results = _finish_edit(
            run, o, ckpt, splits, target, result, models, "relabel", extra, argv, start
        )
    except BaseException:
        run.abort()
        raise
    run.commit()
    return results
