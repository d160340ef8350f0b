"""The statistics pass of the ranking criteria: one pass over the data, with temporary hooks.

The model is called through ``torch.func.functional_call`` on fresh leaf copies of its
parameters, with autograd enabled (which also keeps fused inference fast paths, such as
``nn.TransformerEncoderLayer``'s, from bypassing the submodules' hooks). Forward hooks record each
unit group's output; for the gradient criteria a hook adds a zero *probe* shaped like one
example's unit axis (``output + probe``), so that ``torch.autograd.grad(loss, probe)`` is the sum
of ∂loss/∂output over the batch and the positions — without ``.backward()``, without touching
``.grad`` or any attribute of the user's model. Hooks are registered for this one pass and
removed in ``finally``, even when the pass raises.

Per batch of n examples with mean loss L, a unit's output statistic is the mean of its output
over the batch's examples and positions, and its gradient statistic is
n · Σ ∂L/∂output / positions (the mean per-example ∂ℓ/∂output). Batches are averaged with
weights n. Parameter gradients (element rule, embeddings, attention in-projection) are averaged
the same way.

Under ``torch.distributed`` each rank takes every W-th batch (after the ``max_examples`` cut,
which is decided on the global batch order) and the weighted sums are all-reduced once at the
end, so every rank ranks the same statistics and selects the same subset.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import Batches, to_device
from ..distributed import all_reduce_sum, world
from ..errors import DataError, NonFiniteError, ObjectiveError
from ..functional import FunctionalModel
from ..objective import check_loss
from .groups import ElementValues, InProjection, LayerGroup, OutputUnits, TokenUse

__all__ = ["collect_scores"]


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


class _Collector:
    """Accumulates one unit group's statistic over the batches (base class)."""

    def __init__(self, group: LayerGroup, gradients: bool):
        self.group = group
        self.gradients = gradients
        self.total: Tensor | None = None
        self.examples = 0
        self.reset()

    def reset(self) -> None:
        self.sums: list[Tensor] = []
        self.positions: Tensor | int = 0
        self.probes: list[Tensor] = []
        self.fired = False

    def hook_module(self) -> torch.nn.Module:
        return self.group.statistic.module

    def register(self) -> Any:
        return self.hook_module().register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):  # pragma: no cover - overridden
        raise NotImplementedError

    def needed_params(self) -> set[str]:
        return set()

    def batch_statistic(self, n: int, probe_grads: list, param_grads: dict) -> Tensor | None:
        raise NotImplementedError

    def finish_batch(self, n: int, probe_grads: list, param_grads: dict) -> None:
        if self.fired:
            stat = self.batch_statistic(n, probe_grads, param_grads)
            if stat is not None:
                stat = n * stat
                self.total = stat if self.total is None else self.total + stat
                self.examples += n
        self.reset()

    def scores(self, params: dict[str, Tensor], mean_grads: dict[str, Tensor]) -> Tensor | None:
        if self.total is None:
            return None
        return (self.total / self.examples).abs()


class _OutputCollector(_Collector):
    """Units along ``unit_dims`` of the module's output (or of ``output[output_index]``)."""

    def hook(self, module, args, kwargs, output):
        stat: OutputUnits = self.group.statistic
        out = output if stat.output_index is None else _item(output, stat.output_index)
        if not isinstance(out, Tensor) or not out.is_floating_point():
            return None
        dims = stat.unit_dims(module, out)
        if any(d < 0 or d >= out.dim() for d in dims):
            return None
        if prod(out.shape[d] for d in dims) != self.group.num_units:
            return None
        self.fired = True
        self.device, self.acc = out.device, _acc_dtype(out.device)
        self.positions += out.numel() // self.group.num_units
        if not self.gradients:
            other = [d for d in range(out.dim()) if d not in dims]
            acc = _acc_dtype(out.device)
            with torch.no_grad():
                s = torch.sum(out.detach(), dim=other, dtype=acc) if other else out.detach()
                self.sums.append(s.to(acc).reshape(-1))
            return None
        shape = [out.shape[d] if d in dims else 1 for d in range(out.dim())]
        probe = torch.zeros(shape, dtype=out.dtype, device=out.device, requires_grad=True)
        self.probes.append(probe)
        new = out + probe
        if stat.output_index is None:
            return new
        items = list(output)
        items[stat.output_index] = new
        return tuple(items) if isinstance(output, tuple) else items

    def batch_statistic(self, n, probe_grads, param_grads):
        if not self.gradients:
            return sum(self.sums) / self.positions
        grads = [g.reshape(-1).to(_acc_dtype(g.device)) for g in probe_grads if g is not None]
        if not grads:  # the output does not reach the loss: its gradient is zero
            return torch.zeros(self.group.num_units, dtype=self.acc, device=self.device)
        return n * sum(grads) / self.positions


