"""Record batches whose header names are not UTF-8 are read, not fatal.

Kafka's header name is a string, but brokers do not check it and librdkafka sends whatever
bytes it is given. aiokafka's record reader decodes names strictly: its C reader raised
`UnicodeDecodeError` out of the fetcher, the worker crashed, and every restart crashed on
the same batch. `install_tolerant_header_names` (a patch: aiokafka's fetcher takes its record
reader from the module global `aiokafka.consumer.fetcher.MemoryRecords`, with no hook) makes
the fetcher read through `_MemoryRecords`: a batch is read by aiokafka's C reader as before;
only when a name fails to decode is the rest of that batch read again by its pure-Python
reader, with names decoded with `backslashreplace` (`b"\\xff"` becomes the text `\\xff`), so
the record is processed like any other. Upstream: no upstream issue found in
aio-libs/aiokafka. The change that would remove it: decode header names with an error handler
in `DefaultRecord`. Pinned by tests/unit/test_tolerant_records.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, SupportsIndex

import aiokafka.consumer.fetcher as fetcher
from aiokafka.record import default_records
from aiokafka.record.memory_records import _MemoryRecordsPy

__all__ = ["install_tolerant_header_names"]

_MAGIC_OFFSET: Final = _MemoryRecordsPy.MAGIC_OFFSET


class _TolerantText(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes.decode(self, encoding, "backslashreplace")


class _TolerantBuffer(bytearray):
    """A batch's buffer whose slices decode any bytes (header names are decoded from one)."""

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        item = bytearray.__getitem__(self, index)
        return _TolerantText(item) if isinstance(index, slice) else item


class _TolerantPyBatch(default_records._DefaultRecordBatchPy):  # type: ignore[misc]
    def __iter__(self) -> _TolerantPyBatch:
        super().__iter__()  # decompresses into a new buffer
        self._buffer = _TolerantBuffer(self._buffer)  # type: ignore[has-type]
        return self


class _Batch:
    """aiokafka's (C) batch, read again in Python from the record a name failed in."""

    __slots__ = ("_batch", "_fallback", "_last", "_raw")

    def __init__(self, raw: memoryview) -> None:
        self._raw = raw
        self._batch: Any = default_records.DefaultRecordBatch(raw)
        self._fallback: Iterator[Any] | None = None
        self._last = -1  # offset of the last record handed out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> _Batch:
        iter(self._batch)
        return self

    def __next__(self) -> Any:
        if self._fallback is None:
            try:
                record = next(self._batch)
            except UnicodeDecodeError:
                self._fallback = iter(_TolerantPyBatch(self._raw))
                return next(self)
        else:
            record = next(self._fallback)
            while record.offset <= self._last:  # handed out before the name failed
                record = next(self._fallback)
        self._last = record.offset
        return record


class _MemoryRecords(_MemoryRecordsPy):  # type: ignore[misc]
    """aiokafka's pure-Python slicing of a fetch response into batches (per batch, not per
    record), handing out `_Batch`es."""

    def next_batch(self, *args: Any, **kwargs: Any) -> Any:
        raw = self._next_slice
        if raw is None:
            return None
        if raw[_MAGIC_OFFSET] < 2:
            return super().next_batch(*args, **kwargs)
        self._cache_next()
        return _Batch(raw)


def install_tolerant_header_names() -> None:
    """Make aiokafka's fetcher read batches through `_MemoryRecords` (idempotent)."""
    fetcher.MemoryRecords = _MemoryRecords
