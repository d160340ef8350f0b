"""Layer rules: which elements form a *unit* of a layer, and which statistic ranks the units.

Every trainable parameter of a model belongs to exactly one :class:`LayerGroup` (checked when
the groups are built). A group is "one layer" for the budget ``int(ratio · group size)`` of
method.md §5; the ranking criteria take its units whole, in rank order, and the remainder of the
budget as random elements of the next unit's weights.

======================  ==================================  ======================================
layer (``isinstance``)  unit: the elements taken together   ranked by: outputs / gradients
======================  ==================================  ======================================
Linear (+ subclasses),  output feature j: ``weight[j]`` +   |mean of output j| /
Bilinear                ``bias[j]``                         |mean ∂ℓ/∂output j|
Conv1d/2d/3d (grouped   output channel c: ``weight[c]``     |mean of channel c| /
and depthwise too)      (in/groups × kernel) + ``bias[c]``  |mean ∂ℓ/∂channel c|
ConvTranspose1d/2d/3d   output channel c = k·(out/G) + j    as Conv
(G = groups)            of group k: ``weight[k·in/G :
                        (k+1)·in/G, j]`` + ``bias[c]``
BatchNorm*, SyncBatch-  channel c: ``weight[c]`` +          |mean of output channel c| /
Norm, InstanceNorm*,    ``bias[c]``                         |mean ∂ℓ/∂output channel c|
GroupNorm
LayerNorm, RMSNorm      element i of ``normalized_shape``:  |mean of output element i| /
                        ``weight[i]`` + ``bias[i]``         |mean ∂ℓ/∂output element i|
Embedding,              token t: ``weight[t]``              lookups of t per example ·
EmbeddingBag                                                ‖weight[t]‖₂ / ‖mean ∂ℓ/∂weight[t]‖₂
MultiheadAttention,     q/k/v feature j: row j of           |mean of projection j|, recomputed
in-projection           ``in_proj_weight`` (or of           from the layer's inputs / |mean
                        ``q/k/v_proj_weight``) +            ∂ℓ/∂in_proj_bias[j]| ÷ positions;
                        ``in_proj_bias[j]``                 without a trainable bias: elements
MultiheadAttention,     output feature j:                   |mean of attention output j| /
out_proj                ``out_proj.weight[j]`` + ``bias``   |mean ∂ℓ/∂attention output j|
anything else (below)   each element θ_i                    |θ_i| / |mean ∂ℓ/∂θ_i|
======================  ==================================  ======================================

"Anything else" is: layers of other types (RNNs, PReLU, custom layers), extra parameters of the
layers above that their rule does not use, parameters held directly by a container or the model
itself (e.g. a positional embedding ``nn.Parameter``), and ``MultiheadAttention.bias_k/bias_v``.

Details:

- Budget: ``int(ratio · group size)``, rounded down as in the authors' code, so a layer whose
  budget rounds to 0 gets nothing (a whole selection that comes out empty raises
  :class:`~geninf.errors.SubsetError` with the smallest ratio that selects something). The
  remainder after the whole units is drawn from the next unit's weights, from its bias only when
  the weights run out (possible only for units with several bias-like elements).
- An embedding row's "output" is the row itself wherever its token occurs, so its mean output
  over the data is (lookups of t per example) · ``weight[t]``, of norm the statistic above.
- "mean" is over the examples of the data (batches weighted by their number of examples) and over
  every other position of the output (spatial positions, sequence positions); the statistic of a
  unit is the absolute value of that signed mean. ∂ℓ/∂output is the per-example gradient of the
  objective's loss. Ties are broken by unit index (stable sort).
- A module used several times in one forward (a shared module) is one group; all its calls count.
  A parameter tied between modules belongs to the first module that holds it (in
  ``named_modules()`` order), as in ``named_parameters()``; the other modules' groups lack it.
- Frozen parameters (``requires_grad=False``) are not part of θ and are never selected.
- A unit rule whose module is never called during the statistics pass (or whose output has an
  unexpected shape) falls back to the element rule, with a warning and a note in the summary.
- ``exclude_normalization=True`` gives every normalization group (BatchNorm, InstanceNorm,
  GroupNorm, LayerNorm, RMSNorm) a budget of 0, as the paper's code does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from math import prod

from torch import Tensor, nn

from ..errors import InputError, SubsetError
from ..params.layout import trainable_parameters
from .groups import (
    InProjection,
    LayerGroup,
    Member,
    OutputUnits,
    Spread,
    Statistic,
    TokenUse,
    element_group,
    elementwise,
    rows,
    transposed,
)

__all__ = ["layer_groups"]  # the group and statistic classes are those of .groups


def _last_dim(module: nn.Module, out: Tensor) -> tuple[int, ...]:
    return (out.dim() - 1,)


def _conv_channel(module: nn.Module, out: Tensor) -> tuple[int, ...]:
    return (out.dim() - len(module.kernel_size) - 1,)


def _channel_dim_1(module: nn.Module, out: Tensor) -> tuple[int, ...]:
    return (1 if out.dim() >= 2 else 0,)


def _instance_channel(module: nn.Module, out: Tensor) -> tuple[int, ...]:
    no_batch = module._get_no_batch_dim()  # 2 for InstanceNorm1d: (C, L) unbatched
    return (out.dim() - no_batch,)


def _normalized_dims(module: nn.Module, out: Tensor) -> tuple[int, ...]:
    k = len(module.normalized_shape)
    return tuple(range(out.dim() - k, out.dim()))


# ---------------------------------------------------------------- rule builders
Claim = Callable[[str], tuple[str, tuple[int, ...]] | None]


def _unit_group(
    name: str,
    module: nn.Module,
    rule: str,
    num_units: int,
    claim: Claim,
    stat: Statistic,
    *,
    weight: str = "weight",
    bias: str = "bias",
    spread: Callable[..., Spread] = rows,
    normalization: bool = False,
) -> list[LayerGroup]:
    members = []
    if (w := claim(weight)) is not None:
        members.append(Member(w[0], w[1], 0, num_units, False, spread(w[1])))
    if (b := claim(bias)) is not None:
        members.append(Member(b[0], b[1], 0, num_units, True, elementwise(b[1])))
    if not members:
        return []
    return [
        LayerGroup(
            name, type(module).__name__, rule, tuple(members), num_units, stat, normalization
        )
    ]


def _linear(name: str, module: nn.Module, claim: Claim) -> list[LayerGroup]:
    return _unit_group(
        name, module, "output rows", module.weight.shape[0], claim, OutputUnits(module, _last_dim)
    )


def _conv(name: str, module: nn.Module, claim: Claim) -> list[LayerGroup]:
    stat = OutputUnits(module, _conv_channel)
    if not module.transposed:
        return _unit_group(name, module, "output channels", module.out_channels, claim, stat)
    groups = module.groups
    return _unit_group(
        name,
        module,
        "output channels",
        module.out_channels,
        claim,
        stat,
        spread=lambda shape: transposed(shape, groups),
    )


def _norm(name: str, module: nn.Module, claim: Claim) -> list[LayerGroup]:
    if isinstance(module, _NORMALIZED_SHAPE_TYPES):
        units, dims, rule = prod(module.normalized_shape), _normalized_dims, "normalized elements"
    else:
        units = getattr(module, "num_features", None) or module.num_channels
        dims = _instance_channel if isinstance(module, _INSTANCE) else _channel_dim_1
        rule = "channels"
    return _unit_group(
        name,
        module,
        rule,
        units,
        claim,
        OutputUnits(module, dims),
        spread=elementwise,
        normalization=True,
    )


def _embedding(name: str, module: nn.Module, claim: Claim) -> list[LayerGroup]:
    w = claim("weight")
    if w is None:
        return []
    member = Member(w[0], w[1], 0, w[1][0], False, rows(w[1]))
    return [
        LayerGroup(
            name, type(module).__name__, "token rows", (member,), w[1][0], TokenUse(module, w[0])
        )
    ]


def _attention(name: str, module: nn.Module, claim: Claim) -> list[LayerGroup]:
    e = module.embed_dim
    members = []
    if module._qkv_same_embed_dim:
        if (w := claim("in_proj_weight")) is not None:
            members.append(Member(w[0], w[1], 0, 3 * e, False, rows(w[1])))
    else:
        for i, pname in enumerate(("q_proj_weight", "k_proj_weight", "v_proj_weight")):
            if (w := claim(pname)) is not None:
                members.append(Member(w[0], w[1], i * e, e, False, rows(w[1])))
    bias = claim("in_proj_bias")
    if bias is not None:
        members.append(Member(bias[0], bias[1], 0, 3 * e, True, elementwise(bias[1])))
    groups = []
    if members:
        stat = InProjection(module, bias[0] if bias is not None else None)
        groups.append(
            LayerGroup(
                name, type(module).__name__, "q/k/v projection rows", tuple(members), 3 * e, stat
            )
        )
    out_name = f"{name}.out_proj" if name else "out_proj"
    groups += _unit_group(
        out_name,
        module.out_proj,
        "output rows",
        e,
        claim,
        OutputUnits(module, _last_dim, output_index=0),
        weight="out_proj.weight",
        bias="out_proj.bias",
    )
    return groups


_NORMALIZED_SHAPE_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm,) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
_INSTANCE = nn.modules.instancenorm._InstanceNorm
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm,
    *_NORMALIZED_SHAPE_TYPES,
)

# Order matters only for classes deriving from two of these (none in torch).
_RULES: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], Callable], ...] = (
    (nn.MultiheadAttention, _attention),
    ((nn.Linear, nn.Bilinear), _linear),
    (nn.modules.conv._ConvNd, _conv),
    (_NORM_TYPES, _norm),
    ((nn.Embedding, nn.EmbeddingBag), _embedding),
)


def _builder_for(module: nn.Module) -> Callable | None:
    for types, builder in _RULES:
        if isinstance(module, types):
            return builder
    return None


# ---------------------------------------------------------------- driver
def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """The layer groups of ``model``: every trainable parameter in exactly one group.

    Groups are listed in ``model.named_modules()`` order; within a module, the rule's groups come
    first and a group ``elements (other parameters)`` holds any trainable parameter of the module
    that its rule does not use.

    Raises:
        InputError: ``model`` is not an ``nn.Module``.
        SubsetError: the model has no trainable parameter.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    params = trainable_parameters(model)
    if not params:
        raise SubsetError(
            f"{type(model).__name__} has no parameter that requires grad; there is nothing to "
            "select: pass a model with trainable parameters"
        )
    lazy = [n for n, p in params.items() if nn.parameter.is_lazy(p)]
    if lazy:
        raise InputError(
            f"parameters {lazy[:3]} are uninitialized (lazy modules); run one forward pass on an "
            "example batch before selecting"
        )
    name_of = {id(p): n for n, p in params.items()}
    claimed: set[int] = set()
    groups: list[LayerGroup] = []
    for mname, module in model.named_modules():
        claim = _claimer(module, name_of, claimed)
        display = mname or "(root)"
        builder = _builder_for(module)
        if builder is not None:
            groups += builder(display, module, claim)
        rest = {}
        for local in module._parameters:
            got = claim(local)
            if got is not None:
                rest[got[0]] = got[1]
        if rest:
            note = "other parameters" if builder is not None else ""
            norm = isinstance(module, _NORM_TYPES)
            groups.append(element_group(display, type(module).__name__, rest, note, norm))
    _check_coverage(groups, params)
    return groups


def _claimer(module: nn.Module, name_of: dict[int, str], claimed: set[int]) -> Claim:
    def claim(path: str) -> tuple[str, tuple[int, ...]] | None:
        try:
            p = module.get_parameter(path)
        except AttributeError:
            return None
        if id(p) not in name_of or id(p) in claimed:
            return None
        claimed.add(id(p))
        return name_of[id(p)], tuple(p.shape)

    return claim


def _check_coverage(groups: list[LayerGroup], params: dict[str, Tensor]) -> None:
    counts = Counter(name for g in groups for name in g.param_names)
    bad = [n for n in params if counts.get(n, 0) != 1] + [n for n in counts if n not in params]
    for g in groups:
        for m in g.members:
            if m.per_unit * m.num_units != m.numel or m.first_unit + m.num_units > g.num_units:
                bad.append(m.name)
    if bad:
        raise RuntimeError(
            f"geninf internal error: parameters {bad[:5]} are not covered by exactly one "
            "selection rule; please report this with the model definition"
        )
