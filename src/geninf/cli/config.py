"""``--config PATH``: options of a subcommand read from a JSON or TOML file.

The file's top level is an object (a TOML table) mapping option names to values; a name is the
long option without its leading ``--``, with dashes or underscores (``"max-iter"`` or
``"max_iter"``). Each entry becomes the command-line token ``--name=VALUE`` and the tokens are put
before the command line's own, so an option given on the command line overrides the file. Values
are checked the way the command line checks them — the option's type conversion, its choices and
its validators — before anything runs:

- a flag (``--quiet``, ``--force``...) takes ``true`` or ``false``; ``"flatten": false`` is
  ``--no-flatten``;
- any other option takes a string or a number (written as on the command line: ``"ratio": 0.05``
  and ``"ratio": "0.05"`` are the same); the comma-list options (``ratios``, ``gammas``,
  ``methods``...) also take an array, and ``unlearning-options`` an object
  (``{"scrub_alpha": 0.5}``);
- positional arguments (``bench EXPERIMENT``, ``report RUN_DIR``) stay on the command line.

Every problem is an :class:`~geninf.errors.InputError` with one line that names the file: the
file is missing or unreadable, not JSON/TOML (with line and column), its top level is not an
object, a key is unknown (or ``config`` itself, or given twice), a value has the wrong type, is
out of range or not one of the choices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError, brief

__all__ = ["expand_config", "load_config_file", "subcommand_position"]

_SKIP = (argparse._HelpAction, argparse._VersionAction)


def subcommand_position(parser: argparse.ArgumentParser, argv: list[str]) -> int | None:
    """Index of the subcommand in ``argv`` (the first token that is not an option: the global
    options take no value), or None when there is none or it is not a subcommand."""
    for i, token in enumerate(argv):
        if token == "--":
            return None
        if not token.startswith("-"):
            return i if token in _subparsers(parser) else None
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with the options of its subcommand's ``--config`` file inserted right after the
    subcommand (so the command line, which follows, overrides them); ``argv`` itself when no
    ``--config`` is given.

    Raises:
        InputError: a bad config file (see the module docstring).
        SystemExit: ``--config`` without a value (a usage error, already printed).
    """
    at = subcommand_position(parser, argv)
    for token in argv:
        if token == "--" or not token.startswith("-"):
            break
        if token == "--config" or token.startswith("--config="):
            raise InputError(
                "--config is an option of the subcommands: write geninf COMMAND --config PATH"
            )
    if at is None:
        return argv
    command = argv[at]
    sub = _subparsers(parser)[command]
    rest = argv[at + 1 :]
    pre = type(parser)(prog=f"geninf {command}", add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(rest)
    if known.config is None:
        return argv
    tokens = config_tokens(sub, command, known.config)
    return [*argv[: at + 1], *tokens, *rest]


def load_config_file(path: str) -> dict[str, Any]:
    """The mapping held by a ``.json`` or ``.toml`` file (see the module docstring)."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise InputError(
            f"config file {path} must be a .json or .toml file, got {suffix or 'no extension'}"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"cannot read config file {path}: it is a directory") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read config file {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if suffix == ".json":
        data = _parse_json(text, path)
    else:
        data = _parse_toml(text, path)
    if not isinstance(data, dict):
        raise InputError(
            f"config file {path}: the top level must be an object mapping option names to "
            f'values (e.g. {{"epochs": 2}}), got {_kind(data)}'
        )
    return data


def _parse_json(text: str, path: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise InputError(f"config file {path}: key {_show(key)} appears twice")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}"
        ) from None
    except RecursionError:
        raise InputError(f"config file {path} is not valid JSON: nested too deeply") from None
    except InputError:  # a key given twice (from pairs)
        raise
    except ValueError as exc:  # e.g. an integer too long to convert
        raise InputError(f"config file {path} is not valid JSON: {brief(exc)}") from None


def _parse_toml(text: str, path: str) -> Any:
    if sys.version_info < (3, 11):
        raise InputError(
            f"config file {path}: TOML needs Python 3.11 or later (tomllib); this is Python "
            f"{sys.version_info.major}.{sys.version_info.minor}: write the options as .json"
        )
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = " ".join(str(exc).split())
        raise InputError(f"config file {path} is not valid TOML: {detail}") from None
    except RecursionError:
        raise InputError(f"config file {path} is not valid TOML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer too long to convert
        raise InputError(f"config file {path} is not valid TOML: {brief(exc)}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _options(sub: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, str]]:
    """``{long option string: (action, that string)}`` of every option a file may set."""
    out: dict[str, tuple[argparse.Action, str]] = {}
    for action in sub._actions:
        if isinstance(action, _SKIP) or not action.option_strings or action.dest == "config":
            continue
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt] = (action, opt)
    return out


def config_tokens(sub: argparse.ArgumentParser, command: str, path: str) -> list[str]:
    """The command-line tokens that the options of the config file ``path`` stand for."""
    data = load_config_file(path)
    options = _options(sub)
    positionals = {a.dest for a in sub._actions if not a.option_strings}
    help_hint = f"`geninf {command} --help` lists the options"
    seen: dict[str, str] = {}
    tokens: list[str] = []
    for key, value in data.items():
        name = str(key)
        where = f"config file {path}: {_show(name)}"
        if name.startswith("-"):
            raise InputError(
                f"{where}: write option names without the leading dashes, e.g. "
                f"{_show(name.lstrip('-'))}; {help_hint}"
            )
        opt = "--" + name.replace("_", "-")
        if opt == "--config":
            raise InputError(
                f"{where}: a config file cannot name another config file; give --config on "
                "the command line only"
            )
        if opt not in options:
            what = (
                "is a positional argument: give it on the command line"
                if name.replace("-", "_") in positionals
                else f"is not an option of geninf {command}"
            )
            raise InputError(f"{where} {what}; {help_hint}")
        action, flag = options[opt]
        if action.dest in seen:
            raise InputError(
                f"{where}: option --{seen[action.dest]} is given twice in the file; keep one"
            )
        seen[action.dest] = flag[2:]
        tokens += _tokens(action, flag, value, where)
    return tokens


def _tokens(action: argparse.Action, flag: str, value: Any, where: str) -> list[str]:
    """The tokens of one option, validated as the command line would validate them."""
    if isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {flag} is a flag: give true or false, got {_kind(value)}")
        negative = flag.startswith("--no-")
        positive_flag = "--" + flag[5:] if negative else flag
        on = value != negative
        return [positive_flag if on else "--no-" + positive_flag[2:]]
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {flag} is a flag: give true or false, got {_kind(value)}")
        return [flag] if value else []
    if not isinstance(action, argparse._StoreAction):
        raise InputError(f"{where}: {flag} cannot be set from a config file")
    text = _as_text(action, flag, value, where)
    _check_value(action, flag, text, where)
    return [f"{flag}={text}"]


def _as_text(action: argparse.Action, flag: str, value: Any, where: str) -> str:
    """The command-line spelling of ``value``."""
    takes_also = getattr(action.type, "config_value", None)  # "list", "mapping" or None
    if isinstance(value, list) and takes_also == "list":
        if not all(_scalar(v) for v in value):
            raise InputError(f"{where}: {flag} takes an array of strings or numbers, got {value!r}")
        text = ",".join(_scalar_text(v) for v in value)
    elif isinstance(value, dict) and takes_also == "mapping":
        if not all(_scalar(v) for v in value.values()):
            raise InputError(f"{where}: {flag} takes an object of numbers, got {value!r}")
        text = ",".join(f"{k}={_scalar_text(v)}" for k, v in value.items())
    elif not _scalar(value):
        takes = {"list": "a string, a number or an array", "mapping": "a string or an object"}
        raise InputError(
            f"{where}: {flag} takes {takes.get(takes_also, 'a string or a number')}, got "
            f"{_kind(value)}"
        )
    else:
        text = _scalar_text(value)
    if "\x00" in text or not _encodable(text):
        # a command line cannot hold these either
        raise InputError(f"{where}: {flag} holds a NUL character or invalid Unicode")
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _show(name: str) -> str:
    """A key as it would be written in JSON (quoted, control characters escaped)."""
    return json.dumps(name, ensure_ascii=not _encodable(name))


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _scalar_text(value: str | int | float) -> str:
    return value if isinstance(value, str) else repr(value)


def _check_value(action: argparse.Action, flag: str, text: str, where: str) -> None:
    """Apply the option's type and choices to ``text``, as argparse would."""
    converted: Any = text
    if callable(action.type):
        try:
            converted = action.type(text)
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"{where}: {flag}: {exc}") from None
        except (TypeError, ValueError):
            name = getattr(action.type, "__name__", repr(action.type))
            raise InputError(f"{where}: {flag}: invalid {name} value: {text!r}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(repr(c) for c in action.choices)
        raise InputError(f"{where}: {flag}: invalid choice: {converted!r} (choose from {choices})")
