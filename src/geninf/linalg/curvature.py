"""Hessian and Gauss–Newton operators of the mean loss over a data set.

``H v = (1/N) Σ_b n_b · H_b v`` where ``H_b`` is the Hessian of batch b's mean loss and ``n_b`` its
number of examples: the product is the Hessian of the mean loss over all N examples, whatever the
batching. Products are streamed over batches; parameters are detached copies of the model's, so
the model is never mutated.

Hessian-vector product methods (:class:`HVPMethod`):

=====================  ==========================================================  ==============
method                 how                                                         memory
=====================  ==========================================================  ==============
``reverse``            double backward: build ∇ℓ with ``create_graph``, then the   flat in data
                       gradient of ⟨∇ℓ, v⟩; everything rebuilt for every product
``forward_over_reverse``  ``torch.func.jvp`` of ``torch.func.grad``                flat in data
``reverse_cached``     double backward with each batch's first-order graph built   grows with data
                       once and reused by every product
``linearize``          ``torch.func.linearize(grad ℓ)`` per batch, built once;     grows with data
                       each product replays the linearized graph
=====================  ==========================================================  ==============

The cached methods trade memory for speed. ``reverse_cached`` (the default) keeps the graphs of
at most ``max_cached_batches`` batches and recomputes the rest, so its memory is bounded whatever
the data size; ``linearize`` caches every batch, has a large set-up cost, and is refused with
``F.mse_loss`` (it crashes the process in torch 2.13). The measured costs
are in the README's Performance section (``benchmarks/hvp_cost.py``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, jvp, linearize, vjp

from .._choices import parse_choice
from ..data import Batches, as_batches
from ..distributed import all_reduce_sum
from ..errors import InputError, NonFiniteError, ObjectiveError
from ..functional import FunctionalModel
from .base import LinearOperator

__all__ = ["HVPMethod", "CurvatureOperator", "HessianOperator", "GaussNewtonOperator"]

ParamDict = dict[str, Tensor]


class HVPMethod(str, Enum):
    """How Hessian-vector products are computed (see the module docstring)."""

    REVERSE = "reverse"
    FORWARD_OVER_REVERSE = "forward_over_reverse"
    REVERSE_CACHED = "reverse_cached"
    LINEARIZE = "linearize"


DEFAULT_HVP_METHOD = HVPMethod.REVERSE_CACHED


class CurvatureOperator(LinearOperator):
    """Base of the n × n curvature operators of the mean loss over ``data``.

    Args:
        model: the trained model (not modified).
        objective: None (cross-entropy), a loss function, or an Objective.
        data: the data the curvature is averaged over (see :mod:`geninf.data`).
        batch_size: batch size when ``data`` is a tensor tuple.
        check_determinism: refuse train-mode dropout/batch-norm and shuffling loaders.
    """

    symmetric = True

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Any = None,
        data: Any = None,
        *,
        batch_size: int | None = None,
        check_determinism: bool = True,
    ):
        if data is None:
            raise InputError("a curvature operator needs data: pass the examples to average over")
        self.fmodel = (
            model
            if isinstance(model, FunctionalModel)
            else FunctionalModel(model, objective, check_determinism=check_determinism)
        )
        self.data: Batches = as_batches(data, batch_size, name="hessian data")
        if check_determinism:
            self.data.check_deterministic()
        n = self.fmodel.num_params
        self.shape = (n, n)
        self.dtype = self.fmodel.dtype
        self.device = self.fmodel.device
        self._count = 0
        self._num_examples: int | None = None
        self._batch_list: list[Any] | None = None

    @property
    def num_products(self) -> int:
        return self._count

    @property
    def num_examples(self) -> int:
        """N, the number of examples the curvature is averaged over (all ranks)."""
        if self._num_examples is None:
            self._num_examples = self.fmodel.count_examples(self.data)
        return self._num_examples

    @property
    def num_batches(self) -> int:
        return len(self.data)

    # subclasses: the product of one batch's curvature with v (as a params dict)
    def _batch_product(self, index: int, batch: Any, v: ParamDict) -> ParamDict:
        raise NotImplementedError

    def _matvec(self, v: Tensor) -> Tensor:
        self._count += 1
        vd = self.fmodel.params_from_flat(v.to(self.dtype))
        acc = torch.zeros(v.numel() + 1, dtype=self.dtype, device=v.device)
        with differentiable_attention():
            for i, batch, n in self.fmodel.iter_sharded(self.data):
                acc[:-1] += n * self._flatten(self._batch_product(i, batch, vd))
                acc[-1] += n
        all_reduce_sum(acc)  # sums over ranks when data is sharded (geninf.distributed)
        self._num_examples = int(acc[-1])
        out = acc[:-1] / acc[-1]
        _check_finite(out, type(self).__name__, self._count)
        return out

    def batch_matvec(self, v: Tensor, index: int) -> Tensor:
        """Product with the curvature of batch ``index`` alone (for stochastic solvers)."""
        if self._batch_list is None:
            self._batch_list = [b for b, _ in self.fmodel.iter_weighted(self.data)]
        if not 0 <= index < len(self._batch_list):
            raise InputError(f"batch index {index} out of range [0, {len(self._batch_list)})")
        self._count += 1
        vd = self.fmodel.params_from_flat(v.to(self.dtype))
        with differentiable_attention():
            out = self._flatten(self._batch_product(index, self._batch_list[index], vd))
        _check_finite(out, type(self).__name__, self._count)
        return out

    def _flatten(self, parts: ParamDict) -> Tensor:
        return self.fmodel.layout.flatten(parts)

    def _leaves(self) -> tuple[list[Tensor], ParamDict]:
        leaves = [p.detach().requires_grad_(True) for p in self.fmodel.params().values()]
        return leaves, dict(zip(self.fmodel.layout.names, leaves, strict=True))


class HessianOperator(CurvatureOperator):
    """H = ∇²θ of the mean loss over ``data`` (n × n, symmetric, possibly indefinite).

    Args:
        model, objective, data, batch_size, check_determinism: see :class:`CurvatureOperator`.
        method: an :class:`HVPMethod` (default ``reverse_cached``, the fastest one that is safe
            for every loss; see the module docstring and the README's Performance section).
        max_cached_batches: for ``reverse_cached``, how many batches keep their first-order graph
            between products (None: all). Batches past the limit are recomputed on every product,
            so memory stops growing with the data size. Default 16.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1).double()
        >>> x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> H = HessianOperator(model, torch.nn.functional.mse_loss, (x, y))
        >>> H.matvec(torch.ones(3, dtype=torch.float64)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Any = None,
        data: Any = None,
        *,
        method: HVPMethod | str = DEFAULT_HVP_METHOD,
        batch_size: int | None = None,
        check_determinism: bool = True,
        max_cached_batches: int | None = 16,
    ):
        super().__init__(
            model, objective, data, batch_size=batch_size, check_determinism=check_determinism
        )
        self.method = parse_choice(HVPMethod, method, "HVP method", any_case=False)
        if self.method is HVPMethod.LINEARIZE and _uses_mse(self.fmodel.objective):
            raise InputError(
                "hvp method 'linearize' crashes the process with F.mse_loss in this torch "
                "release; use method='reverse_cached' (also cached) or 'reverse'"
            )
        if max_cached_batches is not None and max_cached_batches < 0:
            raise InputError(f"max_cached_batches must be >= 0 or None, got {max_cached_batches}")
        self.max_cached_batches = max_cached_batches
        self._cache: dict[int, Any] = {}
        self._reverse_over_forward = False  # fallback of forward_over_reverse, see below

    def __repr__(self) -> str:
        return f"HessianOperator(n={self.shape[0]}, method={self.method.value})"

    def _loss_fn(self, batch: Any) -> Callable[[ParamDict], Tensor]:
        fm = self.fmodel
        return lambda params: fm.batch_loss(params, batch)

    def _batch_product(self, index: int, batch: Any, v: ParamDict) -> ParamDict:
        method = self.method
        if method is HVPMethod.FORWARD_OVER_REVERSE:
            return self._forward_over_reverse(batch, v)
        if method is HVPMethod.LINEARIZE:
            if index not in self._cache:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    _, fn = linearize(grad(self._loss_fn(batch)), self.fmodel.params())
                self._cache[index] = fn
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self._cache[index](v)
        if method is HVPMethod.REVERSE_CACHED and (
            index in self._cache
            or self.max_cached_batches is None
            or len(self._cache) < self.max_cached_batches
        ):
            if index not in self._cache:
                self._cache[index] = self._first_order_graph(batch)
            leaves, grads = self._cache[index]
            return self._second_backward(leaves, grads, v, retain=True)
        leaves, grads = self._first_order_graph(batch)
        return self._second_backward(leaves, grads, v, retain=False)

    def _forward_over_reverse(self, batch: Any, v: ParamDict) -> ParamDict:
        f = self._loss_fn(batch)
        params = self.fmodel.params()
        if not self._reverse_over_forward:
            try:
                return jvp(grad(f), (params,), (v,))[1]
            except RuntimeError as exc:  # torch: "ZeroTensors are immutable" when the loss is
                if "ZeroTensor" not in str(exc):  # linear in a parameter (e.g. a bias + MSE)
                    raise
                self._reverse_over_forward = True
        return _hvp_reverse_over_forward(f, params, v)

    def _first_order_graph(self, batch: Any) -> tuple[list[Tensor], tuple[Tensor | None, ...]]:
        leaves, params = self._leaves()
        with torch.enable_grad():
            loss = self.fmodel.batch_loss(params, batch)
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        return leaves, grads

    def _second_backward(
        self, leaves: list[Tensor], grads: tuple[Tensor | None, ...], v: ParamDict, retain: bool
    ) -> ParamDict:
        names = self.fmodel.layout.names
        pairs = [
            (g, v[name])
            for g, name in zip(grads, names, strict=True)
            if g is not None and g.requires_grad
        ]
        if not pairs:  # the loss is linear in the parameters: H = 0
            return {name: torch.zeros_like(v[name]) for name in names}
        with torch.enable_grad():
            hv = torch.autograd.grad(
                [g for g, _ in pairs],
                leaves,
                grad_outputs=[u for _, u in pairs],
                retain_graph=retain,
                allow_unused=True,
            )
        return {
            name: (h if h is not None else torch.zeros_like(v[name]))
            for name, h in zip(names, hv, strict=True)
        }


