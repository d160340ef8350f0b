"""Model editing: remove training data or change labels, with influence methods and baselines.

:func:`remove` and :func:`relabel` return an :class:`EditResult`: an edited deep copy of the
model and an :class:`EditRecord` of how it was made (method, subset, solver diagnostics, schedule
choices, compute, wall time, seed and options). The maths and sign conventions are in
:mod:`geninf.influence` (first order) and :mod:`geninf.edit.second_order`; the compute unit in
:mod:`geninf.edit.record`; the schedules in :mod:`geninf.edit.schedules`.

Example:
    >>> import torch
    >>> from geninf.edit import remove
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(40, 3, dtype=torch.float64), torch.randint(0, 2, (40,))
    >>> net = torch.nn.Linear(3, 2).double()
    >>> result = remove(net, None, (x[5:], y[5:]), (x[:5], y[:5]), method="original", damping=0.1)
    >>> result.record.method, result.record.num_edited
    ('original', 5)
"""

from .api import relabel, remove
from .damping import DampingSpec
from .forget_sets import (
    check_forget_indices,
    random_forget_indices,
    source_forget_indices,
    split_forget,
)
from .options import EditOptions
from .record import HVP_COST, ComputeUsed, EditMethod, EditRecord, EditResult, Schedule
from .second_order import SecondOrderTerms, second_order_terms
from .validation import ClassRemovalValidation, LabelChangeValidation, f1_score

__all__ = [
    "HVP_COST",
    "ClassRemovalValidation",
    "ComputeUsed",
    "DampingSpec",
    "EditMethod",
    "EditOptions",
    "EditRecord",
    "EditResult",
    "LabelChangeValidation",
    "Schedule",
    "SecondOrderTerms",
    "check_forget_indices",
    "f1_score",
    "random_forget_indices",
    "relabel",
    "remove",
    "second_order_terms",
    "source_forget_indices",
    "split_forget",
]
