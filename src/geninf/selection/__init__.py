"""Parameter selection: which elements of θ the generalized influence function may move.

:func:`select` implements the criteria of method.md §5 (Highest/Lowest-k outputs and gradients,
Random) and explicit choices (by names, by modules, all); :func:`select_with_summary` also returns
a per-layer :class:`SelectionSummary`. The rule used for each layer type is tabulated in
:mod:`geninf.selection.rules`; :func:`layer_groups` shows how a given model is split into layers.

Example:
    >>> import torch
    >>> from geninf.selection import select_with_summary
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    >>> subset, summary = select_with_summary(net, None, (x, y), criterion="highest_outputs",
    ...                                       ratio=0.5, seed=0)
    >>> [(layer.name, layer.selected, layer.total) for layer in summary.layers]
    [('0', 20, 40), ('2', 13, 27)]
"""

from .api import select, select_with_summary
from .criteria import Criterion
from .groups import LayerGroup
from .rules import layer_groups
from .summary import LayerSelection, SelectionSummary

__all__ = [
    "Criterion",
    "LayerGroup",
    "LayerSelection",
    "SelectionSummary",
    "layer_groups",
    "select",
    "select_with_summary",
]
