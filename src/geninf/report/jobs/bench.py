"""``geninf bench``: the paper's experiments (:mod:`geninf.bench.experiments`) as run directories.

The experiment writes ``results.json``, ``table.md`` and its PNGs; this job adds
``config.json`` and ``report.md`` / ``report.html`` showing the table and every PNG.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import InputError
from ..content import write_report
from ..rundir import RunDir, read_json
from .common import base_config, collect_warnings
from .config import JobConfig, Started, keyword_entry, run_in, start_job

__all__ = ["EXPERIMENTS", "QUICK", "BenchJob", "bench_run", "experiment_result"]

#: experiment name → (config class, runner, result class) in geninf.bench.experiments
EXPERIMENTS = {
    "class-removal": ("ClassRemovalConfig", "run_class_removal", "ClassRemovalResult"),
    "selection": ("SelectionConfig", "run_selection_criteria", "SelectionResult"),
    "backdoor": ("BackdoorConfig", "run_backdoor", "BackdoorResult"),
}
_RESULT_NAMES = {
    "class_removal": "ClassRemovalResult",
    "selection_criteria": "SelectionResult",
    "backdoor": "BackdoorResult",
}

#: ``--quick``: a sanity run (the same overrides as benchmarks/run_experiments.py --quick)
QUICK: dict[str, dict[str, Any]] = {
    "class-removal": {"seeds": (0, 1), "epochs": 15, "ratios": (0.05,)},
    "selection": {"seeds": (0, 1), "epochs": 15, "ratios": (0.01, 0.05, 0.3)},
    "backdoor": {"seeds": (0, 1), "epochs": 6, "max_train": 700, "schedules": ("paper",)},
}


def _experiments() -> Any:
    try:
        return importlib.import_module("geninf.bench.experiments")
    except ImportError as exc:  # pragma: no cover - depends on the installed version
        raise InputError(f"geninf bench is not available in this installation ({exc})") from None


def _lookup(module: Any, name: str) -> Any:
    if not hasattr(module, name):  # pragma: no cover - depends on the installed version
        raise InputError(f"geninf bench: geninf.bench.experiments has no {name} yet")
    return getattr(module, name)


@dataclass(frozen=True, kw_only=True)
class BenchJob(JobConfig):
    """Run ``experiment`` (class-removal, selection or backdoor) into the run directory ``out``.

    ``overrides`` are fields of the experiment's config (``epochs``, ``ratios``, ``methods``, ...),
    applied after the ``quick`` preset; ``seeds`` = N runs seeds 0..N−1.

    Returns:
        The experiment's results (the content of ``results.json``).
    """

    experiment: str
    seeds: int | None = None
    quick: bool = False
    overrides: dict[str, Any] | None = None
    cache_dir: str | None = "runs/experiment-cache"

    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("out", "threads", "force", "progress")

    def settings(self, config_cls: type) -> dict[str, Any]:
        """The fields of the experiment's config this job sets: the ``quick`` preset, then the
        ``overrides`` (None: not given), ``seeds``, ``cache_dir`` and ``progress``.

        Raises:
            InputError: an override that is not a field of ``config_cls``; ``seeds`` < 1.
        """
        fields = {f.name for f in dataclasses.fields(config_cls)}
        over: dict[str, Any] = dict(QUICK[self.experiment]) if self.quick else {}
        for key, value in (self.overrides or {}).items():
            if value is None:
                continue
            if key not in fields:
                raise InputError(
                    f"--{key.replace('_', '-')} does not apply to bench {self.experiment}; its "
                    f"settings are {', '.join(sorted(fields))}"
                )
            over[key] = value
        if self.seeds is not None:
            if self.seeds < 1:
                raise InputError(f"--seeds must be >= 1, got {self.seeds}")
            over["seeds"] = tuple(range(int(self.seeds)))
        over.update(cache_dir=self.cache_dir, progress=self.run.progress)
        return over


def run_bench_job(job: BenchJob) -> dict[str, Any]:
    """Run ``geninf bench`` (see :class:`BenchJob`) into ``job.run.out``."""
    if job.experiment not in EXPERIMENTS:
        raise InputError(f"unknown experiment {job.experiment!r}; choose {', '.join(EXPERIMENTS)}")
    started = start_job(job.run)
    module = _experiments()
    config_name, runner_name, _ = EXPERIMENTS[job.experiment]
    config_cls, runner = _lookup(module, config_name), _lookup(module, runner_name)
    over = job.settings(config_cls)
    config = dataclasses.replace(config_cls(), **over)
    return run_in(job.run, lambda run: _bench(job, module, runner, config, over, started, run))


bench_run = keyword_entry(BenchJob, run_bench_job, "bench_run")


def _bench(job, module, runner, config, over, started: Started, run: RunDir) -> dict[str, Any]:
    caught: list[str] = []
    with collect_warnings(caught):
        result = runner(config)
    name = job.experiment
    record = base_config(f"bench {name}", {"experiment": name, **over}, job.run.argv)
    record.update(
        kind="bench", experiment=name, config=config.to_dict(), seeds={"model": list(config.seeds)}
    )
    results = result.to_dict()
    if run.root is not None:
        paths = _lookup(module, "write_outputs")(result, run.root)
        results = read_json(paths["json"], "results")
        _write_bench_report(Path(run.root), record, paths, caught, started.elapsed())
    return results


def _write_bench_report(
    root: Path, record: dict[str, Any], paths: dict[str, Any], caught: list[str], wall: float
) -> None:
    from ..rundir import atomic_write_json

    plots = [str(Path(p).resolve().relative_to(root.resolve())) for p in paths.get("plots", [])]
    record["files"] = {"results": "results.json", "table": "table.md", "plots": plots}
    record["warnings"], record["wall_time"] = caught, wall
    atomic_write_json(root / "config.json", record)
    view = {"title": f"geninf bench {record['experiment']}", "plots": plots, "warnings": caught}
    write_report(root, record, view, markdown=(root / "table.md").read_text(encoding="utf-8"))


def experiment_result(results: dict[str, Any]) -> Any:
    """Rebuild an experiment result object from its ``results.json`` (for ``geninf report``)."""
    module = _experiments()
    cls = _lookup(module, _RESULT_NAMES.get(results.get("name", ""), "ExperimentResult"))
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in results.items() if k in names})
