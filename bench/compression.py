"""Output compression: bytes and CPU of every Kafka codec on the worker's own output batches.

Runs our worker (default windows, emit both; `INSIGHTS_COMPRESSION_TYPE=none`) over
observations from the project's generator (the demo's mix: invalid, duplicate, late and
spike events among the valid ones) on the embedded broker, then reads back every record batch
it wrote, byte for byte as its producer sent them (raw Fetch requests): insights, dead
letters, the keyed topic, the changelogs. For each codec, the records section of every batch
is compressed and decompressed with aiokafka's own functions (`aiokafka.codec`, which its
producer and consumer call, at their levels), every decompressed batch is checked equal to the
original, and the table gives wire bytes per record and CPU per record. A batch that does not
shrink is sent uncompressed, as aiokafka does. `python -m bench.compression --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka.client import AIOKafkaClient
from aiokafka.codec import (
    gzip_decode,
    gzip_encode,
    lz4_decode,
    lz4_encode,
    snappy_decode,
    snappy_encode,
    zstd_decode,
    zstd_encode,
)
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

from bench import data
from bench.measure import scrape
from bench.procs import Proc
from bench.roster import CANDIDATES, ROOT, RunSpec
from streams.cli.embedded import EmbeddedBroker
from streams.cli.generator import GeneratorConfig, ObservationGenerator

__all__ = ["Batch", "capture", "main", "measure", "read_batches"]

RESULTS = ROOT / "bench" / "results" / "compression.md"
KEEP_FROM = "## Choice"  # a results file's hand-written part, kept when it is rewritten
PARTITIONS = 8
HEADER = 61  # bytes of a v2 record batch header; the records section follows, compressed
_CONTROL = 0x20  # attributes bit of a transaction marker batch
_CODEC_MASK = 0x07
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (gzip_encode, gzip_decode),
    "snappy": (snappy_encode, snappy_decode),
    "lz4": (lz4_encode, lz4_decode),
    "zstd": (zstd_encode, zstd_decode),
}


@dataclass(frozen=True)
class Batch:
    """One record batch as the producer sent it (uncompressed): topic kind, records, bytes."""

    kind: str
    records: int
    raw: bytes

    @property
    def section(self) -> bytes:
        """What a codec compresses: everything after the header."""
        return self.raw[HEADER:]


# -- capture ------------------------------------------------------------------------------


def _events(count: int, start_ms: int) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, timestamp ms): the demo's mix, 1000 subjects, 4 metrics, 5 groups."""
    config = GeneratorConfig(
        start_ms=start_ms,
        seed=23,
        subjects=data.SUBJECTS,
        metrics=data.METRICS,
        interval_ms=data.INTERVAL_MS,
        invalid_share=0.01,
        duplicate_share=0.01,
        late_share=0.005,
        spike_share=0.003,
    )
    at = start_ms
    for event in ObservationGenerator(config, count=count):
        at = event.observed_ms if event.observed_ms is not None else at
        yield event.key, event.value, at


def _kind(topic: str, run_id: str) -> str:
    name = topic.removeprefix(f"{run_id}.").removeprefix(f"{run_id}-")
    if name.endswith("-changelog"):
        return "changelog"
    if name == "observations-by-subject":
        return "keyed"
    return name


