"""Seeded training, evaluation, and training cached on disk.

:func:`train_model` trains a classifier with Adam on the mean cross-entropy; every random choice
(the order of examples, dropout if the model has any) comes from ``seed``, and the caller's
global RNG state is restored afterwards, so the same seed, data and thread count give bit-identical
weights. :func:`train_cached` stores a trained state dict as ``.safetensors`` next to a JSON
record of the configuration that produced it, and loads it on later calls with the same
configuration.

Example:
    >>> from geninf.bench import build_model, load_dataset, train_model, evaluate
    >>> splits = load_dataset("digits", flatten=True)
    >>> net = build_model("mlp", input_shape=splits.input_shape, num_classes=10)
    >>> result = train_model(net, splits, epochs=10, progress=False)
    >>> evaluate(result.model, *splits.test)["acc"] > 90
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from .._atomic import atomic_write
from .._files import sha256_file
from .._seed import check_seed
from ..errors import DataError, InputError, NonFiniteError
from .datasets import Splits

__all__ = ["CachedModel", "TrainResult", "evaluate", "train_cached", "train_model"]

_CACHE_FORMAT = 1


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    Attributes:
        model: The trained model (the object passed in), in eval mode.
        history: One dict per epoch: ``epoch``, ``train_loss`` and ``train_acc`` (mean over the
            epoch's batches, weighted by size, accuracy in %), ``seconds``, and ``val_loss`` /
            ``val_acc`` when the data had a validation split.
        wall_time: Seconds spent training (validation included).
    """

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time: float = 0.0


