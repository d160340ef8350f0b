"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A file written through :func:`atomic_write` appears whole or not at all: an error, Ctrl-C or a
full disk leaves the previous file (or none) in place and no temporary file behind. The
implementation is :mod:`geninf._atomic`, below every layer (the experiment writers of
:mod:`geninf.bench` use it too); this module is its place in :mod:`geninf.report`.
"""

from __future__ import annotations

from .._atomic import *  # noqa: F403
from .._atomic import __all__ as __all__
