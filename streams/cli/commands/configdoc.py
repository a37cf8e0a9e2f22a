"""`observer-insights config-doc`: the configuration table, generated from the settings."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["config_doc"]


@click.command("config-doc")
@click.option(
    "--write",
    "write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Replace the table between the config-table markers of this file (README.md).",
)
@click.option(
    "--check",
    "check",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Exit 1 when this file's table differs from the generated one.",
)
def config_doc(write: Path | None, check: Path | None) -> None:
    """Print the Markdown table of every setting: variable, default, meaning."""
    from streams.cli.configdoc import main

    if write and check:
        msg = "give --write or --check, not both"
        raise click.UsageError(msg)
    if write:
        raise SystemExit(main(["--write", str(write)]))
    if check:
        raise SystemExit(main(["--check", str(check)]))
    raise SystemExit(main([]))
