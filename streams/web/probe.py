"""Health probe for container HEALTHCHECKs (no curl in the image):
`python -m streams.web.probe [--ready]` exits 0 when the worker answers 200, else 1."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

__all__ = ["main", "probe"]


def probe(port: int, path: str, timeout_s: float = 3.0) -> bool:
    """True when GET http://127.0.0.1:<port><path> answers 200 within the timeout."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Entry point: `--ready` probes /readyz, otherwise /healthz."""
    parser = argparse.ArgumentParser(prog="observer-insights probe", description=__doc__)
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("INSIGHTS_WEB_PORT", "6066")),
        help="web port (default: INSIGHTS_WEB_PORT or 6066)",
    )
    args = parser.parse_args(argv)
    return 0 if probe(args.port, "/readyz" if args.ready else "/healthz") else 1


if __name__ == "__main__":
    sys.exit(main())
