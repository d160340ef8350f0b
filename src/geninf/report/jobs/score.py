"""``geninf score``: which training examples drive chosen predictions (and self-influence).

Scores follow :mod:`geninf.scoring.api`: ``score[q, i]`` estimates the change of query q's loss
when training example i is removed — positive: i is helpful, negative: harmful. With a subset
method (gif, freezing, projecting) the parameters J are selected from the query examples with
``criterion`` and ``ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor, nn

from ...bench.datasets import Splits
from ...defaults import EDIT_DEFAULTS
from ...edit.config import solver_options
from ...errors import InputError
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
from ..checkpoint import Checkpoint
from ..plots import matplotlib_available
from ..rundir import RunDir
from .common import base_config, collect_warnings, finish
from .config import (
    CheckpointJob,
    Started,
    checkpoint_objective,
    keyword_entry,
    run_in,
    start_job,
)
from .inputs import load_data, parse_queries

__all__ = ["ScoreJob", "score_run"]

_SUBSET_METHODS = ("gif", "freezing", "projecting")


@dataclass(frozen=True, kw_only=True)
class ScoreJob(CheckpointJob):
    """Score the training examples (the first ``train_examples`` of the training split, or all)
    against ``queries``; with ``self_influence_top`` also their self-influence. Writes
    ``scores.csv`` (top-k table), ``scores.json`` and ``plots/top_examples.png``."""

    queries: str = "test:0-7"
    method: str = "gif"
    criterion: str = EDIT_DEFAULTS.criterion  # as geninf remove (and the score flags)
    ratio: float = EDIT_DEFAULTS.ratio
    solver: str = "auto"
    max_iter: int | None = None
    tol: float | None = None
    damping: float = 0.01
    k: int = 5
    train_examples: int | None = None
    self_influence_top: bool = False
    batch_size: int | None = None
    seed: int = 0

    @property
    def input_file(self) -> str | None:
        return self.queries.partition(":")[2] if self.queries.startswith("indices:") else None


class _Queries(NamedTuple):
    split: str
    indices: Tensor
    data: tuple[Tensor, Tensor]


def run_score_job(job: ScoreJob) -> dict[str, Any]:
    """Run ``geninf score`` (see :class:`ScoreJob`) into ``job.run.out``."""
    started = start_job(job.run)
    ckpt = job.load()
    return run_in(job.run, lambda run: _score(job, ckpt, started, run), [ckpt.path, job.input_file])


score_run = keyword_entry(ScoreJob, run_score_job, "score_run")


def _train_data(job: ScoreJob, splits: Splits) -> tuple[tuple[Tensor, Tensor], int]:
    """The scored training examples and the size of the training split (checked)."""
    x, y = splits.train
    m = int(y.numel())
    n = m if job.train_examples is None else int(job.train_examples)
    if not 1 <= n <= m:
        raise InputError(f"--train-examples must be in [1, {m}], got {job.train_examples}")
    if not 1 <= int(job.k) <= n:
        raise InputError(f"--k must be in [1, {n}] (the scored training examples), got {job.k}")
    return (x[:n], y[:n]), m


def _score(job: ScoreJob, ckpt: Checkpoint, started: Started, run: RunDir) -> dict[str, Any]:
    splits = load_data(ckpt.info)
    split, q_idx = parse_queries(job.queries, splits)
    queries = _Queries(split, q_idx, tuple(t[q_idx] for t in getattr(splits, split)))
    train, m = _train_data(job, splits)
    net, objective = ckpt.model.to(started.device), checkpoint_objective(ckpt)
    caught: list[str] = []
    with collect_warnings(caught):
        subset, subset_info = _subset(job, net, objective, queries.data)
        common = dict(
            method=job.method,
            subset=subset,
            solver=job.solver,
            damping=job.damping,
            solver_options=solver_options(job.solver, job.max_iter, job.tol),
            num_train=m,
            batch_size=job.batch_size,
            seed=job.seed,
            progress=job.run.progress,
        )
        scores = score(net, objective, train, queries.data, **common).cpu()
        si = (
            self_influence(net, objective, train, **common).cpu()
            if job.self_influence_top
            else None
        )
    figures = _write_scores(run, job, splits, queries, train, scores, m)
    results = _results(job, queries, scores, splits, m, len(train[1]), subset_info, caught)
    if si is not None:
        order = si.argsort(descending=True)
        y = splits.train[1]
        top = [
            {"train": int(i), "label": int(y[int(i)]), "score": float(si[int(i)])}
            for i in order[: int(job.k)]
        ]
        results["self_influence"] = {"top": top}
    results["wall_time"] = started.elapsed()
    config = base_config("score", job.options(), job.run.argv)
    config.update(device=str(started.device), checkpoint=ckpt.info)
    return finish(run, config, results, extra_plots=figures)


def _subset(job: ScoreJob, net: nn.Module, objective: Any, queries: Any) -> tuple[Any, Any]:
    """The parameters a subset method may move, selected from the queries (None: all)."""
    if job.method not in _SUBSET_METHODS:
        return None, None
    subset, _ = select_with_summary(
        net, objective, queries, criterion=job.criterion, ratio=job.ratio, seed=job.seed
    )
    info = {
        "selected": len(subset),
        "total": subset.num_total,
        "criterion": job.criterion,
        "ratio": job.ratio,
    }
    return subset, info


def _entries(idx: Any, values: Any, labels: Any) -> list[dict[str, Any]]:
    return [
        {"train": int(i), "label": int(labels[int(i)]), "score": float(v)}
        for i, v in zip(idx.tolist(), values.tolist(), strict=True)
    ]


def _results(job, queries, scores, splits, m, n, subset_info, caught) -> dict[str, Any]:
    """``results.json`` of a score run (but self-influence and wall time)."""
    best = top_k(scores, int(job.k))
    y = splits.train[1]
    qy = queries.data[1]
    query_rows = [
        {
            "split": queries.split,
            "index": qi,
            "label": int(qy[r]),
            "helpful": _entries(best.helpful[r], best.helpful_scores[r], y),
            "harmful": _entries(best.harmful[r], best.harmful_scores[r], y),
        }
        for r, qi in enumerate(queries.indices.tolist())
    ]
    title = f"Scores of {n} training examples for {len(queries.indices)} queries ({job.method})"
    return {
        "kind": "score",
        "title": title,
        "convention": SIGN_CONVENTION,
        "method": job.method,
        "num_train": m,
        "num_scored": n,
        "subset": subset_info,
        "queries": query_rows,
        "files": ["scores.csv", "scores.json"],
        "warnings": caught,
    }


def _write_scores(run, job, splits, queries, train, scores, m) -> list[str]:
    """Write ``scores.csv``, ``scores.json`` and the top-examples plot; return the plots."""
    if run.root is None:
        return []
    k = int(job.k)
    ids = [f"{queries.split}:{i}" for i in queries.indices.tolist()]
    write_scores_csv(run.file("scores.csv"), scores, k=k, query_ids=ids)
    metadata = {"method": job.method, "num_train": m}
    write_scores_json(run.file("scores.json"), scores, k=k, query_ids=ids, metadata=metadata)
    shape = splits.input_shape
    if not matplotlib_available() or len(shape) not in (1, 3):
        return []
    image_shape = None if len(shape) == 3 else _square(shape[0])
    if len(shape) != 3 and image_shape is None:
        return []
    plot_query_top_examples(
        run.file("plots/top_examples.png"),
        queries.data[0],
        train[0],
        scores,
        k=min(k, 5),
        image_shape=image_shape,
        query_labels=queries.data[1],
        train_labels=train[1],
    )
    return ["plots/top_examples.png"]


def _square(size: int) -> tuple[int, int] | None:
    side = int(round(size**0.5))
    return (side, side) if side * side == size else None
