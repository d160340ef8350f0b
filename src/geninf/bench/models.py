"""Benchmark models: MLP, a small CNN, the paper's TinyNet, VGG-11 and ResNet-18.

Every built-in model takes ``input_shape`` (one example, e.g. ``(1, 28, 28)`` or ``(64,)``),
``num_classes`` and a ``width`` multiplier that scales every hidden size / channel count
(``max(1, round(c * width))``), and returns logits of shape ``[N, num_classes]``. Each one
exposes ``features`` (everything up to the penultimate representation) and ``classifier``
(the final ``nn.Linear``), so "the last layer" is ``model.classifier`` whatever the model.

:func:`build_model` builds one by name (or from a ``"package.module:factory"`` string) with its
initial weights drawn from ``seed``: the same seed gives the same weights, and the caller's
global RNG state is left as it was.

Example:
    >>> from geninf.bench import build_model
    >>> net = build_model("small_cnn", input_shape=(1, 28, 28), num_classes=10, seed=0)
    >>> sum(p.numel() for p in net.parameters())
    80202
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from .._factory import resolve_factory
from .._seed import check_seed
from ..errors import InputError

__all__ = [
    "MLP",
    "VGG11",
    "BasicBlock",
    "ModelName",
    "ResNet18",
    "SmallCNN",
    "TinyNet",
    "build_model",
    "num_parameters",
]


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(
            f"{model} needs input_shape (C, H, W), got {tuple(input_shape)}; load "
            "the data without flatten=True"
        )
    return shape  # type: ignore[return-value]


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Number of features ``features`` outputs for one input (a dry run on zeros)."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])


class _Classifier(nn.Module):
    """Base: ``forward(x) = classifier(features(x))``."""

    features: nn.Module
    classifier: nn.Linear

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes]``."""
        return self.classifier(self.features(x))


class MLP(_Classifier):
    """Fully connected network on flattened inputs.

    ``Flatten → [Linear → act] × len(hidden) → Linear``. The default hidden sizes ``(128, 64)``
    with tanh make the 64-128-64-10 network on 8×8 digits (17,226 parameters).

    Args:
        input_shape: Shape of one input; flattened to ``prod(input_shape)`` features.
        num_classes: Number of outputs.
        width: Multiplier of every hidden size.
        hidden: Hidden sizes at ``width=1``.
        activation: ``"tanh"`` (default), ``"relu"`` or ``"gelu"``.
    """

    _ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: float = 1.0,
        hidden: Sequence[int] = (128, 64),
        activation: str = "tanh",
    ):
        super().__init__()
        if activation not in self._ACTIVATIONS:
            raise InputError(
                f"activation must be one of {sorted(self._ACTIVATIONS)}, got {activation!r}"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        size = math.prod(int(s) for s in input_shape)
        for h in hidden:
            layers += [nn.Linear(size, _scaled(h, width)), self._ACTIVATIONS[activation]()]
            size = _scaled(h, width)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(size, num_classes)


class SmallCNN(_Classifier):
    """``conv5(16) → ReLU → pool2 → conv5(32) → ReLU → pool2 → fc128 → ReLU → fc(num_classes)``.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Number of outputs.
        width: Multiplier of the channel counts and of the 128 hidden units.
        padding: Convolution padding; ``"auto"`` uses 0 when the input is large enough (at least
            16×16: 80k parameters on 28×28 MNIST) and 2 otherwise (so 8×8 digits work).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: float = 1.0,
        padding: int | str = "auto",
    ):
        super().__init__()
        c, h, w = _image_shape(input_shape, "small_cnn")
        if padding == "auto":
            valid = min(h, w)
            padding = 0 if ((valid - 4) // 2 - 4) // 2 >= 1 else 2
        c1, c2, fc = _scaled(16, width), _scaled(32, width), _scaled(128, width)
        conv = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=int(padding)),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=int(padding)),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = _flat_size(conv, (c, h, w))
        self.features = nn.Sequential(*conv, nn.Linear(flat, fc), nn.ReLU())
        self.classifier = nn.Linear(fc, num_classes)


class TinyNet(_Classifier):
    """The paper's TinyNet: four 3×3 stride-2 convolutions (32/64/128/256, padding 1), each
    followed by ReLU, then a Linear layer on the flattened maps (1,024 features on 28×28).

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Number of outputs.
        width: Multiplier of the channel counts.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float = 1.0):
        super().__init__()
        shape = _image_shape(input_shape, "tinynet")
        c = shape[0]
        layers: list[nn.Module] = []
        for out in (32, 64, 128, 256):
            layers += [nn.Conv2d(c, _scaled(out, width), 3, stride=2, padding=1), nn.ReLU()]
            c = _scaled(out, width)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(_flat_size(self.features, shape), num_classes)


