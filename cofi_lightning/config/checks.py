"""The checks every config node uses; each error message starts with the key. It knows no config
keys itself (``schema.py`` and ``stage_configs.py`` do)."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_object


class ConfigError(ValueError):
    """A config value is invalid; the message starts with the key."""


def require(ok: bool, key: str, message: str, value: Any = None) -> None:
    """Raise :class:`ConfigError` ``"<key> <message>, got <value>"`` unless ``ok``."""
    if not ok:
        suffix = "" if value is None else f", got {value!r}"
        raise ConfigError(f"{key} {message}{suffix}")


def at_least(node: object, key: str, names: tuple[str, ...], low: float, strict: bool) -> None:
    """Each of ``node``'s fields ``names`` is None or above ``low`` (``>=`` unless ``strict``)."""
    for name in names:
        value = getattr(node, name)
        if value is None:
            continue
        ok = value > low if strict else value >= low
        require(ok, f"{key}.{name}", f"must be {'>' if strict else '>='} {low:g}", value)


def counts_or_null(node: object, key: str, names: tuple[str, ...]) -> None:
    """Each of ``node``'s fields ``names`` is None or an integer >= 1."""
    for name in names:
        value = getattr(node, name)
        require(value is None or value >= 1, f"{key}.{name}", "must be null or >= 1", value)


def fractions(node: object, key: str, names: tuple[str, ...]) -> None:
    """Each of ``node``'s fields ``names`` is in [0, 1)."""
    for name in names:
        value = getattr(node, name)
        require(0.0 <= value < 1.0, f"{key}.{name}", "must be in [0, 1)", value)


def one_of(node: object, key: str, choices: dict[str, tuple[str, ...]]) -> None:
    """Each field named in ``choices`` holds one of its allowed values."""
    for name, allowed in choices.items():
        value = getattr(node, name)
        require(value in allowed, f"{key}.{name}", f"must be in {allowed}", value)


def check_target_kwargs(node: dict[str, Any], key: str, passed: tuple[str, ...] = ()) -> None:
    """The keys of an instantiable node (empty: nothing to check) are arguments of its
    ``_target_``, other than those the pipeline ``passed`` itself."""
    if not node:
        return
    target = node.get("_target_")
    require(isinstance(target, str), f"{key}._target_", "must name a class or function", target)
    try:
        obj = get_object(target)
    except Exception as err:  # ImportError, AttributeError: the message names what is missing
        raise ConfigError(f"{key}._target_ cannot be imported: {target!r} ({err})") from None
    accepted = _accepted_kwargs(obj)
    for name in node:
        if name.startswith("_") and name.endswith("_"):
            continue
        ok = accepted is None or name in accepted
        require(ok, f"{key}.{name}", f"is not an argument of {target}")
        require(name not in passed, f"{key}.{name}", "is set by the pipeline; remove it")


def _accepted_kwargs(obj: Any) -> set[str] | None:
    """Keyword arguments ``obj`` accepts, following a class's ``**kwargs`` up its bases'
    ``__init__`` (None: anything is accepted)."""
    if isinstance(obj, type):
        functions = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)]
    else:
        functions = [obj]
    names: set[str] = set()
    for fn in functions:
        params = inspect.signature(fn).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None