def _as_tensors(data: Any, name: str) -> tuple[Tensor, Tensor]:
    if (
        not isinstance(data, tuple | list)
        or len(data) != 2
        or not all(isinstance(t, Tensor) for t in data)
    ):
        raise DataError(
            f"{name} must be Splits or an (inputs, targets) tuple of tensors, got "
            f"{type(data).__name__}"
        )
    inputs, targets = data
    if targets.dim() != 1 or targets.dtype != torch.int64 or inputs.shape[0] != targets.shape[0]:
        raise DataError(
            f"{name}: expected inputs [N, ...] and int64 targets [N]; got inputs "
            f"{tuple(inputs.shape)} and targets {tuple(targets.shape)} "
            f"({targets.dtype})"
        )
    if targets.numel() == 0:
        raise DataError(f"{name} is empty; pass at least one example")
    return inputs, targets


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(
    model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 512
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(inputs, targets)``.

    The model runs in eval mode without gradients; its train/eval mode is restored afterwards.
    Batches are moved to the device of the model's parameters.

    Returns:
        ``{"acc": accuracy in %, "loss": mean cross-entropy}``.
    """
    inputs, targets = _as_tensors((inputs, targets), "evaluation data")
    device, was_training = _model_device(model), model.training
    correct, total_loss = 0, 0.0
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, targets.shape[0], batch_size):
                x = inputs[lo : lo + batch_size].to(device)
                y = targets[lo : lo + batch_size].to(device)
                logits = model(x)
                total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    n = targets.shape[0]
    return {"acc": 100.0 * correct / n, "loss": total_loss / n}


def train_model(
    model: nn.Module,
    splits_or_data: Splits | tuple[Tensor, Tensor],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, nn.Module], Mapping[str, float]] | None = None,
) -> TrainResult:
    """Train ``model`` in place with Adam on the mean cross-entropy.

    Each epoch visits the training examples in an order drawn from a ``torch.Generator`` seeded
    with ``seed``; a last batch of a single example is skipped (batch norm cannot train on it).
    ``weight_decay`` is Adam's (an L2 term added to the gradient).

    Args:
        model: The model; trained in place and returned in eval mode.
        splits_or_data: :class:`Splits` (trains on ``train``, reports ``validation`` after each
            epoch) or an ``(inputs, targets)`` tuple.
        epochs: Number of passes over the training data.
        batch_size: Examples per step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        seed: Seed of the example order and of any randomness inside the model.
        progress: Show a tqdm bar over epochs.
        device: Where to train; the model is moved there. ``None``: where its parameters are.
        on_epoch: Called as ``on_epoch(epoch, model)`` after each epoch (model in eval mode,
            then back in train mode); its numbers join the epoch's history record. Its time is
            excluded from ``seconds`` and ``wall_time``.

    Raises:
        InputError: ``epochs`` < 0, ``batch_size`` < 1, ``lr`` or ``weight_decay`` not a finite
            number >= 0, a seed outside torch's range, or a model without trainable parameters.
        NonFiniteError: The training loss became NaN or infinite.
    """
    _check_options(epochs, batch_size, lr, weight_decay)
    seed = check_seed(seed)
    inputs, targets, validation = _training_data(splits_or_data)
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(
            f"the model ({type(model).__name__}) has no trainable parameters; there is nothing "
            "to train"
        )
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    order = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        bar = tqdm(range(int(epochs)), desc="train", disable=not progress, leave=False)
        for epoch in bar:
            record = _train_epoch(model, optimizer, inputs, targets, batch_size, order, device)
            record = {"epoch": float(epoch + 1), **record}
            if validation is not None:
                metrics = evaluate(model, *validation)
                record.update(val_loss=metrics["loss"], val_acc=metrics["acc"])
            if on_epoch is not None:
                start += _call_on_epoch(on_epoch, epoch + 1, model, record, rng_devices)
            record["seconds"] = time.perf_counter() - start
            history.append(record)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
    model.eval()
    return TrainResult(model=model, history=history, wall_time=time.perf_counter() - start)


def _training_data(
    splits_or_data: Splits | tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """Training inputs and targets, and the validation split of :class:`Splits` (if not empty)."""
    if not isinstance(splits_or_data, Splits):
        inputs, targets = _as_tensors(splits_or_data, "training data")
        return inputs, targets, None
    inputs, targets = _as_tensors(splits_or_data.train, "training data")
    validation = splits_or_data.validation
    return inputs, targets, validation if validation[1].numel() > 0 else None


def _call_on_epoch(
    on_epoch: Callable[[int, nn.Module], Mapping[str, float]],
    epoch: int,
    model: nn.Module,
    record: dict[str, float],
    rng_devices: list[torch.device],
) -> float:
    """Add ``on_epoch(epoch, model)`` (model in eval mode, global RNG forked) to ``record``;
    return the seconds it took."""
    t0 = time.perf_counter()
    model.eval()
    with torch.random.fork_rng(devices=rng_devices):
        record.update(on_epoch(epoch, model))
    model.train()
    return time.perf_counter() - t0


def _check_options(epochs: int, batch_size: int, lr: float, weight_decay: float) -> None:
    if int(epochs) < 0 or int(batch_size) < 1:
        raise InputError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    _check_rate("lr", lr)
    _check_rate("weight_decay", weight_decay)


def _check_rate(name: str, value: Any) -> None:
    """Refuse a learning rate or weight decay that Adam would reject (negative, NaN) or that would
    make every step NaN (infinite), with an InputError instead of Adam's ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= 0):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> dict[str, float]:
    model.train()
    n = targets.shape[0]
    perm = torch.randperm(n, generator=generator)
    total_loss, correct, seen = 0.0, 0, 0
    for lo in range(0, n, batch_size):
        idx = perm[lo : lo + batch_size]
        if idx.numel() == 1 and n > 1:
            continue
        x, y = inputs[idx].to(device), targets[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"the training loss became {loss.item()} after {seen} examples "
                "of this epoch; lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * idx.numel()
        correct += int((logits.detach().argmax(dim=1) == y).sum())
        seen += idx.numel()
    return {"train_loss": total_loss / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1)}


@dataclass
class CachedModel:
    """What :func:`train_cached` returns.

    Attributes:
        model: The trained model, in eval mode.
        loaded: ``True`` when the weights came from the cache, ``False`` when trained now.
        path: The ``.safetensors`` file.
        metadata: The JSON record stored next to it (``config``, ``versions``, ``sha256``, and
            ``history`` / ``wall_time`` when the trainer returned a :class:`TrainResult`).
    """

    model: nn.Module
    loaded: bool
    path: Path
    metadata: dict[str, Any]


def _canonical(config: Mapping[str, Any]) -> str:
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"key_config must be JSON-serializable (str keys, numbers, strings, "
            f"lists, dicts): {exc}"
        ) from exc


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"geninf": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _load_cached(
    weights: Path, record_path: Path, canonical: str, builder: Callable[[], nn.Module]
) -> CachedModel:
    from safetensors.torch import load_file

    record = json.loads(record_path.read_text())
    stored = _canonical(record.get("config", {}))
    if stored != canonical:
        raise InputError(
            f"{record_path} was written for config {stored}, not {canonical}; use "
            "another cache_dir or name, or delete both files to retrain"
        )
    if not weights.is_file():
        raise DataError(
            f"{record_path} exists but {weights} does not; delete {record_path} to retrain"
        )
    if record.get("sha256") not in (None, sha256_file(weights)):
        raise DataError(
            f"{weights} does not match the checksum in {record_path}; delete both files to retrain"
        )
    model = builder()
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except RuntimeError as exc:
        raise DataError(f"{weights} does not fit the model the builder made: {exc}") from exc
    return CachedModel(model.eval(), True, weights, record)


