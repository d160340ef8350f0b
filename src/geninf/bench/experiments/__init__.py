"""The paper's experiments at embedded scale: class removal, selection criteria, backdoor.

Each experiment is a function taking a validated config dataclass and returning a result with
``to_dict()``; :func:`write_outputs` saves ``results.json``, ``table.md`` (mean ± sample std over
seeds) and PNG plots. ``benchmarks/run_experiments.py`` is the command-line runner.

- :func:`run_class_removal` (paper Table 1): every method × modification ratio × schedule,
  against retraining from scratch.
- :func:`run_selection_criteria` (paper Fig. 3): test accuracy vs modification ratio for the
  five selection criteria, with GIF.
- :func:`run_backdoor` (the authors' backdoor table): recovery from a checkerboard backdoor by
  relabeling or removing the poisoned examples.

Protocol (method.md §6): three disjoint splits; edits see the training data and a validation
score only; the test split is read only after an edit returned, for reporting.
"""

from .backdoor import BackdoorConfig, BackdoorResult, BackdoorValidation, run_backdoor
from .class_removal import ClassRemovalConfig, ClassRemovalResult, run_class_removal
from .common import ExperimentConfig
from .report import ExperimentResult, markdown_table, write_outputs
from .selection_criteria import SelectionConfig, SelectionResult, run_selection_criteria

__all__ = [
    "BackdoorConfig",
    "BackdoorResult",
    "BackdoorValidation",
    "ClassRemovalConfig",
    "ClassRemovalResult",
    "ExperimentConfig",
    "ExperimentResult",
    "SelectionConfig",
    "SelectionResult",
    "markdown_table",
    "run_backdoor",
    "run_class_removal",
    "run_selection_criteria",
    "write_outputs",
]
