"""The one check of a user's seed, shared by selection, editing, data splits and training."""

from __future__ import annotations

import numbers

from .errors import InputError

__all__ = ["SEED_RANGE", "check_seed"]

#: The seeds ``torch.Generator.manual_seed`` accepts (a negative seed s stands for 2**64 + s).
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an ``int`` if it is an integer that torch accepts as a seed.

    Raises:
        InputError: ``seed`` is not an integer (a bool is not one) or lies outside
            :data:`SEED_RANGE` (``torch.Generator.manual_seed`` would overflow).
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {seed!r}")
    lo, hi = SEED_RANGE
    if not lo <= int(seed) <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}] (a torch seed), got {seed}")
    return int(seed)
