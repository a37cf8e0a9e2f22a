"""A fetched batch with a header name that is not UTF-8: every record is read (the ones
before and after it too), the name as escaped text; aiokafka's own reader raises."""

from __future__ import annotations

import aiokafka.consumer.fetcher as fetcher
import pytest
from aiokafka.record.default_records import (
    _DefaultRecordBatchBuilderPy as DefaultRecordBatchBuilder,
)
from aiokafka.record.memory_records import MemoryRecords

from streams.faust.records import install_tolerant_header_names


class _RawName(str):
    """A header name the builder writes as raw bytes (as librdkafka can)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


def _batches(compression: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i in range(5):
        headers = [(_RawName("x"), b"bad")] if i == 2 else [("traceparent", b"tp")]
        builder.append(i, timestamp=1000 + i, key=b"k", value=f"v{i}".encode(), headers=headers)
    return bytes(builder.build())


@pytest.mark.parametrize("compression", [0, 1, 4])  # none, gzip, zstd
def test_a_header_name_that_is_not_utf8_is_read_as_escaped_text(compression: int) -> None:
    raw = _batches(compression)
    with pytest.raises(UnicodeDecodeError):  # aiokafka's reader, as it is
        list(MemoryRecords(raw).next_batch())
    install_tolerant_header_names()
    records = fetcher.MemoryRecords(raw)
    batch = records.next_batch()
    assert batch.validate_crc()
    got = [(r.offset, r.value, list(r.headers)) for r in batch]
    assert got == [
        (i, f"v{i}".encode(), [("\\xff\\xfe", b"bad")] if i == 2 else [("traceparent", b"tp")])
        for i in range(5)
    ]
    assert not records.has_next()
