"""Argument parsing shared by the package's argparse commands: options may also be written the
Hydra way, ``key=value`` (as in ``train.py`` overrides), rewritten to ``--key=value`` before
argparse sees them, so both spellings share one parser, one ``--help`` and argparse's errors."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

# `batch=32`, `paths.data_dir=/x`; not `--k=v`, `/a=b` or `=x`
_KEY_VALUE = re.compile(r"[A-Za-z_][\w.-]*=")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def key_values_to_options(argv: Sequence[str]) -> list[str]:
    """``["batch=32", "--seq", "8"]`` -> ``["--batch=32", "--seq", "8"]``; any other token (an
    option, its value, a path) is passed through."""
    return [f"--{arg}" if _KEY_VALUE.match(arg) else arg for arg in argv]


def parse_key_values(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``) of ``--key value`` or ``key=value`` tokens.

    Build ``parser`` with ``allow_abbrev=False`` so a misspelt key is never taken for a prefix of
    a real one: an unknown key exits with status 2 naming it.
    """
    args, unknown = parser.parse_known_args(
        key_values_to_options(sys.argv[1:] if argv is None else argv)
    )
    if unknown:
        names = [u[2:].split("=", 1)[0] if u.startswith("--") else u for u in unknown]
        parser.error(f"unknown key(s): {', '.join(names)} (see --help for the known ones)")
    return args


def boolean(value: str) -> bool:
    """An argparse ``type`` for ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, 1/0)."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value!r}")
        return number

    return parse


def add_flag(group, name: str, help: str) -> None:
    """A boolean option of ``group`` that takes ``--name``, ``--name=false`` or ``name=true``
    (default false)."""
    group.add_argument(
        name, nargs="?", const=True, default=False, type=boolean, metavar="BOOL", help=help
    )
