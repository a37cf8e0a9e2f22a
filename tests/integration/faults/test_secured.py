"""A secured broker: Apache Kafka with SASL_SSL and SCRAM-SHA-512 only (certificate and
users made here). Credentials come from `*_FILE`; wrong ones give one clear error and a
non-zero exit, not a retry storm; no password reaches any log line."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.faults.conftest import metric, poll
from tests.support.kafka_server import KafkaServer
from tests.support.worker import TopicNames, WorkerProcess, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecuredKafka:
    server: KafkaServer
    cafile: Path
    user: str
    password: str
    admin_password: str
    store_password: str

    def client_options(self, password: str | None = None) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.server.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "ssl_context": ssl.create_default_context(cafile=str(self.cafile)),
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.user,
            "sasl_plain_password": password or self.password,
        }


def _make_certificate(folder: Path, store_password: str) -> tuple[Path, Path]:
    """A self-signed CA certificate for 127.0.0.1 (PEM, the clients' CA file) and the
    broker's PKCS#12 keystore holding it with its key."""
    key, cert, keystore = folder / "broker.key", folder / "broker.pem", folder / "broker.p12"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [
            "openssl", "pkcs12", "-export", "-in", str(cert), "-inkey", str(key),
            "-out", str(keystore), "-name", "broker", "-passout", f"pass:{store_password}",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    key.unlink()
    return cert, keystore


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    folder = tmp_path_factory.mktemp("kafka-secured")
    admin_password = f"adm-{secrets.token_hex(12)}"
    password = f"ins-{secrets.token_hex(12)}"
    store_password = f"sto-{secrets.token_hex(12)}"
    cert, keystore = _make_certificate(folder, store_password)
    properties = f"""
listeners=SASL_SSL://127.0.0.1:@PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@
advertised.listeners=SASL_SSL://127.0.0.1:@PORT@
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{admin_password}";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
ssl.truststore.type=PEM
ssl.truststore.location={cert}
ssl.client.auth=none
"""  # noqa: E501
    server = KafkaServer(
        folder / "run",
        extra_properties=properties,
        format_args=(
            f"--add-scram {MECHANISM}=[name=admin,password={admin_password}] "
            f"--add-scram {MECHANISM}=[name=insights,password={password}]"
        ),
        ready_probe=False,  # the SSL listener does not answer kafka.sh's plaintext probe
    )
    server.start()
    try:
        yield SecuredKafka(server, cert, "insights", password, admin_password, store_password)
    finally:
        server.destroy()


def _secured_worker(
    kafka: SecuredKafka, names: TopicNames, tmp_path: Path, index: int, password: str
) -> WorkerProcess:
    secrets_dir = tmp_path / f"secrets-{index}"
    secrets_dir.mkdir()
    (secrets_dir / "username").write_text(kafka.user + "\n", encoding="utf-8")
    (secrets_dir / "password").write_text(password + "\n", encoding="utf-8")
    env = worker_env(
        kafka.server.bootstrap_servers,
        names,
        tmp_path / f"data-{index}",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=MECHANISM,
        KAFKA_SASL_USERNAME_FILE=str(secrets_dir / "username"),
        KAFKA_SASL_PASSWORD_FILE=str(secrets_dir / "password"),
        KAFKA_SSL_CAFILE=str(kafka.cafile),
    )
    return WorkerProcess(env, tmp_path / f"worker-{index}.log")


def _observation(n: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"evt-{n}",
            "observer_id": "observer-a",
            "subject_id": f"s-{n % 7}",
            "metric": "temp",
            "value": 20.0 + n,
            "observed_at": 1_795_773_600_000 + n * 1000,
        }
    ).encode()


async def _count(kafka: SecuredKafka, topic: str, want: int, deadline_s: float) -> int:
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    seen = 0
    try:
        end = time.monotonic() + deadline_s
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < end:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while seen < want and time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=200)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return seen


async def test_sasl_ssl_scram_with_credentials_from_files(
    secured_kafka: SecuredKafka, names: TopicNames, tmp_path: Path
) -> None:
    worker = _secured_worker(secured_kafka, names, tmp_path, 0, secured_kafka.password)
    try:
        await asyncio.to_thread(worker.wait_ready, 120.0)
        producer = AIOKafkaProducer(**secured_kafka.client_options())
        await producer.start()
        try:
            for n in range(200):
                await producer.send(names.input, _observation(n), key=f"s-{n % 7}".encode())
            await producer.send_and_wait(names.input, b"{not json", key=b"bad")
        finally:
            await producer.stop()
        assert await _count(secured_kafka, names.deadletter, 1, 60.0) == 1
        await poll(lambda: metric(worker, "insights_events_valid_total") >= 200, 60.0, "valid")
        assert metric(worker, "insights_events_valid_total") == 200
        assert await _count(secured_kafka, names.rolling, 1, 60.0) >= 1  # insights flow out
        assert worker.process.poll() is None
    finally:
        code = await asyncio.to_thread(worker.stop)
    assert code == 0
    _assert_no_secret(secured_kafka, [worker])


async def test_wrong_password_is_one_clear_error_and_a_non_zero_exit(
    secured_kafka: SecuredKafka, names: TopicNames, tmp_path: Path
) -> None:
    wrong = f"wrong-{secrets.token_hex(12)}"
    worker = _secured_worker(secured_kafka, names, tmp_path, 1, wrong)
    began = time.monotonic()
    try:
        code = await asyncio.to_thread(worker.process.wait, 60)
    finally:
        await asyncio.to_thread(worker.stop)
    took = time.monotonic() - began
    assert code != 0
    text = worker.log_path.read_text(encoding="utf-8", errors="replace")
    errors = [line for line in text.splitlines() if "configuration error" in line]
    assert len(errors) == 1, text[-3000:]
    assert "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD" in errors[0], errors[0]
    assert "authentication" in errors[0].lower(), errors[0]
    retries = [line for line in text.splitlines() if "retrying" in line or "Unable connect" in line]
    assert len(retries) <= 2, f"a retry storm: {len(retries)} lines"
    assert took < 30, f"took {took:.1f}s to give up"
    _assert_no_secret(secured_kafka, [worker], extra=[wrong])


def _assert_no_secret(
    kafka: SecuredKafka, workers: list[WorkerProcess], extra: list[str] | None = None
) -> None:
    passwords = [kafka.password, kafka.admin_password, kafka.store_password, *(extra or [])]
    for worker in workers:
        lines = worker.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        assert lines, "no log at all"
        for number, line in enumerate(lines, 1):
            for password in passwords:
                assert password not in line, f"{worker.log_path}:{number} shows a password"
