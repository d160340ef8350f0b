"""``geninf score``: which training examples drive chosen predictions (and self-influence).

Scores follow :mod:`geninf.scoring.api`: ``score[q, i]`` estimates the change of query q's loss
when training example i is removed — positive: i is helpful, negative: harmful. With a subset
method (gif, freezing, projecting) the parameters J are selected from the query examples with
``criterion`` and ``ratio``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ...distributed import is_main_process
from ...errors import InputError
from ...objective import SupervisedObjective
from ...scoring import (
    plot_query_top_examples,
    score,
    self_influence,
    top_k,
    write_scores_csv,
    write_scores_json,
)
from ...scoring.api import SIGN_CONVENTION
from ...selection import select_with_summary
from ..checkpoint import load_checkpoint
from ..plots import matplotlib_available
from ..rundir import RunDir
from .common import base_config, collect_warnings, finish, set_threads, solver_options
from .inputs import load_data, parse_queries, resolve_device

__all__ = ["score_run"]

_SUBSET_METHODS = ("gif", "freezing", "projecting")


def _entries(idx: Any, values: Any, labels: Any) -> list[dict[str, Any]]:
    return [
        {"train": int(i), "label": int(labels[int(i)]), "score": float(v)}
        for i, v in zip(idx.tolist(), values.tolist(), strict=True)
    ]


def score_run(
    *,
    checkpoint: str,
    out: str,
    queries: str = "test:0-7",
    method: str = "gif",
    criterion: str = "highest_gradients",
    ratio: float = 0.05,
    solver: str = "auto",
    max_iter: int | None = None,
    tol: float | None = None,
    damping: float = 0.01,
    k: int = 5,
    train_examples: int | None = None,
    self_influence_top: bool = False,
    batch_size: int | None = None,
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
    """Score the training examples (the first ``train_examples`` of the training split, or all)
    against ``queries``; with ``self_influence_top`` also their self-influence. Writes
    ``scores.csv`` (top-k table), ``scores.json`` and ``plots/top_examples.png``."""
    o = dict(locals())
    o.pop("argv")
    start = time.perf_counter()
    set_threads(threads)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, overrides={"model": model, "width": width, "data": data})
    index_file = queries.partition(":")[2] if queries.startswith("indices:") else None
    run = RunDir(out, force=force, inputs=[ckpt.path, index_file], enabled=is_main_process())
    try:
        splits = load_data(ckpt.info)
        split, q_idx = parse_queries(queries, splits)
        qx, qy = (t[q_idx] for t in getattr(splits, split))
        x, y = splits.train
        m = int(y.numel())
        n = m if train_examples is None else int(train_examples)
        if not 1 <= n <= m:
            raise InputError(f"--train-examples must be in [1, {m}], got {train_examples}")
        if not 1 <= int(k) <= n:
            raise InputError(f"--k must be in [1, {n}] (the scored training examples), got {k}")
        train = (x[:n], y[:n])
        net = ckpt.model.to(dev)
        wd = float((ckpt.info.get("training") or {}).get("weight_decay", 0.0))
        objective = SupervisedObjective(weight_decay=wd)
        options = solver_options(solver, max_iter, tol)
        subset, subset_info = None, None
        caught: list[str] = []
        with collect_warnings(caught):
            if method in _SUBSET_METHODS:
                subset, summary = select_with_summary(
                    net, objective, (qx, qy), criterion=criterion, ratio=ratio, seed=seed
                )
                subset_info = {
                    "selected": len(subset),
                    "total": subset.num_total,
                    "criterion": criterion,
                    "ratio": ratio,
                }
            common = dict(
                method=method,
                subset=subset,
                solver=solver,
                damping=damping,
                solver_options=options,
                num_train=m,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
            )
            scores = score(net, objective, train, (qx, qy), **common).cpu()
            si = (
                self_influence(net, objective, train, **common).cpu()
                if self_influence_top
                else None
            )
        best = top_k(scores, int(k))
        query_rows = []
        for r, qi in enumerate(q_idx.tolist()):
            query_rows.append(
                {
                    "split": split,
                    "index": qi,
                    "label": int(qy[r]),
                    "helpful": _entries(best.helpful[r], best.helpful_scores[r], y),
                    "harmful": _entries(best.harmful[r], best.harmful_scores[r], y),
                }
            )
        figures: list[str] = []
        if run.root is not None:
            ids = [f"{split}:{i}" for i in q_idx.tolist()]
            write_scores_csv(run.file("scores.csv"), scores, k=int(k), query_ids=ids)
            write_scores_json(
                run.file("scores.json"),
                scores,
                k=int(k),
                query_ids=ids,
                metadata={"method": method, "num_train": m},
            )
            if matplotlib_available() and len(splits.input_shape) in (1, 3):
                shape = None if len(splits.input_shape) == 3 else _square(splits.input_shape[0])
                if len(splits.input_shape) == 3 or shape is not None:
                    plot_query_top_examples(
                        run.file("plots/top_examples.png"),
                        qx,
                        train[0],
                        scores,
                        k=min(int(k), 5),
                        image_shape=shape,
                        query_labels=qy,
                        train_labels=train[1],
                    )
                    figures.append("plots/top_examples.png")
        results: dict[str, Any] = {
            "kind": "score",
            "title": f"Scores of {n} training examples for {len(q_idx)} queries ({method})",
            "convention": SIGN_CONVENTION,
            "method": method,
            "num_train": m,
            "num_scored": n,
            "subset": subset_info,
            "queries": query_rows,
            "files": ["scores.csv", "scores.json"],
            "warnings": caught,
        }
        if si is not None:
            order = si.argsort(descending=True)
            results["self_influence"] = {
                "top": [
                    {"train": int(i), "label": int(y[int(i)]), "score": float(si[int(i)])}
                    for i in order[: int(k)]
                ],
            }
        results["wall_time"] = time.perf_counter() - start
        config = base_config("score", o, argv)
        config.update(device=str(dev), checkpoint=ckpt.info)
        results = finish(run, config, results, extra_plots=figures)
    except BaseException:
        run.abort()
        raise
    run.commit()
    return results


def _square(size: int) -> tuple[int, int] | None:
    side = int(round(size**0.5))
    return (side, side) if side * side == size else None
