"""The command-line jobs as Python functions; each writes one run directory.

Every job validates its inputs, writes into a staging directory and renames it into place only
when everything succeeded (:class:`~geninf.report.RunDir`), and returns its results — the content
of the run's ``results.json``.
"""

from .bench import bench_run
from .edit import relabel_run, remove_run
from .regenerate import regenerate_report
from .score import score_run
from .train import train_run

__all__ = ["bench_run", "regenerate_report", "relabel_run", "remove_run", "score_run", "train_run"]
