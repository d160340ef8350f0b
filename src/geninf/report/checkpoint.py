"""Model files: ``.safetensors`` with the recipe to rebuild the architecture; safe ``.pt`` loads.

A run directory's ``model.safetensors`` holds the state dict (parameters and buffers) and, in the
safetensors metadata under the key ``"geninf"``, a JSON record (:data:`FORMAT` 1)::

    {"format": 1,
     "architecture": {"model": "small_cnn", "width": 0.5, "input_shape": [1, 28, 28],
                      "num_classes": 10, "options": {}},
     "data": {"spec": "mnist5k", "seed": 0, "flatten": false, "normalize": false,
              "max_train": null, "max_eval": null},
     "training": {"epochs": 10, "seed": 0, "batch_size": 64, "lr": 0.001,
                  "weight_decay": 0.0001},
     "edits": [...]}

so a checkpoint is self-contained: :func:`load_checkpoint` rebuilds the model with
:func:`geninf.bench.build_model` and loads the weights with ``strict=True``. Neither format runs
code when loaded: safetensors holds raw tensors only, and ``.pt`` / ``.pth`` files are read with
``torch.load(weights_only=True)`` (a pickle that would build arbitrary objects is refused). A
``.pt`` file has no recipe: give ``--model`` and ``--data``.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, brief
from .rundir import atomic_write

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "resolve_checkpoint", "save_model"]

FORMAT = 1
MODEL_FILE = "model.safetensors"


@dataclass
class Checkpoint:
    """A loaded model and its record (see the module docstring)."""

    model: nn.Module
    info: dict[str, Any]
    path: Path


def save_model(path: str | os.PathLike[str], model: nn.Module, info: dict[str, Any]) -> Path:
    """Write ``model``'s state dict and ``info`` to a ``.safetensors`` file, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    record = {"format": FORMAT, **info}
    meta = {"geninf": json.dumps(record, allow_nan=False)}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The model file of ``path``: the file itself, or ``model.safetensors`` in a run directory.

    Raises:
        InputError: nothing there.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise InputError(
            f"checkpoint {path} not found; pass a run directory (with {MODEL_FILE}), a "
            ".safetensors file or a .pt state dict"
        )
    return p


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"checkpoint {path} is truncated or not a safetensors file ({brief(exc)})"
        ) from None
    info = None
    if "geninf" in meta:
        try:
            info = json.loads(meta["geninf"])
        except json.JSONDecodeError:
            raise InputError(f"checkpoint {path} has a corrupt geninf record") from None
    return state, info


def _read_pt(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "global" in detail.lower():
            raise InputError(
                f"refused to load {path}: unpickling it would call {_global_name(detail)}, so "
                "loading it could run code; save model.state_dict() or use .safetensors"
            ) from None
        raise InputError(
            f"refused to load {path}: it is not a plain tensor pickle ({detail}); the file is "
            "corrupt or holds objects whose loading could run code: save model.state_dict() or "
            "use .safetensors"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"checkpoint {path} is truncated or not a torch file ({brief(exc)})"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(f"{path} does not hold a state dict (a dict of tensors)")
    return obj


def _unpickler_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler objected to, e.g. ``Unsupported global: GLOBAL
    io.open was not an allowed global by default`` or ``Unsupported operand 220``."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return brief(lines[0] if lines else "unsupported pickle", 100)


def _global_name(detail: str) -> str:
    """``io.open`` from ``Unsupported global: GLOBAL io.open was not an allowed global...``."""
    words = detail.replace(":", " ").split()
    if "GLOBAL" in words and words.index("GLOBAL") + 1 < len(words):
        return words[words.index("GLOBAL") + 1]
    return "a Python callable"


def _load_into(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if shapes:
            k = sorted(shapes)[0]
            parts.append(f"shape of {k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        detail = "; ".join(parts) or str(exc).splitlines()[0]
        raise InputError(
            f"checkpoint {path} does not fit the architecture ({detail}); check --model, "
            "--width and --data"
        ) from None


def load_checkpoint(
    path: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None
) -> Checkpoint:
    """Load a model saved by :func:`save_model` (or a ``.pt`` state dict) on the CPU, eval mode.

    Args:
        path: a run directory, a ``.safetensors`` file or a ``.pt`` / ``.pth`` state dict.
        overrides: ``{"model", "width", "data"}`` values replacing those of the record (needed
            for a ``.pt`` file or a safetensors file without a geninf record).

    Raises:
        InputError: missing, truncated or corrupt file; a pickle that is not plain tensors; a
            state dict that does not fit the architecture; no architecture known.
    """
    from ..bench.models import build_model

    file = resolve_checkpoint(path)
    if file.suffix in (".pt", ".pth", ".bin"):
        state, info = _read_pt(file), None
    else:
        state, info = _read_safetensors(file)
    info = copy.deepcopy(info) if info else {}
    info = apply_overrides(info, overrides or {})
    arch = info.get("architecture") or {}
    if not arch.get("model") or not arch.get("input_shape") or not arch.get("num_classes"):
        raise InputError(
            f"{file} has no geninf record of its architecture; pass --model NAME and --data SPEC"
        )
    model = build_model(
        arch["model"],
        input_shape=tuple(arch["input_shape"]),
        num_classes=int(arch["num_classes"]),
        width=float(arch.get("width", 1.0)),
        **(arch.get("options") or {}),
    )
    _load_into(model, state, file)
    return Checkpoint(model=model.eval(), info=info, path=file)


def apply_overrides(info: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Replace the model name, width or data spec of a record; the data's shape is read later
    (``input_shape``/``num_classes`` are filled from the data when the record lacks them)."""
    arch = dict(info.get("architecture") or {})
    data = dict(info.get("data") or {"seed": 0, "normalize": False})
    if overrides.get("model"):
        arch["model"] = overrides["model"]
    if overrides.get("width") is not None:
        arch["width"] = float(overrides["width"])
    if overrides.get("data"):
        data["spec"] = overrides["data"]
    if overrides.get("data") or overrides.get("model"):
        if "flatten" not in data or overrides.get("model"):
            data["flatten"] = arch.get("model") == "mlp"
        if not arch.get("input_shape") and data.get("spec"):
            from ..bench.datasets import load_dataset

            splits = load_dataset(
                data["spec"], seed=int(data.get("seed", 0)), flatten=bool(data["flatten"])
            )
            arch["input_shape"] = list(splits.input_shape)
            arch["num_classes"] = splits.num_classes
    return {**info, "architecture": arch, "data": data}