def _split(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(base offset, last offset, batch) of each whole batch in a fetched message set."""
    pos = 0
    while pos + 12 <= len(raw):
        base, length = struct.unpack_from(">qi", raw, pos)
        end = pos + 12 + length
        if end > len(raw):
            return  # a partial batch at the end of the response
        (last_delta,) = struct.unpack_from(">i", raw, pos + 23)
        yield base, base + last_delta, raw[pos:end]
        pos = end


async def read_batches(bootstrap: str, topic: str, deadline_s: float = 120.0) -> list[bytes]:
    """Every record batch of `topic` as stored, from the beginning to the high watermark."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    out: list[bytes] = []
    end = time.monotonic() + deadline_s
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        for partition in sorted(client.cluster.partitions_for_topic(topic) or ()):
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            offset, high = 0, None
            while high is None or offset < high:
                if time.monotonic() > end:
                    msg = f"{topic}[{partition}]: not read to its end within {deadline_s}s"
                    raise TimeoutError(msg)
                wanted = [(topic, [(partition, offset, 16 << 20)])]
                response = await client.send(node, FetchRequest(500, 1, 64 << 20, 0, wanted))
                answered = False
                for _, partitions in response.topics:
                    for _, error, watermark, *rest in partitions:
                        assert error == 0, f"{topic}[{partition}]: fetch error {error}"
                        answered, high = True, watermark
                        for _base, last, batch in _split(rest[-1]):
                            if last >= offset:
                                out.append(batch)
                            offset = max(offset, last + 1)
                if not answered:  # the embedded broker answers nothing now and then
                    await asyncio.sleep(0.1)
    finally:
        await client.close()
    return out


@dataclass
class Capture:
    """What the worker wrote for `events` observations, and its CPU for them."""

    events: int
    batches: list[Batch]
    worker_cpu_s: float
    worker_s: float


def _wait(proc: Proc, what: str, check: Callable[[], bool], bound_s: float) -> None:
    end = time.monotonic() + bound_s
    while not check():
        if not proc.alive():
            tail = proc.log_path.read_text(errors="replace")[-1500:]
            sys.exit(f"bench.compression: the worker exited early; log {proc.log_path}:\n{tail}")
        if time.monotonic() > end:
            sys.exit(f"bench.compression: {what} not within {bound_s:.0f}s (log {proc.log_path})")
        time.sleep(0.1)


def _metric(proc: Proc, name: str) -> float:
    for line in scrape(proc.ports["metrics"])[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@dataclass(frozen=True)
class Run:
    """One worker run over the preloaded observations: its topics, CPU and time for them."""

    run_id: str
    input_topic: str
    cpu_s: float  # the worker process, first observation in -> the last one counted
    seconds: float


def run_worker(bootstrap: str, events: int, workdir: Path, codec: str) -> Run:
    """Preload `events` observations; run one worker (`INSIGHTS_COMPRESSION_TYPE=codec`)
    over them until it has counted the last and gone quiet; stop it."""
    run_id = f"bc{time.time_ns() // 1_000_000 % 10**10}"
    input_topic = f"{run_id}.in"
    start_ms = int(time.time() * 1000) - 3600_000  # an hour ago: every window closes by time
    asyncio.run(data.create_topics(bootstrap, [input_topic], PARTITIONS))
    asyncio.run(data.preload(bootstrap, input_topic, _events(events, start_ms)))
    candidate = replace(
        CANDIDATES["insights-default"], settings=(("INSIGHTS_COMPRESSION_TYPE", codec),)
    )
    spec = RunSpec(
        candidate, bootstrap, input_topic, run_id, workdir / run_id, partitions=PARTITIONS
    )
    (proc,) = spec.processes()
    proc.start()
    try:
        _wait(
            proc,
            "all input read",
            lambda: _metric(proc, "insights_events_received_total") >= events,
            600,
        )
        # Then quiet: nothing counted for three flush intervals (the last changes are out).
        seen: list[tuple[int, float]] = []

        def settled() -> bool:
            report = proc.progress() or {}
            seen.append((int(report.get("count", 0)), time.monotonic()))
            first = next(t for c, t in seen if c == seen[-1][0])
            return seen[-1][1] - first >= 3.0

        _wait(proc, "a settled worker", settled, 120)
        report = proc.progress() or {}
        cpu = float(report["cpu"]) - float(report["cpu_first"])
        seconds = float(report["last"]) - float(report["first"])
    finally:
        code = proc.stop()
    if code != 0:
        sys.exit(f"bench.compression: the worker exited {code} at its stop (log {proc.log_path})")
    return Run(run_id, input_topic, cpu, seconds)


def _drop(bootstrap: str, run: Run) -> list[str]:
    topics = [t for t in asyncio.run(data.list_topics(bootstrap)) if t.startswith(run.run_id)]
    asyncio.run(data.delete_topics(bootstrap, topics))
    return topics


def capture(bootstrap: str, events: int, workdir: Path) -> Capture:
    """One run without compression, and every batch it wrote, as its producer sent it."""
    run = run_worker(bootstrap, events, workdir, "none")
    topics = [t for t in asyncio.run(data.list_topics(bootstrap)) if t.startswith(run.run_id)]
    batches: list[Batch] = []
    for topic in sorted(t for t in topics if t != run.input_topic):
        for raw in asyncio.run(read_batches(bootstrap, topic)):
            (attributes,) = struct.unpack_from(">h", raw, 21)
            if attributes & _CONTROL:
                continue
            assert attributes & _CODEC_MASK == 0, f"{topic}: a compressed batch ({attributes})"
            (records,) = struct.unpack_from(">i", raw, 57)
            batches.append(Batch(_kind(topic, run.run_id), records, raw))
    _drop(bootstrap, run)
    return Capture(events, batches, run.cpu_s, run.seconds)


def end_to_end(bootstrap: str, events: int, workdir: Path, rounds: int) -> dict[str, list[Run]]:
    """The worker itself with each setting, `rounds` times (settings interleaved)."""
    runs: dict[str, list[Run]] = defaultdict(list)
    for i in range(rounds):
        for codec in ("none", *CODECS):
            print(f"  end to end, round {i + 1}/{rounds}: {codec}", flush=True)
            run = run_worker(bootstrap, events, workdir, codec)
            _drop(bootstrap, run)
            runs[codec].append(run)
    return dict(runs)


# -- measure ------------------------------------------------------------------------------


@dataclass
class Figures:
    """One codec over every batch: wire bytes (per kind), CPU seconds per round."""

    codec: str
    wire: Counter[str]
    compress_s: list[float]
    decompress_s: list[float]


def _cpu(work: Callable[[bytes], bytes], items: list[bytes]) -> float:
    """CPU seconds of `work` over every item (no collection in between)."""
    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        for item in items:
            work(item)
        return time.process_time() - started
    finally:
        gc.enable()


def measure(batches: list[Batch], rounds: int) -> list[Figures]:
    """Every codec on every batch, `rounds` times (codecs interleaved in each round); each
    decompressed batch is checked equal to its input first."""
    sections = [b.section for b in batches]
    none = Counter[str]()
    for b in batches:
        none[b.kind] += len(b.raw)
    results = {"none": Figures("none", none, [0.0] * rounds, [0.0] * rounds)}
    compressed: dict[str, list[bytes]] = {}
    for codec, (encode, decode) in CODECS.items():
        packed = compressed[codec] = [encode(s) for s in sections]
        wire = Counter[str]()
        for b, c in zip(batches, packed, strict=True):
            assert decode(c) == b.section, f"{codec}: a batch did not decompress to its input"
            # Not smaller: aiokafka sends the batch uncompressed.
            wire[b.kind] += HEADER + min(len(c), len(b.section))
        results[codec] = Figures(codec, wire, [], [])
    for _ in range(rounds):
        for codec, (encode, decode) in CODECS.items():
            results[codec].compress_s.append(_cpu(encode, sections))
            results[codec].decompress_s.append(_cpu(decode, compressed[codec]))
    return list(results.values())


# -- report -------------------------------------------------------------------------------


def report(
    cap: Capture,
    results: list[Figures],
    rounds: int,
    broker: str,
    e2e: dict[str, list[Run]] | None = None,
) -> str:
    """The figures as Markdown (what is printed and written)."""
    records = Counter[str]()
    raw_bytes = Counter[str]()
    per_batch: dict[str, list[int]] = defaultdict(list)
    for b in cap.batches:
        records[b.kind] += b.records
        raw_bytes[b.kind] += len(b.raw)
        per_batch[b.kind].append(b.records)
    total = sum(records.values())
    worker_us = cap.worker_cpu_s / cap.events * 1e6
    out_per_event = total / cap.events
    lines = [
        f"Worker output of {cap.events:,} generated observations (1000 subjects, 4 metrics, "
        f"5 groups; 1% invalid, 1% duplicate, 0.5% late, 0.3% spikes), default windows and "
        f"emit, {PARTITIONS} partitions, {broker}: {len(cap.batches):,} batches, "
        f"{total:,} records ({out_per_event:.2f} per observation). The worker took "
        f"{cap.worker_cpu_s:.1f} CPU s for them ({worker_us:.1f} us per observation). "
        f"CPU: median of {rounds} rounds, one core, {os.cpu_count()} CPUs; aiokafka's levels "
        "(gzip 9, lz4 9, zstd 3).",
        "",
        "| topic | batches | records | records per batch (median, max) | bytes per record |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in sorted(records, key=lambda k: -records[k]):
        sizes = per_batch[kind]
        lines.append(
            f"| {kind} | {len(sizes):,} | {records[kind]:,} | "
            f"{statistics.median(sizes):,.0f}, {max(sizes):,} | "
            f"{raw_bytes[kind] / records[kind]:,.1f} |"
        )
    lines += [
        "",
        "| codec | wire bytes per record | of `none` | compress us per record | "
        "decompress us per record | compress, per observation, of the worker's CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    none_bytes = sum(results[0].wire.values())
    for f in results:
        wire = sum(f.wire.values())
        pack = statistics.median(f.compress_s) / total * 1e6
        unpack = statistics.median(f.decompress_s) / total * 1e6
        share = pack * out_per_event / worker_us
        lines.append(
            f"| {f.codec} | {wire / total:,.1f} | {wire / none_bytes:.1%} | {pack:.2f} | "
            f"{unpack:.2f} | {share:.1%} |"
        )
    kinds = sorted(records, key=lambda k: -records[k])
    lines += [
        "",
        "Wire bytes per record by topic:",
        "",
        "| codec | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for f in results:
        cells = " | ".join(f"{f.wire[k] / records[k]:,.1f}" for k in kinds)
        lines.append(f"| {f.codec} | {cells} |")
    lines += ["", "Every decompressed batch equals its input (checked for every codec)."]
    if e2e:
        n = len(next(iter(e2e.values())))
        lines += [
            "",
            f"End to end: the worker with each `INSIGHTS_COMPRESSION_TYPE` over the same "
            f"{cap.events:,} observations, {n} rounds (settings interleaved; the broker shares "
            "the machine):",
            "",
            "| setting | worker CPU us per observation (median, min-max) | observations per "
            "second (median) |",
            "|---|---:|---:|",
        ]
        for codec, runs in e2e.items():
            us = [r.cpu_s / cap.events * 1e6 for r in runs]
            rate = statistics.median(cap.events / r.seconds for r in runs)
            lines.append(
                f"| {codec} | {statistics.median(us):.1f} ({min(us):.1f}-{max(us):.1f}) | "
                f"{rate:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.compression", description=__doc__)
    p.add_argument("--events", type=int, default=200_000, help="observations (200,000)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per codec (5)")
    p.add_argument(
        "--end-to-end",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also run the worker with each setting this many times (0: skip)",
    )
    p.add_argument(
        "--write",
        type=Path,
        nargs="?",
        const=RESULTS,
        help=f"also write the figures there (default {RESULTS.relative_to(ROOT)}); "
        f"a '{KEEP_FROM}' section already in it is kept",
    )
    return p.parse_args(argv)


def _write(path: Path, text: str, command: str) -> None:
    kept = ""
    with contextlib.suppress(OSError):
        old = path.read_text()
        if KEEP_FROM in old:
            kept = "\n" + old[old.index(KEEP_FROM) :]
    stamp = time.strftime("%Y-%m-%d")
    head = f"# Output compression\n\n`{command}` ({stamp}):\n\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + text + kept)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    workdir = Path(tempfile.mkdtemp(prefix="oci-bench-compression-"))
    broker_name = f"Kafka at {bootstrap}" if bootstrap else "embedded broker (Tansu)"
    e2e = None
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        if not bootstrap:
            broker = stack.enter_context(EmbeddedBroker(log_path=workdir / "broker.log"))
            bootstrap = broker.bootstrap_servers
        print(f"capturing the worker's output of {args.events:,} observations...", flush=True)
        cap = capture(bootstrap, args.events, workdir)
        if args.end_to_end:
            e2e = end_to_end(bootstrap, args.events, workdir, args.end_to_end)
    print(f"measuring {len(cap.batches):,} batches x {len(CODECS)} codecs...", flush=True)
    text = report(cap, measure(cap.batches, args.rounds), args.rounds, broker_name, e2e)
    print(text)
    if args.write:
        command = f"python -m bench.compression --events {args.events} --rounds {args.rounds}"
        if args.end_to_end:
            command += f" --end-to-end {args.end_to_end}"
        _write(args.write, text, command)
        print(f"written: {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
