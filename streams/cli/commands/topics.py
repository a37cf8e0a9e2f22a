"""`observer-insights topics create|describe`: the app's topics, their partitions and configs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final

import click

from streams.cli.commands.common import broker_settings, fail
from streams.runtime.settings import Settings

__all__ = ["TopicInfo", "topics"]

# Configs shown by default: what decides how long records live and how big they may be.
KEY_CONFIGS: Final = (
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "min.insync.replicas",
)


@dataclass
class TopicInfo:
    """One topic as the broker describes it."""

    name: str
    partitions: list[dict[str, Any]] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)


def app_topic_names(settings: Settings, existing: set[str]) -> list[str]:
    """The topics the app owns, then its Faust changelog topics (`<app id>-*-changelog`)."""
    from streams.runtime.kafka import topic_plan

    names = [topic.name for topic in topic_plan(settings)]
    prefix = f"{settings.app_id}-"
    others = {t for t in existing if t.startswith(prefix) and t.endswith("-changelog")}
    return names + sorted(others - set(names))


async def _describe(settings: Settings, wanted: list[str]) -> tuple[list[TopicInfo], list[str]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.runtime.kafka import client_options

    admin = AIOKafkaAdminClient(**client_options(settings), client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = wanted or app_topic_names(settings, existing)
        # Only existing topics are described: a metadata request for a missing one would
        # create it on brokers with auto-creation on.
        found = [name for name in names if name in existing]
        missing = [name for name in names if name not in existing]
        if not found:
            return [], missing
        infos = {name: TopicInfo(name) for name in found}
        for topic in await admin.describe_topics(found):
            infos[topic["topic"]].partitions = sorted(
                topic["partitions"], key=lambda p: int(p["partition"])
            )
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in found]
        for response in await admin.describe_configs(resources):
            for resource in response.to_object()["resources"]:
                info = infos.get(resource["resource_name"])
                if info is None:
                    continue
                for entry in resource["config_entries"]:
                    if entry["config_value"] is not None and not entry["is_sensitive"]:
                        info.configs[entry["config_names"]] = entry["config_value"]
        return [infos[name] for name in found], missing
    finally:
        await admin.close()


def describe_lines(info: TopicInfo, *, all_configs: bool) -> list[str]:
    """A topic as text: a header, its configs, one line per partition."""
    replication = len(info.partitions[0]["replicas"]) if info.partitions else 0
    lines = [f"{info.name}  partitions={len(info.partitions)}  replication={replication}"]
    names = sorted(info.configs) if all_configs else KEY_CONFIGS
    shown = [f"{name}={info.configs[name]}" for name in names if name in info.configs]
    defaults = [name for name in names if name not in info.configs]
    if shown:
        lines.append("  configs: " + "  ".join(shown))
    if defaults and not all_configs:
        lines.append("  broker defaults (not reported): " + ", ".join(defaults))
    for p in info.partitions:
        lines.append(
            f"  partition {p['partition']}: leader {p['leader']}  replicas {p['replicas']}  "
            f"isr {p['isr']}"
        )
    return lines


@click.group()
def topics() -> None:
    """Create or describe the app's topics (KAFKA_BOOTSTRAP_SERVERS must be set)."""


@topics.command()
def create() -> None:
    """Create the app's missing topics with INSIGHTS_TOPIC_PARTITIONS partitions."""
    from aiokafka.errors import KafkaError

    from streams.runtime.kafka import ensure_topics, topic_plan

    settings = broker_settings("topics create")
    try:
        created = asyncio.run(ensure_topics(settings))
    except KafkaError as exc:
        fail(f"topics create: Kafka error: {exc!r}", 1)
    for topic in topic_plan(settings):
        state = "created" if topic.name in created else "exists"
        click.echo(f"{state:8} {topic.name}")


@topics.command()
@click.argument("names", nargs=-1)
@click.option("--all-configs", is_flag=True, help="Every config the broker reports.")
def describe(names: tuple[str, ...], all_configs: bool) -> None:
    """Partitions and configs of NAMES (default: the app's topics and changelogs).

    Shows cleanup.policy, retention and size limits. Some brokers (the embedded one) report
    only the configs a topic was created with; the others are the broker's defaults.
    Exits 1 when a named topic does not exist.
    """
    from aiokafka.errors import KafkaError

    settings = broker_settings("topics describe")
    try:
        infos, missing = asyncio.run(_describe(settings, list(names)))
    except KafkaError as exc:
        fail(f"topics describe: Kafka error: {exc!r}", 1)
    for info in infos:
        for line in describe_lines(info, all_configs=all_configs):
            click.echo(line)
    for name in missing:
        click.echo(f"{name}  missing")
    if missing:
        raise SystemExit(1)
