"""The Faust integration: every change this product makes to faust-streaming, mode-streaming
and aiokafka behaviour, one module per concern. docs/faust-integration.md lists each fix with
the Faust or aiokafka method it changes, why, its upstream status and its pinning test.

- `transport`: the classes an app runs on, Faust's own subclassed with the fixes of
  `acks`, `batch_lane`, `fetch`, `highwaters`, `rebalance`, `recovery`, `shutdown` and
  `transactions`, and registered through Faust's extension points.
- `recovery` and `records`: the two patches no extension point reaches.
- `commit_gate`, `sends`, `table_writes`, `consumer_state`: what the agents call instead of
  Faust's API (commit boundaries, sends in a transaction and in batches, table writes outside
  stream iteration, views of private consumer state).
- `versions`: the library versions all of it was written for.

`install()` is the one entry point; an app then runs on the fixes when built with
`broker=f"{SCHEME}://host:port"` and `TableManager=TableManager` (`streams.app.faust_options`).
"""

from __future__ import annotations

from streams.faust.records import install_tolerant_header_names
from streams.faust.recovery import install_recovery_poll
from streams.faust.transport import SCHEME, TableManager, register
from streams.faust.versions import check_versions

__all__ = ["SCHEME", "TableManager", "install"]


def install() -> None:
    """Prepare the process for apps on the integration (idempotent; before building one).

    Raises DependencyError (one line) when faust-streaming, mode-streaming or aiokafka is not
    the version the fixes were written for, before anything is changed. Then registers
    `SCHEME` and applies the two module patches (`recovery`, `records`); these are
    independent of each other, and the subclasses take effect only in apps built afterwards.
    """
    check_versions()
    register()
    install_recovery_poll()
    install_tolerant_header_names()
