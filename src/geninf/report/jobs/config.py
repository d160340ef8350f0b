"""The configuration of a job, declared once: :class:`JobConfig` and its subclasses.

A job's options are the fields of its config class: its own (``checkpoint``, ``forget``, ...),
the edit (an :class:`~geninf.edit.config.EditConfig` in ``edit``, for the jobs that edit) and how
it runs (a :class:`RunConfig` in ``run``). The keyword entry points of :mod:`geninf.report.jobs`
(``remove_run(**options)``, ...) and the command line build the config from the same flat
options with :meth:`JobConfig.from_options`, which checks the names against
:meth:`JobConfig.signature` — the entry point's signature, derived from the fields — so an option
flows from the command line (or a ``--config`` file) to the library without being listed again
on the way; the edit options' flags are themselves generated from :class:`EditConfig`.
:meth:`JobConfig.options` gives the flat options back for the run's ``config.json``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import torch

from ...distributed import is_main_process
from ...edit.config import EditConfig
from ...objective import SupervisedObjective
from ..checkpoint import Checkpoint, load_checkpoint
from ..rundir import RunDir
from .common import set_threads
from .inputs import resolve_device

__all__ = [
    "REQUIRED",
    "CheckpointJob",
    "JobConfig",
    "RunConfig",
    "Started",
    "checkpoint_objective",
    "keyword_entry",
    "run_in",
    "start_job",
]

#: the default of an option that must be given
REQUIRED = inspect.Parameter.empty
_KW = inspect.Parameter.KEYWORD_ONLY

J = TypeVar("J", bound="JobConfig")


@dataclass(frozen=True)
class RunConfig:
    """Where and how a job runs.

    Attributes:
        out: the run directory to write.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU threads (None: PyTorch's choice).
        force: replace ``out`` if it is a run directory geninf made and holds nothing else.
        progress: show progress bars.
        argv: the command line, recorded in ``config.json``.
    """

    out: str | None = None
    device: str = "auto"
    threads: int | None = None
    force: bool = False
    progress: bool = True
    argv: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """Base of the job configs (module docstring). Subclasses add their own fields and set:

    - ``EDIT_FIELDS``: the :class:`EditConfig` fields that are options of the job (none: the
      job has no ``edit``); ``EDIT_DEFAULTS``/``EDIT_FIXED``: defaults of those options that
      differ from the library's, and settings the job fixes without an option;
    - ``RUN_FIELDS``/``RUN_DEFAULTS``: the :class:`RunConfig` fields that are options and their
      defaults (``REQUIRED``: no default);
    - ``UNRECORDED``: options left out of ``config.json``'s ``options``.
    """

    edit: EditConfig | None = None
    run: RunConfig = field(default_factory=RunConfig)

    EDIT_FIELDS: ClassVar[tuple[str, ...]] = ()
    EDIT_DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    EDIT_FIXED: ClassVar[Mapping[str, Any]] = {}
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("out", "device", "threads", "force", "progress")
    RUN_DEFAULTS: ClassVar[Mapping[str, Any]] = {"out": REQUIRED}
    UNRECORDED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _own(cls) -> list[Any]:
        return [f for f in fields(cls) if f.name not in ("edit", "run")]

    @classmethod
    def signature(cls) -> inspect.Signature:
        """The keyword signature of the job's entry point: every option and its default."""
        params = [inspect.Parameter(f.name, _KW, default=_default(f)) for f in cls._own()]
        edit = {f.name: f.default for f in fields(EditConfig)}
        for name in cls.EDIT_FIELDS:
            default = cls.EDIT_DEFAULTS.get(name, edit[name])
            params.append(inspect.Parameter(name, _KW, default=default))
        run = {f.name: f.default for f in fields(RunConfig)}
        for name in (*cls.RUN_FIELDS, "argv"):
            default = cls.RUN_DEFAULTS.get(name, run[name])
            params.append(inspect.Parameter(name, _KW, default=default))
        params.sort(key=lambda p: p.default is not REQUIRED)  # the required options first
        return inspect.Signature(params, return_annotation=dict)

    @classmethod
    def from_options(cls: type[J], options: Mapping[str, Any]) -> J:
        """The config of the flat ``options`` (the entry point's keyword arguments).

        Raises:
            TypeError: an unknown option or a missing required one (as a Python call would).
        """
        bound = cls.signature().bind(**options)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values["argv"] = tuple(values.get("argv") or ())
        run = RunConfig(**{k: values.pop(k) for k in (*cls.RUN_FIELDS, "argv")})
        edit = None
        if cls.EDIT_FIELDS:
            given = {k: values.pop(k) for k in cls.EDIT_FIELDS}
            edit = EditConfig(**{**given, **cls.EDIT_FIXED})
        return cls(**values, edit=edit, run=run)

    def options(self) -> dict[str, Any]:
        """The flat options (the entry point's arguments but ``argv``), for ``config.json``."""
        out = {f.name: getattr(self, f.name) for f in self._own()}
        out.update({k: getattr(self.edit, k) for k in self.EDIT_FIELDS})
        out.update({k: getattr(self.run, k) for k in self.RUN_FIELDS})
        order = list(self.signature().parameters)
        return {k: out[k] for k in order if k in out and k not in self.UNRECORDED}


@dataclass(frozen=True, kw_only=True)
class CheckpointJob(JobConfig):
    """A job on a trained model (``geninf remove``, ``relabel``, ``score``).

    Attributes:
        checkpoint: run directory, ``.safetensors`` file or ``.pt`` state dict.
        data, model, width: override the checkpoint's record (needed for a ``.pt`` file).
    """

    checkpoint: str
    data: str | None = None
    model: str | None = None
    width: float | None = None

    @property
    def input_file(self) -> str | None:
        """A file the job reads besides the checkpoint (never overwritten by the run)."""
        return None

    def load(self) -> Checkpoint:
        """The checkpoint, its record overridden by ``data``, ``model`` and ``width``."""
        overrides = {"model": self.model, "width": self.width, "data": self.data}
        return load_checkpoint(self.checkpoint, overrides=overrides)


def checkpoint_objective(ckpt: Checkpoint) -> SupervisedObjective:
    """The training objective recorded with ``ckpt`` (cross-entropy plus its weight decay)."""
    training = ckpt.info.get("training") or {}
    return SupervisedObjective(weight_decay=float(training.get("weight_decay", 0.0)))


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED


def keyword_entry(
    cls: type[J], runner: Callable[[J], dict[str, Any]], name: str
) -> Callable[..., dict[str, Any]]:
    """The keyword entry point ``name(**options)`` of ``runner``: builds ``cls`` from the
    options (its signature is ``cls.signature()``) and runs it; its docstring is ``cls``'s."""

    def entry(**options: Any) -> dict[str, Any]:
        return runner(cls.from_options(options))

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = cls.__doc__
    entry.__module__ = runner.__module__
    entry.__signature__ = cls.signature()  # type: ignore[attr-defined]
    return entry


@dataclass
class Started:
    """A started job: its start time and device."""

    start: float
    device: torch.device

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.start


def start_job(run: RunConfig) -> Started:
    """Start a job: note the time, set the CPU threads, resolve the device."""
    start = time.perf_counter()
    set_threads(run.threads)
    return Started(start, resolve_device(run.device))


def run_in(
    run: RunConfig,
    body: Callable[[RunDir], dict[str, Any]],
    inputs: Sequence[Any] = (),
) -> dict[str, Any]:
    """Open the run directory ``run.out`` (never overwriting ``inputs``) and call ``body`` with
    it; commit the directory when it returns, abort it when anything is raised."""
    rundir = RunDir(run.out, force=run.force, inputs=list(inputs), enabled=is_main_process())
    try:
        results = body(rundir)
    except BaseException:
        rundir.abort()
        raise
    rundir.commit()
    return results
