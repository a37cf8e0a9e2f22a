"""The `observer-insights` subcommands besides `worker` and `schemas`, one module each."""

from __future__ import annotations

from streams.cli.commands.configdoc import config_doc
from streams.cli.commands.demo import demo
from streams.cli.commands.produce import produce
from streams.cli.commands.tail import tail
from streams.cli.commands.topics import topics
from streams.cli.commands.validate import validate

__all__ = ["COMMANDS", "config_doc", "demo", "produce", "tail", "topics", "validate"]

COMMANDS = (demo, produce, tail, topics, validate, config_doc)
