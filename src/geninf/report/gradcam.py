"""Grad-CAM heat maps (Selvaraju et al. 2017) from the last convolution of a CNN (paper Fig. 4).

For an image x, a class c with logit y_c and the activations A (channels k, positions i, j) of a
convolution layer:

    α_k = mean_ij ∂y_c/∂A_kij,      L = ReLU(Σ_k α_k A_k),

upsampled bilinearly to the input size and divided by its maximum (a map of zeros stays zero).
The activations are captured with a forward hook on the layer (removed afterwards); the model is
run in eval mode and never modified; no parameter gradient is computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["grad_cam", "last_conv_layer"]


def last_conv_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the last ``nn.Conv2d`` in registration order, or None (e.g. an MLP)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            found = (name, module)
    return found


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def grad_cam(
    model: nn.Module, inputs: Tensor, classes: Tensor, *, layer: nn.Module | None = None
) -> Tensor:
    """Grad-CAM maps of ``inputs`` [N, C, H, W] for ``classes`` [N] (see the module docstring).

    Args:
        model: a classifier returning logits [N, num_classes].
        inputs: images, ``[N, C, H, W]``.
        classes: the class whose evidence each map shows (e.g. the true labels).
        layer: the convolution to read (default: :func:`last_conv_layer`).

    Returns:
        Maps ``[N, H, W]`` in [0, 1], on the CPU.

    Raises:
        InputError: the model has no convolution layer, or the inputs are not images.
    """
    if inputs.dim() != 4:
        raise InputError(f"grad_cam needs images [N, C, H, W], got shape {tuple(inputs.shape)}")
    if layer is None:
        found = last_conv_layer(model)
        if found is None:
            raise InputError("grad_cam needs a model with an nn.Conv2d layer (an MLP has none)")
        layer = found[1]
    captured: list[Tensor] = []

    def hook(module: nn.Module, args: object, output: Tensor) -> Tensor:
        output = output.detach().requires_grad_(True)
        captured.append(output)
        return output

    was_training = model.training
    handle = layer.register_forward_hook(hook)
    device = _device(model)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(inputs.to(device))
            act = captured[-1]
            picked = logits.gather(1, classes.to(device).long().view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, act)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).cpu()
