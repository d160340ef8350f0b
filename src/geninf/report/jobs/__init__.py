"""The command-line jobs as Python functions; each writes one run directory.

Every job validates its inputs, writes into a staging directory and renames it into place only
when everything succeeded (:class:`~geninf.report.RunDir`), and returns its results — the content
of the run's ``results.json``. A job's options are the fields of its config class
(:class:`TrainJob`, :class:`RemoveJob`, :class:`RelabelJob`, :class:`ScoreJob`,
:class:`BenchJob`; :mod:`.config`), from which its keyword entry point (``train_run(**options)``,
...) takes its signature; the edit options are one :class:`~geninf.edit.config.EditConfig`.
"""

from .bench import BenchJob, bench_run
from .config import JobConfig, RunConfig
from .edit import RelabelJob, RemoveJob, relabel_run, remove_run
from .regenerate import regenerate_report
from .score import ScoreJob, score_run
from .train import TrainJob, train_run

__all__ = [
    "BenchJob",
    "JobConfig",
    "RelabelJob",
    "RemoveJob",
    "RunConfig",
    "ScoreJob",
    "TrainJob",
    "bench_run",
    "regenerate_report",
    "relabel_run",
    "remove_run",
    "score_run",
    "train_run",
]
