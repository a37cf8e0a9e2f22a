"""Summarise py-spy folded stacks (`python -m bench --py-spy DIR` writes them):
`python -m bench.folded DIR/*.txt [--top 25] [--filter agents/]`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

__all__ = ["main"]


def _frame(text: str) -> str:
    """`fn (path/to/file.py:12)` -> `fn (file.py)`: lines merged."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:]) if path else ""
    return f"{name} ({short})" if short else name


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.folded", description=__doc__)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--filter", default="", help="inclusive table: only frames whose text has this")
    args = p.parse_args(argv)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in args.files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";")]
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")
    print(f"\nself time, top {args.top}:")
    for frame, n in own.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {frame}")
    print(
        f"\ninclusive time, top {args.top}"
        + (f" (frames with {args.filter!r})" if args.filter else "")
        + ":"
    )
    shown = [(f, n) for f, n in inclusive.most_common() if args.filter in f][: args.top]
    for frame, n in shown:
        print(f"{100 * n / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