class _TokenCollector(_Collector):
    """Embedding rows: lookups per example (outputs) or the weight's mean gradient."""

    def hook(self, module, args, kwargs, output):
        idx = args[0] if args else kwargs.get("input")
        if not isinstance(idx, Tensor) or idx.is_floating_point():
            return None
        self.fired = True
        counts = torch.bincount(idx.reshape(-1), minlength=self.group.num_units)
        self.sums.append(counts[: self.group.num_units].to(_acc_dtype(counts.device)))
        return None

    def needed_params(self) -> set[str]:
        return {self.group.statistic.weight} if self.gradients else set()

    def batch_statistic(self, n, probe_grads, param_grads):
        return sum(self.sums) / n  # lookups per example

    def scores(self, params, mean_grads):
        if self.total is None:
            return None
        weight = self.group.statistic.weight
        if self.gradients:
            g = mean_grads.get(weight)
            return torch.zeros(self.group.num_units) if g is None else g.norm(dim=1)
        use = self.total / self.examples
        return use * params[weight].detach().to(use.dtype).norm(dim=1)


class _InProjectionCollector(_Collector):
    """q/k/v projection features of a MultiheadAttention, from its query/key/value inputs."""

    def hook(self, module, args, kwargs, output):
        names = ("query", "key", "value")
        xs = [args[i] if len(args) > i else kwargs.get(names[i]) for i in range(3)]
        if not all(isinstance(x, Tensor) for x in xs):
            return None
        self.fired = True
        e = module.embed_dim
        acc = _acc_dtype(xs[0].device)
        counts = [x.numel() // x.shape[-1] for x in xs]
        pos = torch.tensor(counts, dtype=acc, device=xs[0].device).repeat_interleave(e)
        self.positions = self.positions + pos
        if not self.gradients:
            with torch.no_grad():
                self.sums.append(_projection_sums(module, xs, acc))
        return None

    def needed_params(self) -> set[str]:
        stat: InProjection = self.group.statistic
        return {stat.bias} if self.gradients and stat.bias is not None else set()

    def batch_statistic(self, n, probe_grads, param_grads):
        if not self.gradients:
            return sum(self.sums) / self.positions
        g = param_grads.get(self.group.statistic.bias)
        if g is None:  # the projections do not reach the loss: their gradient is zero
            return torch.zeros_like(self.positions)
        return n * g.reshape(-1).to(self.positions.dtype) / self.positions


def _projection_sums(module: torch.nn.Module, xs: list[Tensor], acc: torch.dtype) -> Tensor:
    e = module.embed_dim
    if module._qkv_same_embed_dim:
        weights = module.in_proj_weight.split(e)
    else:
        weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
    bias = module.in_proj_bias
    biases = bias.split(e) if bias is not None else (None, None, None)
    sums = []
    for x, w, b in zip(xs, weights, biases, strict=True):
        proj = F.linear(x.detach(), w.detach(), None if b is None else b.detach())
        sums.append(torch.sum(proj.reshape(-1, e), dim=0, dtype=acc))
    return torch.cat(sums)


def _item(output: Any, index: int) -> Any:
    if isinstance(output, tuple | list) and len(output) > index:
        return output[index]
    return None


_COLLECTORS = {
    OutputUnits: _OutputCollector,
    TokenUse: _TokenCollector,
    InProjection: _InProjectionCollector,
}


def collect_scores(
    fm: FunctionalModel,
    groups: list[LayerGroup],
    data: Batches,
    *,
    gradients: bool,
    max_examples: int | None = None,
) -> tuple[list[tuple[LayerGroup, Tensor]], int]:
    """Rank statistics of every group over ``data`` (see the module docstring).

    Returns:
        ``([(group actually used, scores of its units (float64, CPU)), ...], number of examples)``.
        A unit group whose statistic is unavailable comes back under the element rule.
    """
    groups = [_prepare(g, gradients) for g in groups]
    collectors = {
        i: _COLLECTORS[type(g.statistic)](g, gradients)
        for i, g in enumerate(groups)
        if not isinstance(g.statistic, ElementValues)
    }
    params = fm.params()
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    static = {n for i, g in enumerate(groups) if i not in collectors for n in g.param_names}
    static |= {n for c in collectors.values() for n in c.needed_params()}
    grad_sums: dict[str, Tensor] = {}
    total, handles = 0, []
    try:
        handles = [c.register() for c in collectors.values()]
        forward = fm.forward(leaves)
        for batch, n in _limited(fm, data, max_examples):
            with torch.enable_grad():
                loss = check_loss(fm.objective.loss(forward, batch), "selection statistics pass")
                probe_grads, param_grads = {}, {}
                if gradients:
                    probe_grads, param_grads = _gradients(loss, collectors, static, leaves)
            for name, g in param_grads.items():
                grad_sums[name] = n * g if name not in grad_sums else grad_sums[name] + n * g
            for i, c in collectors.items():
                c.finish_batch(n, probe_grads.get(i, []), param_grads)
            total += n
    finally:
        for h in handles:
            h.remove()
    total = _reduce_over_ranks(fm, collectors, grad_sums, total)
    if total == 0:
        raise DataError("data holds no example; pass the examples being removed or changed")
    mean_grads = {name: g / total for name, g in grad_sums.items()}
    return _assemble(groups, collectors, params, mean_grads, gradients), total


def _reduce_over_ranks(
    fm: FunctionalModel, collectors: dict, grad_sums: dict[str, Tensor], total: int
) -> int:
    """Sum every rank's weighted statistics in place; return the global number of examples.

    A rank may have seen no batch (or a layer may not have fired on it), so each sum travels
    with its example count and absent sums count as zeros. One process: nothing happens.
    """
    if world()[1] == 1:
        return total
    acc = _acc_dtype(fm.device)
    order = list(collectors.items())
    counts = torch.tensor([total] + [c.examples for _, c in order], dtype=acc, device=fm.device)
    names = list(fm.layout.names)
    shape_of = dict(zip(names, fm.layout.shapes, strict=True))
    present = torch.tensor([n in grad_sums for n in names], dtype=acc, device=fm.device)
    counts = all_reduce_sum(torch.cat([counts, present]))
    total = int(counts[0].item())
    present = counts[1 + len(order) :]
    for (_, c), k in zip(order, counts[1 : 1 + len(order)].tolist(), strict=True):
        c.examples = int(k)
    parts: list[Tensor] = []
    shapes: list[tuple[str, Any, torch.Size]] = []
    for _, c in order:
        t = c.total
        if t is None:
            t = torch.zeros(c.group.num_units, dtype=acc, device=fm.device)
        shapes.append(("c", c, t.shape))
        parts.append(t.reshape(-1).to(acc))
    for n, flag in zip(names, present.tolist(), strict=True):
        if flag > 0:
            g = grad_sums.get(n)
            if g is None:
                g = torch.zeros(shape_of[n], dtype=acc, device=fm.device)
            shapes.append(("g", n, g.shape))
            parts.append(g.reshape(-1).to(acc))
    if not parts:
        return total
    flat = all_reduce_sum(torch.cat(parts))
    offset = 0
    for kind, key, shape in shapes:
        k = shape.numel()
        value = flat[offset : offset + k].reshape(shape)
        offset += k
        if kind == "c":
            key.total = value if key.examples > 0 else None
        else:
            grad_sums[key] = value
    return total


def _prepare(group: LayerGroup, gradients: bool) -> LayerGroup:
    stat = group.statistic
    if gradients and isinstance(stat, InProjection) and stat.bias is None:
        return group.as_elements("no trainable in_proj_bias")
    return group


def _gradients(loss: Tensor, collectors: dict, static: set[str], leaves: dict[str, Tensor]):
    names = set(static)
    for c in collectors.values():
        if not c.fired:
            names.update(c.group.param_names)
    names = [n for n in leaves if n in names]
    probes = [(i, p) for i, c in collectors.items() for p in c.probes]
    inputs = [p for _, p in probes] + [leaves[n] for n in names]
    if not inputs:
        return {}, {}
    if not loss.requires_grad:
        raise ObjectiveError(
            "the objective's loss does not depend on the model's outputs (it has no grad_fn); "
            "compute the loss with the forward passed to Objective.loss"
        )
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    probe_grads: dict[int, list] = {}
    for (i, _), g in zip(probes, grads[: len(probes)], strict=True):
        probe_grads.setdefault(i, []).append(g)
    param_grads = {}
    for n, g in zip(names, grads[len(probes) :], strict=True):
        if g is not None:
            g = g.to_dense() if g.is_sparse else g
            param_grads[n] = g.detach().to(_acc_dtype(g.device))
    return probe_grads, param_grads


def _limited(fm: FunctionalModel, data: Batches, max_examples: int | None) -> Iterator:
    """This rank's batches on the model's device, cut after the first ``max_examples`` examples
    of the whole data (every batch but the cut one is counted where it lies)."""
    rank, size = world()
    seen = 0
    for i, batch in enumerate(data):
        n = int(fm.objective.num_examples(batch))
        if max_examples is not None and seen + n > max_examples:
            k = max_examples - seen
            batch = _head(batch, k, n)
            if int(fm.objective.num_examples(batch)) != k:
                raise DataError(
                    f"cannot cut a batch of type {type(batch).__name__} to its first {k} "
                    "examples; pass max_examples=None or sub-sample the data yourself"
                )
            n = k
        if n > 0 and i % size == rank:
            yield to_device(batch, fm.device), n
        seen += n
        if max_examples is not None and seen >= max_examples:
            return


def _head(batch: Any, k: int, n: int) -> Any:
    """Keep the first ``k`` rows of every tensor in ``batch`` whose first dimension is ``n``."""
    if isinstance(batch, Tensor):
        return batch[:k] if batch.dim() > 0 and batch.shape[0] == n else batch
    if isinstance(batch, dict):
        return {key: _head(v, k, n) for key, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(_head(v, k, n) for v in batch)
    return batch


def _assemble(groups, collectors, params, mean_grads, gradients):
    out, missing = [], []
    for i, g in enumerate(groups):
        scores = collectors[i].scores(params, mean_grads) if i in collectors else None
        if i in collectors and scores is None:
            missing.append(g.name)
            g = g.as_elements("fallback: module not called")
        if scores is None:
            scores = _element_scores(g, params, mean_grads, gradients)
        scores = scores.detach().to("cpu", torch.float64)
        if torch.isnan(scores).any():
            raise NonFiniteError(
                f"the selection statistic of layer {g.name!r} is NaN; check the data and the "
                "model for NaN/inf outputs"
            )
        out.append((g, scores))
    if missing:
        warnings.warn(
            f"layers {missing[:5]}{' ...' if len(missing) > 5 else ''} were not called (or "
            "gave outputs of an unexpected shape) during the selection pass; their parameters "
            "are ranked element by element instead",
            UserWarning,
            stacklevel=4,
        )
    return out


def _element_scores(group: LayerGroup, params, mean_grads, gradients: bool) -> Tensor:
    parts = []
    for m in group.members:
        if gradients:
            g = mean_grads.get(m.name)
            parts.append(torch.zeros(m.numel) if g is None else g.reshape(-1).cpu())
        else:
            parts.append(params[m.name].detach().reshape(-1).cpu())
    return torch.cat([p.to(torch.float64) for p in parts]).abs()
