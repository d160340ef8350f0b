"""``geninf.select``: choose the parameters GIF may move (method.md §5)."""

from __future__ import annotations

import numbers
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from .._seed import check_seed
from ..data import as_batches
from ..distributed import broadcast_int
from ..errors import DataError, InputError, SubsetError
from ..functional import FunctionalModel, check_model_deterministic
from ..params.subset import ParameterSubset
from .choose import budget, choose_random, choose_ranked
from .criteria import Criterion
from .groups import LayerGroup
from .rules import layer_groups
from .statistics import collect_scores
from .summary import LayerSelection, SelectionSummary

__all__ = ["select", "select_with_summary"]


def select(
    model: nn.Module,
    objective: Any = None,
    data: Any = None,
    *,
    criterion: Criterion | str,
    ratio: float | None = None,
    seed: int | None = None,
    max_examples: int | None = None,
    batch_size: int | None = None,
    exclude_normalization: bool = False,
    names: Iterable[str] | None = None,
    modules: Iterable[nn.Module | str] | nn.Module | str | None = None,
) -> ParameterSubset:
    """Choose the parameter elements J that GIF may move.

    The ranking criteria give every layer group (see :mod:`geninf.selection.rules` for the rule
    of each layer type) a budget of ``int(ratio · size)`` elements — the authors' formula, which
    rounds down, so a layer whose budget rounds to 0 contributes nothing. They rank the layer's
    output units by |mean output| or |mean ∂loss/∂output| over ``data`` (the examples being
    removed or changed), take whole units (incoming weights and bias) from the top (``highest_*``)
    or the bottom (``lowest_*``) while they fit, and fill the rest of the budget with random
    weights of the next unit. ``random`` draws ``int(ratio · size)`` uniform elements per layer.
    ``saliency`` ranks single elements by |mean ∂loss/∂θ_i| over ``data`` with the same
    per-layer budget. ``by_names``, ``by_modules`` and ``all`` are explicit choices that ignore
    ``ratio``.

    Args:
        model: the trained model; it is only called (never edited, its mode never changed).
        objective: the loss (see :func:`geninf.objective.as_objective`); used by the gradient
            criteria, and to call the model on a batch.
        data: the examples being removed or changed, in any format :func:`geninf.data.as_batches`
            accepts. Needed by the ranking criteria only.
        criterion: a :class:`Criterion` or its string value.
        ratio: fraction of each layer to select, in (0, 1]; needed by the ranking criteria and
            ``random``, ignored (but checked) by the others.
        seed: seed of the local ``torch.Generator`` behind every random draw (the ``random``
            criterion and the partial unit of the ranking ones). None draws a fresh seed (see
            ``SelectionSummary.seed``). The global RNG is never used.
        max_examples: compute the statistics on the first ``max_examples`` examples of ``data``
            only (in data order; batches are cut at that point).
        batch_size: batch size when ``data`` is a tuple of tensors or a Dataset.
        exclude_normalization: select nothing in BatchNorm/InstanceNorm/GroupNorm/LayerNorm/
            RMSNorm layers (the paper's code never selects them). Applies to every criterion.
        names: parameter names (as in ``model.named_parameters()``) for ``by_names``.
        modules: submodules or their dotted names for ``by_modules``.

    Returns:
        The selected :class:`~geninf.params.ParameterSubset`. Use :func:`select_with_summary` for
        the per-layer account.

    Raises:
        InputError: bad ``ratio``/``seed`` (not an int, or outside torch's seed range
            [-2**63, 2**64 - 1])/``max_examples``, an unknown criterion, ``names`` or
            ``modules`` missing or given to another criterion.
        DataError: ``data`` missing or empty for a ranking criterion.
        DeterminismError: a ranking criterion on a model in train mode with dropout/batch norm.
        SubsetError: a model without trainable parameters, or an empty selection.

    Example:
        >>> import torch
        >>> from geninf.selection import select
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> subset = select(net, None, (x, y), criterion="highest_gradients", ratio=0.25, seed=0)
        >>> len(subset)  # int(0.25 · 40) + int(0.25 · 27)
        16
    """
    return select_with_summary(
        model,
        objective,
        data,
        criterion=criterion,
        ratio=ratio,
        seed=seed,
        max_examples=max_examples,
        batch_size=batch_size,
        exclude_normalization=exclude_normalization,
        names=names,
        modules=modules,
    )[0]


