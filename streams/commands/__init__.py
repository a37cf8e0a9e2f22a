"""The `observer-insights` subcommands besides `worker` and `schemas`, one module each."""

from __future__ import annotations

from streams.commands.configdoc import config_doc
from streams.commands.demo import demo
from streams.commands.produce import produce
from streams.commands.tail import tail
from streams.commands.topics import topics
from streams.commands.validate import validate

__all__ = ["COMMANDS", "config_doc", "demo", "produce", "tail", "topics", "validate"]

COMMANDS = (demo, produce, tail, topics, validate, config_doc)
