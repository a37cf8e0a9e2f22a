"""Settings from the environment: the contract's names, one-line errors, *_FILE secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.runtime.errors import ConfigError
from streams.runtime.settings import load_settings
from streams.runtime.windows import WindowSpec


def test_defaults_are_the_contract() -> None:
    s = load_settings({})
    assert s.embedded and s.app_id == "observer-insights" and s.input_topic == "observations"
    assert s.windows == (WindowSpec("tumbling", 60, 60), WindowSpec("hopping", 300, 60))
    assert (s.grace_s, s.idle_timeout_s, s.dedup_ttl_s) == (30.0, 60.0, 600.0)
    assert (s.emit, s.processing_guarantee, s.store) == ("both", "at_least_once", "memory://")
    assert (s.topic_partitions, s.log_level, s.log_format) == (12, "info", "json")


def test_windows_and_durations_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INSIGHTS_WINDOWS", "tumbling:10s,hopping:30s/10s")
    monkeypatch.setenv("INSIGHTS_GRACE", "1500ms")
    monkeypatch.setenv("INSIGHTS_EMIT", "FINAL")
    s = load_settings()
    assert s.windows == (WindowSpec("tumbling", 10, 10), WindowSpec("hopping", 30, 10))
    assert (s.grace_s, s.emit) == (1.5, "final")
    assert (s.aggregates, s.dedup_ttl_s) == ("full", 600.0)
    assert load_settings({"INSIGHTS_AGGREGATES": "Basic"}).aggregates == "basic"
    assert load_settings({"INSIGHTS_DEDUP_TTL": "0s"}).dedup_ttl_s == 0.0
    assert load_settings({}).anomaly_detection is True
    assert load_settings({"INSIGHTS_ANOMALY_DETECTION": "false"}).anomaly_detection is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INSIGHTS_WINDOWS", "sliding:5s"),
        ("INSIGHTS_GRACE", "soon"),
        ("INSIGHTS_TOPIC_PARTITIONS", "0"),
        ("INSIGHTS_EMIT", "sometimes"),
        ("INSIGHTS_AGGREGATES", "minimal"),
        ("INSIGHTS_ANOMALY_DETECTION", "maybe"),
        ("INSIGHTS_DEDUP_TTL", "-1s"),
        ("INSIGHTS_PROCESSING_GUARANTEE", "maybe_once"),
        ("INSIGHTS_STORE", "redis://"),
        ("INSIGHTS_INPUT_TOPIC", "bad topic"),
        ("INSIGHTS_METRICS_PORT", "70000"),
        ("INSIGHTS_PRODUCER_BATCH_SIZE", "100"),
        ("INSIGHTS_PRODUCER_LINGER", "2s"),
        ("INSIGHTS_COMPRESSION_TYPE", "brotli"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value})
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message


def test_persist_interval_only_with_at_least_once_and_not_below_the_flush_interval() -> None:
    assert load_settings({}).persist_interval_s is None  # every flush
    assert load_settings({"INSIGHTS_PERSIST_INTERVAL": "5s"}).persist_interval_s == 5.0
    for env in (
        {"INSIGHTS_PERSIST_INTERVAL": "5s", "INSIGHTS_PROCESSING_GUARANTEE": "exactly_once"},
        {"INSIGHTS_PERSIST_INTERVAL": "500ms"},  # below the 1 s flush interval
    ):
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        message = str(info.value)
        assert "INSIGHTS_PERSIST_INTERVAL" in message and "\n" not in message


def test_secrets_from_files_and_never_in_errors(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    s = load_settings(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD_FILE": str(secret),
        }
    )
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(s)
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        load_settings({"KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="both set"):
        load_settings({"KAFKA_SASL_PASSWORD": "x", "KAFKA_SASL_PASSWORD_FILE": str(secret)})
