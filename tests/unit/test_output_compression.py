"""INSIGHTS_COMPRESSION_TYPE: parsed like Kafka's `compression.type`, and the codec of
every producer Faust builds for the worker (transactional ones too) and of every batch the
batch lane makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch

from streams.app import create_app, faust_options
from streams.runtime.errors import ConfigError
from streams.runtime.settings import load_settings

# aiokafka's codec ids in a record batch's attributes
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BROKER = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


def test_the_default_and_every_kafka_codec_any_case() -> None:
    assert load_settings({}).compression_type == "zstd"
    for codec in CODEC_IDS:
        for spelt in (codec, codec.upper(), codec.capitalize()):
            settings = load_settings({"INSIGHTS_COMPRESSION_TYPE": spelt})
            assert settings.compression_type == codec
    none = load_settings({**BROKER, "INSIGHTS_COMPRESSION_TYPE": "none"})
    assert faust_options(none)["producer_compression_type"] is None  # aiokafka's `none`
    lz4 = load_settings({**BROKER, "INSIGHTS_COMPRESSION_TYPE": "LZ4"})
    assert faust_options(lz4)["producer_compression_type"] == "lz4"


@pytest.mark.parametrize("value", ["brotli", "lz4hc", "producer", "zstd:3", "0"])
def test_another_value_stops_the_start_with_one_line_naming_it(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"INSIGHTS_COMPRESSION_TYPE": value})
    message = str(info.value)
    assert message.startswith("INSIGHTS_COMPRESSION_TYPE=") and "\n" not in message
    assert "'zstd'" in message  # says what is accepted


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_every_producer_of_the_app_and_its_batches_use_the_codec(
    tmp_path: Path, codec: str, guarantee: str
) -> None:
    settings = load_settings(
        {
            **BROKER,
            "INSIGHTS_DATA_DIR": str(tmp_path),
            "INSIGHTS_COMPRESSION_TYPE": codec,
            "INSIGHTS_PROCESSING_GUARANTEE": guarantee,
        }
    )
    app: Any = create_app(settings).app
    app.in_worker = True  # as in `observer-insights worker`: exactly_once is transactional
    assert app.conf.producer_compression_type == codec
    assert app.in_transaction is (guarantee == "exactly_once")
    # The default producer, and one per transactional id as `begin_transaction` builds it.
    producers = [app.producer._new_producer()]
    if guarantee == "exactly_once":
        producers.append(app.producer._new_producer(transactional_id=f"{settings.app_id}-0-0"))
    try:
        for producer in producers:
            assert producer._compression_type == codec
            # What the batch lane (`create_batch`/`send_batch`) sends: compressed batches.
            batch = producer.create_batch()
            for i in range(50):
                batch.append(
                    key=b"s-17", value=b'{"count": %d, "metric": "temp"}' % i, timestamp=None
                )
            batch.close()
            built = DefaultRecordBatch(bytes(batch._build()))
            assert built.compression_type == CODEC_IDS[codec]
            assert [r.value for r in built][-1] == b'{"count": 49, "metric": "temp"}'
        if guarantee == "exactly_once":
            assert producers[-1]._txn_manager.transactional_id == f"{settings.app_id}-0-0"
    finally:
        for producer in producers:
            await producer.stop()
