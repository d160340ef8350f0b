"""Backdoor poisoning: triggers, poisoned training sets, triggered test sets and their metrics.

The setting of the paper's backdoor experiment (method.md §6): a fraction of the training images
(10% by default) gets a small checkerboard stamped in a corner and the label ``target_label``
(4 by default); the trained model then predicts 4 on any image carrying the trigger. Recovery —
relabeling the known poisoned examples to their true labels, or removing them — is judged on
*held-out* test images with the trigger stamped on them.

Triggers
--------
A :class:`Trigger` is a ``(mask, pattern)`` pair of tensors of the image shape: stamping sets
``image[mask] = pattern[mask]`` and leaves every other pixel alone (:func:`apply_trigger`), in
every channel. Both built-in triggers are squares in the bottom-right corner, ``margin`` pixels
away from the bottom and right edges: with ``H×W`` images and side ``size`` the square covers
rows ``H - margin - size … H - margin - 1`` and the same columns of ``W``.

- :func:`checkerboard_trigger` (the paper's): side ``max(3, round(min(H, W) / 7))`` and margin
  ``round(min(H, W) / 28)`` by default — a 4×4 square on rows/columns 23–26 of a 28×28 image,
  3×3 on rows/columns 5–7 of an 8×8 image, 5×5 on 26–30 of 32×32. Pixel ``(i, j)`` of the
  square (counted from its top-left corner) is ``value`` when ``i + j`` is even and
  ``off_value`` otherwise, so its top-left corner is "on". The whole square is stamped (the
  "off" pixels too), so the trigger looks the same on any background.
- :func:`badnets_patch` (BadNets, Gu et al. 2017): a solid ``value`` square, side 3, same default
  margin (rows/columns 24–26 of a 28×28 image).

Values are in the scale of the data: ``1.0`` is white for the ``[0, 1]`` inputs of
:func:`~geninf.bench.load_dataset`. For standardized data (``normalize=True``) map the trigger
with :meth:`Trigger.normalized` and the splits' ``normalization``.

Example:
    >>> import torch
    >>> from geninf.bench.backdoor import apply_trigger, checkerboard_trigger, poison
    >>> trigger = checkerboard_trigger((1, 28, 28))
    >>> trigger.mask.nonzero()[:, 1:].unique().tolist()
    [23, 24, 25, 26]
    >>> x, y = torch.zeros(50, 1, 28, 28), torch.arange(50) % 10
    >>> p = poison((x, y), rate=0.1, target_label=4, trigger=trigger, seed=0)
    >>> len(p.indices), bool((p.train[1][p.indices] == 4).all())
    (5, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError, InputError
from .metrics import f1_score, predict_logits
from .training import evaluate

__all__ = [
    "Poisoned",
    "Trigger",
    "apply_trigger",
    "backdoor_metrics",
    "badnets_patch",
    "checkerboard_trigger",
    "poison",
    "triggered_test",
]


class Trigger(NamedTuple):
    """A backdoor trigger: stamping sets ``image[mask] = pattern[mask]``.

    Attributes:
        mask: Boolean tensor of the image shape; ``True`` where the trigger writes.
        pattern: Float tensor of the image shape; the values written (ignored where ``mask`` is
            ``False``, where it is 0).
    """

    mask: Tensor
    pattern: Tensor

    def normalized(self, normalization: tuple[Sequence[float], Sequence[float]] | None) -> Trigger:
        """The same trigger for standardized data: ``(pattern - mean_c) / std_c`` per channel.

        Args:
            normalization: ``(mean, std)`` per channel, as in ``Splits.normalization``; ``None``
                returns the trigger unchanged (data in ``[0, 1]``).
        """
        if normalization is None:
            return self
        mean, std = (torch.as_tensor(v, dtype=self.pattern.dtype) for v in normalization)
        channels = self.pattern.shape[0] if self.pattern.dim() == 3 else 1
        if mean.numel() != channels or std.numel() != channels:
            raise InputError(
                f"normalization has {mean.numel()} means and {std.numel()} stds for a trigger "
                f"of shape {tuple(self.pattern.shape)} ({channels} channel(s))"
            )
        shape = (channels, 1, 1) if self.pattern.dim() == 3 else ()
        pattern = (self.pattern - mean.reshape(shape)) / std.reshape(shape)
        return Trigger(self.mask, torch.where(self.mask, pattern, torch.zeros_like(pattern)))


def _image_hw(image_shape: Sequence[int]) -> tuple[tuple[int, ...], int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(
            f"image_shape must be (C, H, W) or (H, W), got {tuple(image_shape)}; for flattened "
            "inputs pass the image shape, e.g. (1, 8, 8) for digits"
        )
    return shape, shape[-2], shape[-1]


def _corner_square(
    image_shape: Sequence[int], size: int, margin: int | None
) -> tuple[tuple[int, ...], slice, slice]:
    """Shape, and row and column slices of a ``size`` square ``margin`` pixels from the corner."""
    shape, h, w = _image_hw(image_shape)
    margin = round(min(h, w) / 28) if margin is None else int(margin)
    size = int(size)
    if size < 1 or margin < 0 or size + margin > min(h, w):
        raise InputError(
            f"a {size}×{size} trigger {margin} pixel(s) from the corner does not fit a "
            f"{h}×{w} image; use size >= 1, margin >= 0, size + margin <= {min(h, w)}"
        )
    rows = slice(h - margin - size, h - margin)
    cols = slice(w - margin - size, w - margin)
    return shape, rows, cols


def checkerboard_trigger(
    image_shape: Sequence[int],
    size: int | None = None,
    value: float = 1.0,
    *,
    off_value: float = 0.0,
    margin: int | None = None,
) -> Trigger:
    """The paper's checkerboard: alternating on/off pixels in a square at the bottom-right.

    Args:
        image_shape: ``(C, H, W)`` or ``(H, W)``.
        size: Side of the square; default ``max(3, round(min(H, W) / 7))`` (4 for 28×28).
        value: Value of the "on" pixels (``i + j`` even, counted from the square's top-left).
        off_value: Value of the "off" pixels.
        margin: Pixels between the square and the bottom and right edges; default
            ``round(min(H, W) / 28)`` (1 for 28×28, 0 for 8×8).

    Returns:
        The trigger; the square is stamped whole, in every channel (see the module docstring for
        the exact pixels).
    """
    _, h, w = _image_hw(image_shape)
    size = max(3, round(min(h, w) / 7)) if size is None else size
    shape, rows, cols = _corner_square(image_shape, size, margin)
    mask = torch.zeros(shape, dtype=torch.bool)
    pattern = torch.zeros(shape)
    i = torch.arange(int(size)).unsqueeze(1)
    j = torch.arange(int(size)).unsqueeze(0)
    square = torch.where((i + j) % 2 == 0, float(value), float(off_value))
    mask[..., rows, cols] = True
    pattern[..., rows, cols] = square
    return Trigger(mask, pattern)


def badnets_patch(
    image_shape: Sequence[int], size: int = 3, value: float = 1.0, *, margin: int | None = None
) -> Trigger:
    """A solid square of ``value`` (white) at the bottom-right corner (BadNets).

    Args:
        image_shape: ``(C, H, W)`` or ``(H, W)``.
        size: Side of the square.
        value: Value of every pixel of the square, in every channel.
        margin: Pixels between the square and the bottom and right edges; default
            ``round(min(H, W) / 28)`` (1 for 28×28: rows/columns 24–26).
    """
    shape, rows, cols = _corner_square(image_shape, size, margin)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[..., rows, cols] = True
    return Trigger(mask, torch.where(mask, float(value), 0.0))


def apply_trigger(images: Tensor, trigger: Trigger) -> Tensor:
    """Stamp ``trigger`` on ``images``; returns a new tensor (the input is never modified).

    Args:
        images: ``[..., *image_shape]`` (e.g. ``N×C×H×W``) or flattened ``[..., C·H·W]`` (the
            row-major flattening of ``load_dataset(..., flatten=True)``).
        trigger: The trigger, built for the image shape.

    Returns:
        A tensor of the same shape, dtype and device as ``images``.
    """
    mask, pattern = trigger
    if not isinstance(images, Tensor) or not isinstance(mask, Tensor):
        raise InputError("images and the trigger's mask and pattern must be tensors")
    if mask.shape != pattern.shape:
        raise InputError(
            f"the trigger's mask {tuple(mask.shape)} and pattern {tuple(pattern.shape)} differ"
        )
    k = mask.dim()
    if images.dim() >= k and tuple(images.shape[-k:]) == tuple(mask.shape):
        pass
    elif images.dim() >= 1 and images.shape[-1] == mask.numel():
        mask, pattern = mask.flatten(), pattern.flatten()
    else:
        raise InputError(
            f"a trigger for images of shape {tuple(mask.shape)} does not fit inputs of shape "
            f"{tuple(images.shape)}; build it with the inputs' image shape"
        )
    mask = mask.to(device=images.device, dtype=torch.bool)
    return torch.where(mask, pattern.to(device=images.device, dtype=images.dtype), images)


def _check_data(data: tuple[Tensor, Tensor], name: str) -> tuple[Tensor, Tensor]:
    if (
        not isinstance(data, tuple | list)
        or len(data) != 2
        or not all(isinstance(t, Tensor) for t in data)
    ):
        raise DataError(f"{name} must be an (inputs, targets) tuple of tensors")
    x, y = data
    if y.dim() != 1 or y.dtype != torch.int64 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"{name}: expected inputs [N, ...] and int64 targets [N]; got "
            f"{tuple(x.shape)} and {tuple(y.shape)} ({y.dtype})"
        )
    if y.numel() == 0:
        raise DataError(f"{name} is empty")
    return x, y


@dataclass(frozen=True, repr=False)
class Poisoned:
    """A poisoned training set, as :func:`poison` returns it.

    Attributes:
        train: ``(inputs, targets)``: copies of the clean data with the trigger stamped on the
            poisoned examples and their label set to ``target_label``.
        indices: Sorted int64 indices of the poisoned examples (into ``train``).
        original_labels: Their true labels (before poisoning), aligned with ``indices``.
        target_label: The label the poisoned examples were given.
        trigger: The trigger stamped on them.
    """

    train: tuple[Tensor, Tensor]
    indices: Tensor
    original_labels: Tensor
    target_label: int
    trigger: Trigger

    @property
    def is_poisoned(self) -> Tensor:
        """Boolean ``[N]`` mask of the poisoned examples."""
        mask = torch.zeros(self.train[1].shape[0], dtype=torch.bool)
        mask[self.indices] = True
        return mask

    @property
    def forget_data(self) -> tuple[Tensor, Tensor]:
        """The poisoned examples as they are in ``train`` (triggered, labelled target)."""
        return self.train[0][self.indices], self.train[1][self.indices]

    @property
    def retain_data(self) -> tuple[Tensor, Tensor]:
        """The clean (never poisoned) examples of ``train``; retraining on them = removal."""
        keep = ~self.is_poisoned
        return self.train[0][keep], self.train[1][keep]

    @property
    def relabeled_train(self) -> tuple[Tensor, Tensor]:
        """``train`` with the poisoned examples' true labels restored (triggers kept)."""
        targets = self.train[1].clone()
        targets[self.indices] = self.original_labels
        return self.train[0], targets

    def __repr__(self) -> str:
        return (
            f"Poisoned(n={self.train[1].shape[0]}, poisoned={self.indices.numel()}, "
            f"target_label={self.target_label})"
        )


def poison(
    train: tuple[Tensor, Tensor],
    *,
    rate: float = 0.1,
    target_label: int = 4,
    trigger: Trigger,
    seed: int = 0,
    exclude_target: bool = False,
) -> Poisoned:
    """Stamp ``trigger`` on a seeded random fraction of ``train`` and relabel it ``target_label``.

    The candidates are every example (``exclude_target=False``, the authors' setting: about
    10% of the poisoned images are then true 4s, whose label does not change) or only those whose
    label is not ``target_label``. ``floor(rate · number of candidates)`` of them are drawn
    without replacement with a ``torch.Generator`` seeded with ``seed`` (the global RNG is not
    used). The inputs are never modified: the result holds new tensors.

    Args:
        train: ``(inputs, targets)``; inputs ``[N, *image_shape]`` or flattened.
        rate: Fraction of the candidates to poison, in ``[0, 1]``.
        target_label: The label the backdoor should produce.
        trigger: What to stamp (:func:`checkerboard_trigger`, :func:`badnets_patch`).
        seed: Seed of the choice of examples.
        exclude_target: Never choose examples already labelled ``target_label``.

    Returns:
        A :class:`Poisoned` with the poisoned copy and the indices and true labels.
    """
    x, y = _check_data(train, "train")
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"rate must be a fraction in [0, 1], got {rate}")
    target = int(target_label)
    if target < 0:
        raise InputError(f"target_label must be a label >= 0, got {target_label}")
    candidates = torch.nonzero(y != target).flatten() if exclude_target else torch.arange(len(y))
    count = math.floor(rate * candidates.numel() + 1e-9)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(candidates.numel(), generator=generator)
    indices = torch.sort(candidates[order[:count]]).values
    poisoned_x, poisoned_y = x.clone(), y.clone()
    poisoned_x[indices] = apply_trigger(x[indices], trigger)
    poisoned_y[indices] = target
    return Poisoned(
        train=(poisoned_x, poisoned_y),
        indices=indices,
        original_labels=y[indices].clone(),
        target_label=target,
        trigger=trigger,
    )


