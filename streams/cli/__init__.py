"""The `observer-insights` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.cli.commands import COMMANDS
from streams.runtime.errors import ConfigError, DependencyError, EmbeddedBrokerError
from streams.runtime.settings import load_settings

__all__ = ["main"]


@click.group()
@click.version_option(package_name="observer-coordinator-insights")
def cli() -> None:
    """Turn a Kafka stream of observations into rolling insights."""


@cli.command()
def worker() -> None:
    """Run a worker (starts the embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset)."""
    from streams.cli.runner import run_worker

    try:
        settings = load_settings()
        code = run_worker(settings)
    except ConfigError as exc:
        click.echo(f"observer-insights: configuration error: {exc}", err=True)
        sys.exit(2)
    except DependencyError as exc:
        click.echo(f"observer-insights: unsupported dependency: {exc}", err=True)
        sys.exit(2)
    except EmbeddedBrokerError as exc:
        click.echo(f"observer-insights: embedded broker: {exc}", err=True)
        sys.exit(3)
    sys.exit(code)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default="schemas")
def schemas(folder: Path) -> None:
    """Write the JSON Schema of every topic's records into FOLDER."""
    from models.schemas import write_schemas

    for path in write_schemas(folder):
        click.echo(str(path))


# Tools beside the worker: one module each in streams/cli/commands/.
for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli()