class GaussNewtonOperator(CurvatureOperator):
    """Generalized Gauss–Newton G = Jᵀ ∇²_out ℓ J (+ the regularizer's Hessian).

    Positive semi-definite for convex output losses (cross-entropy, MSE). Needs an objective that
    separates model outputs from the output loss (e.g. :class:`~geninf.SupervisedObjective`,
    which is what a plain loss function becomes).
    """

    def __init__(self, model: torch.nn.Module, objective: Any = None, data: Any = None, **kwargs):
        super().__init__(model, objective, data, **kwargs)
        obj = self.fmodel.objective
        if not (hasattr(obj, "outputs") and hasattr(obj, "output_loss")):
            raise ObjectiveError(
                f"{type(obj).__name__} does not separate outputs from the loss; the Gauss-Newton "
                "operator needs an objective with outputs(forward, batch) and "
                "output_loss(outputs, batch) methods (e.g. SupervisedObjective)"
            )

    def __repr__(self) -> str:
        return f"GaussNewtonOperator(n={self.shape[0]})"

    def _batch_product(self, index: int, batch: Any, v: ParamDict) -> ParamDict:
        obj = self.fmodel.objective
        params = self.fmodel.params()

        def outputs(p: ParamDict) -> Tensor:
            return obj.outputs(self.fmodel.forward(p), batch)  # type: ignore[attr-defined]

        out, jv = jvp(outputs, (params,), (v,))
        hjv = _hvp_reverse_over_forward(lambda o: obj.output_loss(o, batch), out, jv)  # type: ignore[attr-defined]
        _, pullback = vjp(outputs, params)
        (gv,) = pullback(hjv)
        reg = getattr(obj, "regularizer", None)
        if reg is not None and getattr(obj, "weight_decay", 1.0) != 0.0:
            rv = _hvp_reverse_over_forward(lambda p: torch.as_tensor(reg(p)), params, v)
            gv = {k: gv[k] + rv[k] for k in gv}
        return gv


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` with its composite (math) kernel.

    PyTorch's fused attention kernels (flash, memory-efficient, the CPU flash kernel) have no
    double backward, so a Hessian product through ``nn.MultiheadAttention`` or
    ``nn.TransformerEncoderLayer`` would fail with "derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented". Curvature
    products therefore select the math kernel, which is built from differentiable operations;
    it computes the same attention (within floating-point rounding) at a higher memory cost.
    The fused fast path of ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` in eval
    mode (``aten::_transformer_encoder_layer_fwd``) has no forward-mode derivative, which the
    Gauss–Newton and ``forward_over_reverse`` products need: it is switched off for the
    duration (``torch.backends.mha``, a process-wide flag), and restored afterwards. Both take
    effect when the ``with`` block is entered, not when this function is called.
    """
    with contextlib.ExitStack() as stack:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError:  # torch < 2.3: no kernel selection
            pass
        else:
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        mha = getattr(torch.backends, "mha", None)
        if mha is not None and hasattr(mha, "set_fastpath_enabled"):
            before = mha.get_fastpath_enabled()
            mha.set_fastpath_enabled(False)
            stack.callback(mha.set_fastpath_enabled, before)
        yield


def _hvp_reverse_over_forward(f: Callable[[Any], Tensor], x: Any, v: Any) -> Any:
    """∇²f(x) v as the gradient of the directional derivative (works where jvp∘grad fails)."""
    return grad(lambda y: jvp(f, (y,), (v,))[1])(x)


def _uses_mse(objective: Any) -> bool:
    return getattr(objective, "loss_fn", None) in (F.mse_loss, torch.nn.MSELoss)


def _check_finite(out: Tensor, who: str, count: int) -> None:
    if not torch.isfinite(out).all():
        raise NonFiniteError(
            f"{who}: curvature product {count} contains NaN/inf; check the data and the model "
            "for non-finite values (the loss may overflow)"
        )