def train_cached(
    cache_dir: str | Path,
    key_config: Mapping[str, Any],
    builder: Callable[[], nn.Module],
    trainer: Callable[[nn.Module], Any],
    *,
    name: str | None = None,
) -> CachedModel:
    """Train once and cache the weights; later calls with the same config load them.

    The state dict (parameters and buffers) is written as ``<stem>.safetensors`` and the record
    as ``<stem>.json`` in ``cache_dir``, both atomically (temporary file + ``os.replace``). The
    stem is ``name`` if given, else ``model-<first 16 hex digits of the config's SHA-256>``.
    Loading reads weights only (safetensors, no pickle), checks the checksum and loads them into
    a fresh ``builder()`` model. An existing entry is never overwritten.

    Args:
        cache_dir: Directory of the cache (created if needed).
        key_config: Everything that determines the weights (data spec, model, seed, epochs, …);
            JSON-serializable.
        builder: Makes the untrained model (called again when loading).
        trainer: Trains the model it is given; returns it, a :class:`TrainResult`, or ``None``
            (the model trained in place).
        name: Fixed file stem; a stored entry with a different config is then refused.

    Raises:
        InputError: The stored entry was made with a different config.
        DataError: A stored entry is incomplete, corrupted or does not fit the model.
    """
    canonical = _canonical(key_config)
    stem = name or "model-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    directory = Path(cache_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    weights, record_path = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    if record_path.exists():
        return _load_cached(weights, record_path, canonical, builder)
    if weights.exists():
        raise DataError(
            f"{weights} exists without its record {record_path.name} (an interrupted "
            "write?); delete it to retrain"
        )
    return _train_and_store(weights, record_path, canonical, builder, trainer)


def _train_and_store(
    weights: Path,
    record_path: Path,
    canonical: str,
    builder: Callable[[], nn.Module],
    trainer: Callable[[nn.Module], Any],
) -> CachedModel:
    """Train a fresh ``builder()`` model, then write its weights and record atomically."""
    from safetensors.torch import save_file

    model = builder()
    out = trainer(model)
    record: dict[str, Any] = {
        "format": _CACHE_FORMAT,
        "config": json.loads(canonical),
        "versions": _versions(),
    }
    if isinstance(out, TrainResult):
        model = out.model
        record.update(history=out.history, wall_time=out.wall_time)
    elif isinstance(out, nn.Module):
        model = out
    elif out is not None:
        raise InputError(
            f"trainer returned {type(out).__name__}; return the model, a TrainResult or None"
        )
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"config": canonical}))
    record["sha256"] = sha256_file(weights)
    atomic_write(record_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    return CachedModel(model.eval(), False, weights, record)