def select_with_summary(
    model: nn.Module,
    objective: Any = None,
    data: Any = None,
    *,
    criterion: Criterion | str,
    ratio: float | None = None,
    seed: int | None = None,
    max_examples: int | None = None,
    batch_size: int | None = None,
    exclude_normalization: bool = False,
    names: Iterable[str] | None = None,
    modules: Iterable[nn.Module | str] | nn.Module | str | None = None,
) -> tuple[ParameterSubset, SelectionSummary]:
    """:func:`select`, and a :class:`SelectionSummary` of what it chose in every layer."""
    start = time.perf_counter()
    crit = Criterion.parse(criterion)
    groups = layer_groups(model)
    ratio = _check_options(crit, ratio, seed, max_examples, names, modules)
    generator = torch.Generator()
    if seed is None:  # one fresh seed, rank 0's under torch.distributed: one subset everywhere
        generator.manual_seed(broadcast_int(int(generator.seed()) % 2**63))
    else:
        generator.manual_seed(int(seed))
    num_examples = 0
    if crit.is_ranking:
        masks, rows, num_examples = _ranked(
            model,
            objective,
            data,
            groups,
            crit,
            ratio,
            generator,
            max_examples=max_examples,
            batch_size=batch_size,
            exclude=exclude_normalization,
        )
    else:
        if data is not None:
            as_batches(data, batch_size)  # reject malformed data early, even if unused
        if crit is Criterion.RANDOM:
            masks, rows = _random(groups, ratio, generator, exclude_normalization)
        else:
            masks, rows = _explicit(model, groups, crit, names, modules, exclude_normalization)
    if not any(bool(m.any()) for m in masks.values()):
        raise SubsetError(_empty_advice(groups, crit, ratio, exclude_normalization))
    subset = ParameterSubset.from_masks(model, masks)
    summary = SelectionSummary(
        criterion=crit.value,
        ratio=ratio if crit.uses_ratio else None,
        seed=generator.initial_seed(),
        num_examples=num_examples,
        seconds=time.perf_counter() - start,
        layers=tuple(rows),
    )
    return subset, summary


def _ranked(
    model, objective, data, groups, crit, ratio, generator, *, max_examples, batch_size, exclude
):
    if data is None:
        raise DataError(
            f"criterion {crit.value!r} ranks units by statistics of data: pass the examples "
            "being removed or changed as data"
        )
    batches = as_batches(data, batch_size)
    _check_eval_mode(model)
    if crit.per_element:
        groups = [g.as_elements(crit.value) for g in groups]
    fm = FunctionalModel(model, objective, check_determinism=False)
    pairs, num_examples = collect_scores(
        fm, groups, batches, gradients=crit.uses_gradients, max_examples=max_examples
    )
    masks, rows = {}, []
    for group, scores in pairs:
        if exclude and group.normalization:
            count, rule = 0, "excluded (normalization)"
        else:
            count = budget(ratio, group)
            rule = f"{_rule_head(group)} by {group.statistic.describe(crit.uses_gradients)}"
            rule += _rule_note(group)
        chosen = choose_ranked(group, scores, count, crit.descending, generator)
        masks.update(chosen)
        rows.append(_row(group, rule, chosen))
    return masks, rows, num_examples


def _check_eval_mode(model: nn.Module) -> None:
    check_model_deterministic(
        model,
        "the selection statistics would be random and batch norm would update its running "
        "statistics",
    )


