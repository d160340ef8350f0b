"""Run directories and their reports: safe files, model checkpoints, plots, Markdown/HTML.

A run directory (what every ``geninf`` command writes) holds

- ``config.json`` — the resolved configuration: command, options, seeds, versions, threads;
- ``results.json`` — the machine-readable result (what ``--json`` prints);
- ``model.safetensors`` — the trained or edited model, with the recipe of its architecture
  (:mod:`geninf.report.checkpoint`), for train / remove / relabel;
- ``report.md`` and ``report.html`` — tables and the PNG plots under ``plots/``, referenced by
  relative paths.

Directories are written through a staging directory and renamed into place when complete
(:class:`RunDir`): an interrupted run leaves nothing half-written, and an existing directory is
replaced only with ``force``. The jobs behind the commands are in :mod:`geninf.report.jobs`.
"""

from .checkpoint import Checkpoint, load_checkpoint, save_model
from .document import Document
from .gradcam import grad_cam, last_conv_layer
from .plots import (
    plot_accuracy_vs_ratio,
    plot_class_histograms,
    plot_convergence,
    plot_gradcam,
    plot_training_curve,
)
from .rundir import RunDir, atomic_write, atomic_write_json, atomic_write_text, read_json, versions

__all__ = [
    "Checkpoint",
    "Document",
    "RunDir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "grad_cam",
    "last_conv_layer",
    "load_checkpoint",
    "plot_accuracy_vs_ratio",
    "plot_class_histograms",
    "plot_convergence",
    "plot_gradcam",
    "plot_training_curve",
    "read_json",
    "save_model",
    "versions",
]
