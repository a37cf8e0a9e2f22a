"""The README's configuration table, generated from `Settings` (aliases, defaults, descriptions).

`python -m streams.cli.configdoc` prints it; `--write README.md` replaces the table between the
`<!-- config-table:start -->` and `<!-- config-table:end -->` markers; `--check README.md`
exits 1 when the README's table differs from the generated one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

from pydantic.fields import FieldInfo

from streams.runtime.settings import SECRET_VARIABLES, Settings
from streams.runtime.windows import WindowSpec

__all__ = ["END", "START", "main", "render_table", "replace_table"]

START: Final = "<!-- config-table:start -->"
END: Final = "<!-- config-table:end -->"

# Variables that are not Settings fields but belong in the table.
_EXTRA_ROWS: Final = (
    (
        "`OTEL_*`",
        "",
        "OpenTelemetry's own variables; tracing is on when `OTEL_TRACES_EXPORTER` "
        "(`otlp`, `console`) or an OTLP endpoint is set",
    ),
)


def _seconds(value: float) -> str:
    if value and value < 1:
        return f"{value * 1000:g}ms"
    return f"{value:g}s"


def render_default(name: str, value: Any) -> str:
    """A default as the README writes it: durations as `30s`, windows as their spec."""
    if value is None:
        return "unset"
    if isinstance(value, tuple) and all(isinstance(v, WindowSpec) for v in value):
        text = ",".join(spec.name for spec in value)
    elif name.endswith("_s") and isinstance(value, int | float):
        text = _seconds(float(value))
    else:
        text = str(value)
    return f"`{text}`"


def _row(name: str, field: FieldInfo) -> tuple[str, str, str]:
    alias = field.alias or name.upper()
    meaning = field.description or ""
    if alias in SECRET_VARIABLES:
        meaning += f"; also from a file: `{alias}_FILE`"
    return f"`{alias}`", render_default(name, field.default), meaning


def render_table() -> str:
    """The Markdown table: variable, default, meaning — one row per setting, in field order."""
    rows = [_row(name, field) for name, field in Settings.model_fields.items()]
    rows.extend(_EXTRA_ROWS)
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| {variable} | {default} | {meaning} |" for variable, default, meaning in rows]
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """`text` with the part between the markers replaced by `table`."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        msg = f"the markers {START} and {END} are not both in the text"
        raise ValueError(msg)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.cli.configdoc [--write FILE | --check FILE]`."""
    args = sys.argv[1:] if argv is None else argv
    table = render_table()
    if not args:
        sys.stdout.write(table)
        return 0
    if len(args) != 2 or args[0] not in ("--write", "--check"):
        sys.stderr.write("usage: python -m streams.cli.configdoc [--write FILE | --check FILE]\n")
        return 2
    path = Path(args[1])
    current = path.read_text(encoding="utf-8")
    wanted = replace_table(current, table)
    if args[0] == "--write":
        if wanted != current:
            path.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != current:
        sys.stderr.write(
            f"{path}: the configuration table is out of date; run "
            f"`observer-insights config-doc --write {path}`\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