def _random(groups, ratio, generator, exclude):
    masks, rows = {}, []
    for group in groups:
        excluded = exclude and group.normalization
        count = 0 if excluded else budget(ratio, group)
        chosen = choose_random(group, count, generator)
        masks.update(chosen)
        rows.append(
            _row(group, "excluded (normalization)" if excluded else "random elements", chosen)
        )
    return masks, rows


def _explicit(model, groups, crit, names, modules, exclude):
    if crit is Criterion.BY_NAMES:
        subset = ParameterSubset.from_names(model, names)
    elif crit is Criterion.BY_MODULES:
        subset = ParameterSubset.from_modules(model, modules)
    else:
        subset = ParameterSubset.all(model)
    all_masks = subset.masks()
    masks, rows = {}, []
    for group in groups:
        chosen = {m.name: all_masks[m.name] for m in group.members}
        rule = crit.value
        if exclude and group.normalization:
            chosen = {n: torch.zeros_like(t) for n, t in chosen.items()}
            rule = "excluded (normalization)"
        masks.update(chosen)
        rows.append(_row(group, rule, chosen))
    return masks, rows


def _rule_head(group: LayerGroup) -> str:
    return group.rule.split(" (", 1)[0]


def _rule_note(group: LayerGroup) -> str:
    head, _, note = group.rule.partition(" (")
    return f" ({note}" if note else ""


def _row(group: LayerGroup, rule: str, chosen: dict[str, Tensor]) -> LayerSelection:
    selected = sum(int(t.sum()) for t in chosen.values())
    return LayerSelection(group.name, group.module_type, rule, selected, group.numel)


def _check_options(crit, ratio, seed, max_examples, names, modules) -> float | None:
    if ratio is not None or crit.uses_ratio:
        ratio = _check_ratio(ratio, crit)
    if seed is not None:
        check_seed(seed)
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, numbers.Integral)
        or max_examples < 1
    ):
        raise InputError(f"max_examples must be a positive int or None, got {max_examples!r}")
    if names is not None and crit is not Criterion.BY_NAMES:
        raise InputError(f"names is used by criterion='by_names' only, not {crit.value!r}")
    if modules is not None and crit is not Criterion.BY_MODULES:
        raise InputError(f"modules is used by criterion='by_modules' only, not {crit.value!r}")
    if crit is Criterion.BY_NAMES and names is None:
        raise InputError("criterion='by_names' needs names=[...] (parameter names to select)")
    if crit is Criterion.BY_MODULES and modules is None:
        raise InputError("criterion='by_modules' needs modules=[...] (submodules or their names)")
    return ratio


def _check_ratio(ratio: Any, crit: Criterion) -> float:
    if ratio is None:
        raise InputError(
            f"criterion {crit.value!r} needs ratio, the fraction of each layer to select, in "
            "(0, 1]; e.g. ratio=0.05"
        )
    if isinstance(ratio, Tensor) and ratio.numel() == 1:
        ratio = ratio.item()
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise InputError(f"ratio must be a number in (0, 1], got {ratio!r}")
    value = float(ratio)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise InputError(
            f"ratio must be in (0, 1] (the fraction of each layer to select), got {value}; "
            "e.g. ratio=0.05 selects 5% of every layer"
        )
    return value


def _empty_advice(groups: list[LayerGroup], crit: Criterion, ratio, exclude: bool) -> str:
    eligible = [g for g in groups if not (exclude and g.normalization)]
    if not eligible:
        return (
            "the selection is empty: every trainable parameter is in a normalization layer and "
            "exclude_normalization=True; set exclude_normalization=False"
        )
    if not crit.uses_ratio:
        return (
            "the selection is empty: the chosen parameters all belong to normalization layers, "
            "which exclude_normalization=True removes; choose other parameters"
        )
    largest = max(g.numel for g in eligible)
    return (
        f"the selection is empty: with ratio={ratio:g} every layer's budget int(ratio · size) "
        f"rounds down to 0 (the largest layer has {largest} elements); use ratio >= "
        f"{1.0 / largest:.3g}"
    )