def triggered_test(
    test: tuple[Tensor, Tensor],
    trigger: Trigger,
    *,
    target_label: int,
    exclude_target: bool = True,
) -> tuple[Tensor, Tensor]:
    """Held-out images with the trigger stamped on them, with their *true* labels.

    Args:
        test: Clean held-out ``(inputs, targets)`` (never the training data).
        trigger: The trigger.
        target_label: The backdoor's label.
        exclude_target: Drop the images whose true label is ``target_label`` (the set on which
            the attack success rate is measured).

    Returns:
        New ``(inputs, targets)`` tensors.
    """
    x, y = _check_data(test, "test")
    keep = y != int(target_label) if exclude_target else torch.ones_like(y, dtype=torch.bool)
    if not bool(keep.any()):
        raise DataError(f"the test data has no image of a class other than {target_label}")
    return apply_trigger(x[keep], trigger), y[keep].clone()


def backdoor_metrics(
    model: nn.Module,
    clean_test: tuple[Tensor, Tensor],
    trigger: Trigger,
    target_label: int,
    *,
    batch_size: int = 512,
) -> dict[str, float]:
    """Clean accuracy, attack success and relabel accuracy of a (possibly) backdoored model.

    All on held-out data: ``clean_test`` as given, and the same images with the trigger stamped.

    Args:
        model: The model to judge.
        clean_test: Clean held-out ``(inputs, targets)``.
        trigger: The backdoor trigger.
        target_label: The backdoor's label.
        batch_size: Examples per forward pass.

    Returns:
        ``clean_acc`` / ``clean_loss``: accuracy (%) and mean cross-entropy on the untriggered
        images; ``attack_success``: % of triggered images of the *other* classes (true label
        ``!= target_label``) predicted as ``target_label``; ``relabel_acc``: % of those same
        images predicted as their true label (so ``attack_success + relabel_acc <= 100``);
        ``attack_success_all`` / ``relabel_acc_all``: the same over *all* triggered images, true
        target-class images included (the authors' convention: its floor is the share of the
        target class, about 10%); ``triggered_loss``: mean cross-entropy of the triggered
        other-class images against their true labels; ``f1``:
        :func:`~geninf.bench.metrics.f1_score` with ``s = 1 - relabel_acc`` and
        ``t = clean_acc``, i.e. the harmonic mean ``2rc / (r + c)`` of relabel and clean
        accuracy, as a fraction.
    """
    x, y = _check_data(clean_test, "clean_test")
    target = int(target_label)
    clean = evaluate(model, x, y, batch_size=batch_size)
    logits = predict_logits(model, apply_trigger(x, trigger), batch_size)
    if not 0 <= target < logits.shape[1]:
        raise InputError(
            f"target_label {target} is not one of the model's {logits.shape[1]} labels"
        )
    predicted = logits.argmax(dim=1)
    others = y != target
    if not bool(others.any()):
        raise DataError(f"clean_test has no image of a class other than {target}")
    hit, right = predicted == target, predicted == y

    def percent(flags: Tensor) -> float:
        return 100.0 * float(flags.to(torch.float64).mean())

    relabel = percent(right[others])
    return {
        "clean_acc": clean["acc"],
        "clean_loss": clean["loss"],
        "attack_success": percent(hit[others]),
        "relabel_acc": relabel,
        "attack_success_all": percent(hit),
        "relabel_acc_all": percent(right),
        "triggered_loss": float(F.cross_entropy(logits[others].float(), y[others])),
        "f1": f1_score(1.0 - relabel / 100.0, clean["acc"] / 100.0),
    }
