"""Argument parsing shared by the package's commands (``python -m cofi_lightning.<command>``).

The commands are argparse programs whose options may also be written the Hydra way, ``key=value``,
as in ``train.py`` overrides and the README: :func:`parse_key_values` rewrites each such token to
``--key=value`` before argparse sees it, so both spellings share one parser, one ``--help`` and
argparse's errors (exit status 2, naming an unknown key or a bad value). This module owns no
command and no option of one.
"""

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
    """``["batch=32", "--seq", "8"]`` -> ``["--batch=32", "--seq", "8"]``.

    Only tokens that start with a key name and ``=`` are rewritten; everything else (options,
    their values, paths) is passed through unchanged.
    """
    return [f"--{arg}" if _KEY_VALUE.match(arg) else arg for arg in argv]


def parse_key_values(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv`` (``--key value``, ``--key=value`` or ``key=value`` tokens) with ``parser``.

    Args:
        parser: The command's parser; build it with ``allow_abbrev=False`` so a misspelt key is
            never taken for a prefix of a real one.
        argv: The arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        The parsed namespace.

    Raises:
        SystemExit: with status 2 and argparse's usage message on stderr for an unknown key or an
            invalid value; with status 0 after printing ``--help``.
    """
    args, unknown = parser.parse_known_args(
        key_values_to_options(sys.argv[1:] if argv is None else argv)
    )
    if unknown:
        names = [u[2:].split("=", 1)[0] if u.startswith("--") else u for u in unknown]
        parser.error(f"unknown key(s): {', '.join(names)} (see --help for the known ones)")
    return args


def boolean(value: str) -> bool:
    """An argparse ``type`` for ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, 1/0).

    Raises:
        argparse.ArgumentTypeError: any other text (argparse names the option in its message).
    """
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``.

    Raises:
        argparse.ArgumentTypeError: (from the returned function) text that is no such integer.
    """

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
    """A boolean option that takes ``--name``, ``--name=false`` or ``name=true`` (default false).

    Args:
        group: An ``argparse`` parser or argument group.
        name: The option, with its dashes (``--optimize``).
        help: What it does; say the default there.
    """
    group.add_argument(
        name, nargs="?", const=True, default=False, type=boolean, metavar="BOOL", help=help
    )
