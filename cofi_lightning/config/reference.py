"""The config reference (``docs/config.md``) rendered from the schema's dataclasses: one table per
node, one row per key with its type, default and ``Attributes:`` text. Regenerate it with
``python -m cofi_lightning.config.reference --out docs/config.md`` (a test fails when it is stale).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from cofi_lightning.config.schema import TrainConfig

HEADER = """# Config reference

Every key of `conf/train.yaml`'s composition, generated from the typed schema
(`cofi_lightning/config/schema.py`, `stage_configs.py`) by
`python -m cofi_lightning.config.reference --out docs/config.md`; do not edit by hand.
Defaults are the schema's; the YAML groups under `conf/` (task, experiment, ablation, fidelity,
trainer, logger, callbacks) set their own values on top. `python train.py --cfg job` prints the
composed config of a command.
"""

FREE_FORM = (
    "a free-form node built with `hydra.utils.instantiate`; its keys are checked against the "
    "target's signature"
)


def attribute_docs(cls: type) -> dict[str, str]:
    """``{name: text}`` from the ``Attributes:`` sections of ``cls`` and its bases (a subclass's
    text wins), each entry's continuation lines joined into one line."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.getdoc(klass) if "__doc__" in vars(klass) else None
        if not doc or "Attributes:" not in doc:
            continue
        section = doc.split("Attributes:", 1)[1]
        current = None
        for line in section.splitlines():
            entry = re.match(r"^    (\w+(?: / \w+)*): ?(.*)$", line)
            if entry:  # ``a / b: text`` documents two keys at once
                current = entry.group(1).split(" / ")
                for name in current:
                    docs[name] = entry.group(2).strip()
            elif line.startswith("        ") and current is not None:
                for name in current:
                    docs[name] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                break  # the next section (Raises:, ...)
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _cell(text: str) -> str:
    """Docstring text as one Markdown table cell (reST roles and double backticks made plain)."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, dict) and not value:
        return "`{}`"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _nodes(cls: type, prefix: str) -> list[tuple[str, type]]:
    """``(key prefix, dataclass)`` of ``cls`` and every dataclass node below it, depth first."""
    out = [(prefix, cls)]
    for f in dataclasses.fields(cls):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            out += _nodes(type(default), f"{prefix}{f.name}.")
    return out


def render() -> str:
    """The whole page."""
    parts = [HEADER]
    for prefix, cls in _nodes(TrainConfig, ""):
        docs = attribute_docs(cls)
        summary = _cell((inspect.getdoc(cls) or "").split("\n\n", 1)[0])
        title = prefix.rstrip(".") or "top level"
        rows = []
        for f in dataclasses.fields(cls):
            default = _default(f)
            if dataclasses.is_dataclass(default):
                continue  # its own table
            text = docs.get(f.name, "")
            if isinstance(default, dict):
                text = f"{text} ({FREE_FORM})" if text else FREE_FORM[0].upper() + FREE_FORM[1:]
            rows.append(
                f"| `{prefix}{f.name}` | `{_cell(str(f.type))}` | {_cell(_value(default))} "
                f"| {_cell(text)} |"
            )
        parts.append(f"\n## `{title}`\n\n{summary}\n\n| key | type | default | meaning |\n")
        parts.append("|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return "".join(parts)


def undocumented() -> list[str]:
    """Keys whose dataclass docstring says nothing about them (a test keeps this empty)."""
    missing = []
    for prefix, cls in _nodes(TrainConfig, ""):
        docs = attribute_docs(cls)
        for f in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(_default(f)) and f.name not in docs:
                missing.append(f"{prefix}{f.name}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the page here (default: stdout)")
    args = parser.parse_args(argv)
    page = render()
    if args.out is not None:
        args.out.write_text(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