class VGG11(_Classifier):
    """VGG-11 (configuration "A") with BatchNorm, CIFAR-style head.

    ``[conv3-BN-ReLU](64) M (128) M (256, 256) M (512, 512) M (512, 512) M`` then global average
    pooling and one Linear layer. A max-pool is skipped when the maps are already 1 pixel wide,
    so 8×8 and 28×28 inputs work too. About 9.2M parameters at ``width=1`` on 32×32×3.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Number of outputs.
        width: Multiplier of the channel counts.
    """

    CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float = 1.0):
        super().__init__()
        c, h, w = _image_shape(input_shape, "vgg11")
        size = min(h, w)
        layers: list[nn.Module] = []
        for item in self.CONFIG:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = _scaled(int(item), width)
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv-BN layers plus an identity (or 1×1 conv-BN) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(_Classifier):
    """ResNet-18 with a CIFAR-style stem (3×3 conv, stride 1, no max-pool).

    Four stages of two :class:`BasicBlock` each (64/128/256/512 channels, strides 1/2/2/2),
    global average pooling and one Linear layer: 11.17M parameters at ``width=1`` on 32×32×3
    with 10 classes.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Number of outputs.
        width: Multiplier of the channel counts.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float = 1.0):
        super().__init__()
        c, _, _ = _image_shape(input_shape, "resnet18")
        stem = _scaled(64, width)
        layers: list[nn.Module] = [
            nn.Conv2d(c, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        ]
        c = stem
        for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            out = _scaled(channels, width)
            layers.append(nn.Sequential(BasicBlock(c, out, stride), BasicBlock(out, out, 1)))
            c = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)


class ModelName(str, Enum):
    """Built-in models of :func:`build_model`.

    Members:
        MLP: ``"mlp"`` — :class:`MLP`.
        SMALL_CNN: ``"small_cnn"`` — :class:`SmallCNN`.
        TINYNET: ``"tinynet"`` — :class:`TinyNet`.
        VGG11: ``"vgg11"`` — :class:`VGG11`.
        RESNET18: ``"resnet18"`` — :class:`ResNet18`.
    """

    MLP = "mlp"
    SMALL_CNN = "small_cnn"
    TINYNET = "tinynet"
    VGG11 = "vgg11"
    RESNET18 = "resnet18"


_REGISTRY: dict[ModelName, type[nn.Module]] = {
    ModelName.MLP: MLP,
    ModelName.SMALL_CNN: SmallCNN,
    ModelName.TINYNET: TinyNet,
    ModelName.VGG11: VGG11,
    ModelName.RESNET18: ResNet18,
}


def _call_factory(factory: Callable[..., Any], spec: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature
        signature = None
    params = signature.parameters if signature is not None else {}
    accepts_all = signature is None or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )
    given = {k: v for k, v in kwargs.items() if accepts_all or k in params}
    needed = set(kwargs) - {"input_shape", "num_classes", "width"}
    if kwargs.get("width", 1.0) != 1.0:
        needed.add("width")
    if needed - set(given):
        raise InputError(
            f"model factory {spec!r} does not accept {sorted(needed - set(given))}; "
            f"its parameters are {list(params)}"
        )
    if signature is not None:
        try:  # a factory that needs more than these keywords is bad input, not a crash
            signature.bind(**given)
        except TypeError as exc:
            raise InputError(
                f"model factory {spec!r} cannot be called with {sorted(given)}: {exc}; it must "
                "build a model from input_shape, num_classes and width (or fewer) keywords"
            ) from None
    model = factory(**given)
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    width: float = 1.0,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """Build a model with initial weights drawn from ``seed``.

    Args:
        name: A :class:`ModelName` (``"mlp"``, ``"small_cnn"``, ``"tinynet"``, ``"vgg11"``,
            ``"resnet18"``) or ``"package.module:factory"`` naming a callable that returns an
            ``nn.Module``; it gets ``input_shape``, ``num_classes``, ``width`` and ``options`` as
            keywords where its signature accepts them.
        input_shape: Shape of one input (``Splits.input_shape``).
        num_classes: Number of outputs.
        width: Multiplier of hidden sizes / channel counts (> 0).
        seed: Seed of the initial weights. The global RNG state is restored afterwards.
        **options: Extra constructor arguments (e.g. ``hidden=(32,)`` for the MLP).

    Returns:
        The model on the CPU, in training mode.

    Raises:
        InputError: Unknown name, a factory that cannot be imported or called, bad sizes, a
            width that is not a finite positive number or too large to fit in memory, or a seed
            outside torch's range.
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real):
        raise InputError(f"width must be a positive number, got {width!r}")
    if not (math.isfinite(width) and width > 0):
        raise InputError(f"width must be a finite number > 0, got {width}")
    seed = check_seed(seed)
    if int(num_classes) < 1:
        raise InputError(f"num_classes must be positive, got {num_classes}")
    kwargs = {
        "input_shape": tuple(int(s) for s in input_shape),
        "num_classes": int(num_classes),
        "width": float(width),
        **options,
    }
    factory = _model_factory(name)
    with torch.random.fork_rng(devices=[]), _explain_out_of_memory(name, width):
        torch.default_generator.manual_seed(seed)
        if ":" in name:
            return _call_factory(factory, name, kwargs)
        try:
            return factory(**kwargs)
        except TypeError as exc:
            raise InputError(
                f"cannot build {name!r} with options {sorted(options)}: {exc}"
            ) from exc


def _model_factory(name: str) -> Callable[..., Any]:
    """The class of a :class:`ModelName`, or the user's ``package.module:factory``."""
    if ":" in name:
        return resolve_factory(name, "model")
    try:
        return _REGISTRY[ModelName(name.lower())]
    except ValueError:
        valid = ", ".join(m.value for m in ModelName)
        raise InputError(
            f"unknown model {name!r}; expected one of {valid} or 'package.module:factory'"
        ) from None


@contextlib.contextmanager
def _explain_out_of_memory(name: str, width: float) -> Iterator[None]:
    """Turn a failed allocation of the model's weights (a width far too large) into an
    :class:`InputError`."""
    try:
        yield
    except MemoryError:
        raise InputError(
            f"not enough memory to build {name!r} at width {width:g}; use a smaller width"
        ) from None
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        raise InputError(
            f"not enough memory to build {name!r} at width {width:g}; use a smaller width "
            f"({' '.join(str(exc).split())[:200]})"
        ) from None


def num_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
