"""Write docs/configuration.md, the reference of every config key, from the code itself: the
config dataclasses (streamer/config.py: type, default, the docstring under each field) and the
comments of the repository's config.toml (for fields without a docstring).

    python scripts/config_reference.py [--check]

--check: exit 1 when docs/configuration.md differs from what the code says (the test suite
runs it), instead of writing it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ser.config import Config  # noqa: E402

OUT = REPO / "docs" / "configuration.md"
NAV = " · ".join(
    f"[{title}]({path})"
    for title, path in (
        ("README", "../README.md"),
        ("usage", "usage.md"),
        ("configuration", "configuration.md"),
        ("output", "output.md"),
        ("serving", "serving.md"),
        ("model", "model.md"),
        ("training", "training.md"),
        ("Python API", "api.md"),
        ("development", "development.md"),
    )
)
HEADER = f"""# Configuration reference

{NAV}

`ser-live` and `ser-serve` read `./config.toml` when present, or `--config PATH`; every key is
optional. `--set section.key=value` overrides one key from the command line (repeatable); the
common ones also have flags (`ser-live --help`, `ser-serve --help`). A wrong key or value is one
line naming it and what is expected, exit 2. The repository's `config.toml` lists every key
with its default.

Generated from `streamer/config.py` by `python scripts/config_reference.py` (the test suite
fails when this page and the code disagree).
"""


def field_docs() -> dict[tuple[str, str], str]:
    """(dataclass name, field) -> the docstring written under the field."""
    tree = ast.parse((REPO / "streamer" / "config.py").read_text())
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for stmt, after in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(after.value.value.split())
    return docs


def toml_comments() -> dict[tuple[str, str], str]:
    """(section, key) -> the comment beside the key in config.toml (continuation lines too)."""
    comments: dict[tuple[str, str], str] = {}
    section, key = "", ""
    for line in (REPO / "config.toml").read_text().splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            section, key = m.group(1), ""
        elif m := re.match(r"^(\w+)\s*=\s*[^#]*?(?:#\s*(.*))?$", line):
            key = m.group(1)
            comments[(section, key)] = (m.group(2) or "").strip()
        elif (m := re.match(r"^\s+#\s*(.*)$", line)) and key:
            comments[(section, key)] += " " + m.group(1).strip()
    return comments


def _type(annotation: object) -> str:
    if isinstance(annotation, str):
        return annotation
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_type(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def render() -> str:
    docs, comments = field_docs(), toml_comments()
    lines = [HEADER]
    for section in dataclasses.fields(Config):
        cls = type(getattr(Config(), section.name))
        hints = typing.get_type_hints(cls)
        lines += [f"## [{section.name}]", "", "| key | type | default | meaning |"]
        lines.append("|---|---|---|---|")
        for f in dataclasses.fields(cls):
            key = f"{section.name}.{f.name}"
            meaning = docs.get((cls.__name__, f.name)) or comments.get((section.name, f.name), "")
            if not meaning:
                raise SystemExit(f"{key}: no docstring and no config.toml comment")
            default = getattr(cls(), f.name)
            meaning = meaning.replace("|", "\\|")
            lines.append(
                f"| `{f.name}` | {_type(hints[f.name])} | `{_value(default)}` | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(
                f"{OUT.relative_to(REPO)} differs from the code: run "
                "python scripts/config_reference.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
