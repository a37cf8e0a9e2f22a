"""The Faust integration as a whole: an app built by `create_app` runs on the subclasses of
`streams.faust`, composed in one order, logging as Faust's classes do; `install()` is
idempotent; the worker refuses library versions the fixes were not written for."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiokafka.consumer.fetcher as aiokafka_fetcher
import faust
import faust.tables.manager as faust_manager
import faust.tables.recovery as faust_recovery
import pytest
from click.testing import CliRunner
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import faust as integration
from streams.app import create_app
from streams.cli import cli
from streams.cli.runner import run_worker
from streams.faust import transport, versions
from streams.faust.acks import AckConsumer
from streams.faust.batch_lane import LaneConsumer
from streams.faust.fetch import FastPathConsumer
from streams.faust.rebalance import PausedAssignmentConsumer
from streams.faust.records import _MemoryRecords
from streams.faust.recovery import _RecoveryAsyncio
from streams.faust.shutdown import BoundedWaitEmptyConsumer
from streams.faust.transactions import GatedCommitConsumer
from streams.runtime.errors import DependencyError
from streams.runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]

CONSUMER_FIXES = (
    LaneConsumer,
    AckConsumer,
    FastPathConsumer,
    PausedAssignmentConsumer,
    GatedCommitConsumer,
    BoundedWaitEmptyConsumer,
)


def _close_consumer_thread_loop(app: Any) -> None:
    """A consumer made and never started leaves its thread's event loop open: close it."""
    if app._consumer is not None:
        app._consumer._thread.thread_loop.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """An app as the worker builds it (its consumer is made in a test: on the running loop)."""
    settings = load_settings(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "INSIGHTS_DATA_DIR": str(tmp_path)}
    )
    app = create_app(settings).app
    yield app
    _close_consumer_thread_loop(app)


async def test_the_app_runs_on_the_integration_classes(app: Any) -> None:
    consumer = app.consumer
    assert type(app.transport) is transport.Transport
    assert type(consumer) is transport.Consumer
    assert type(consumer._thread) is transport.AIOKafkaConsumerThread
    assert type(app.producer) is transport.Producer
    assert type(consumer.transactions) is transport.TransactionManager
    assert type(app.tables) is transport.TableManager
    assert type(app.tables.recovery) is transport.Recovery


async def test_the_classes_log_as_faust_s_do(app: Any) -> None:
    # streams/runtime/logs.py sets levels by logger name ("faust.transport" at WARNING), and mode
    # prefixes each line with the class name: both stay Faust's.
    services = {
        app.consumer: faust_aiokafka.Consumer,
        app.consumer._thread: faust_aiokafka.AIOKafkaConsumerThread,
        app.producer: faust_aiokafka.Producer,
        app.consumer.transactions: faust_consumer.TransactionManager,
        app.tables: faust_manager.TableManager,
        app.tables.recovery: faust_recovery.Recovery,
    }
    for service, faust_class in services.items():
        assert service.logger is faust_class.logger, type(service)
        assert service.shortlabel == faust_class.__name__


def test_only_the_fetch_is_changed_twice_and_the_lane_runs_outside() -> None:
    overridden: dict[str, list[str]] = {}
    for fix in CONSUMER_FIXES:
        for name, value in vars(fix).items():
            if inspect.isfunction(value):
                overridden.setdefault(name, []).append(fix.__name__)
    assert {name: fixes for name, fixes in overridden.items() if len(fixes) > 1} == {
        "_getmany": ["LaneConsumer", "PausedAssignmentConsumer"]
    }
    order = transport.Consumer.__mro__
    assert order.index(LaneConsumer) < order.index(PausedAssignmentConsumer)
    assert all(fix in order for fix in CONSUMER_FIXES)


async def test_an_app_on_a_kafka_url_runs_on_faust_s_own_classes() -> None:
    integration.install()
    plain = faust.App("plain-faust", broker="kafka://127.0.0.1:1", autodiscover=False)
    try:
        assert type(plain.consumer) is faust_aiokafka.Consumer
        assert type(plain.tables.recovery) is faust_recovery.Recovery
    finally:
        _close_consumer_thread_loop(plain)


def test_install_is_idempotent() -> None:
    integration.install()
    poll, records = vars(faust_recovery)["asyncio"], aiokafka_fetcher.MemoryRecords
    integration.install()
    assert vars(faust_recovery)["asyncio"] is poll and isinstance(poll, _RecoveryAsyncio)
    assert aiokafka_fetcher.MemoryRecords is records is _MemoryRecords
    assert TRANSPORTS.by_url(f"{integration.SCHEME}://127.0.0.1:1") is transport.Transport


def _pins() -> dict[str, str]:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", lock, re.MULTILINE))


def test_the_supported_versions_are_the_locked_ones() -> None:
    pins = _pins()
    assert {package: pins.get(package) for package in versions.SUPPORTED} == dict(
        versions.SUPPORTED
    ), "streams/faust/versions.py SUPPORTED must equal requirements.lock's pins"


def test_the_installed_versions_are_supported() -> None:
    assert versions.unsupported_version() is None
    versions.check_versions()


def _fake(**installed: str | None) -> Any:
    def lookup(package: str) -> str | None:
        return installed.get(package.replace("-", "_"), versions.SUPPORTED[package])

    return lookup


def test_another_version_is_named_in_one_line() -> None:
    line = versions.unsupported_version(_fake(faust_streaming="0.16.0"))
    assert line == (
        "faust-streaming 0.16.0 is installed; streams/faust/ supports only 0.15.3 "
        "(requirements.lock)"
    )
    assert versions.unsupported_version(_fake(aiokafka=None)) == (
        "aiokafka is missing; streams/faust/ supports only 0.14.0 (requirements.lock)"
    )
    with pytest.raises(DependencyError, match=r"^mode-streaming 0\.7\.2 is installed; [^\n]*$"):
        versions.check_versions(_fake(mode_streaming="0.7.2"))


def test_install_and_the_worker_refuse_another_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(versions, "installed_version", _fake(aiokafka="0.15.0"))
    with pytest.raises(DependencyError, match=r"^aiokafka 0\.15\.0 is installed; "):
        integration.install()
    settings = load_settings({"INSIGHTS_DATA_DIR": str(tmp_path)})
    with pytest.raises(DependencyError, match=r"^aiokafka 0\.15\.0 is installed; "):
        run_worker(settings)  # before the embedded broker, logging or anything else


def test_the_worker_command_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(versions, "installed_version", _fake(faust_streaming="0.16.0"))
    result = CliRunner().invoke(cli, ["worker"], env={"INSIGHTS_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert result.stderr == (
        "observer-insights: unsupported dependency: faust-streaming 0.16.0 is installed; "
        "streams/faust/ supports only 0.15.3 (requirements.lock)\n"
    )
