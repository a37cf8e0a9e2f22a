"""The library versions the Faust integration was written for, and the start-up check that
refuses any other.

The fixes in this package subclass and patch private methods of faust-streaming, mode-streaming
and aiokafka. On another version such a method can be renamed, reordered or already fixed, and
a fix would then stop applying, or apply to code it was not written for, without a word. So
the worker runs only on the versions requirements.lock pins (`SUPPORTED` repeats them: the
lock is not part of the installed package; tests/unit/test_faust_integration.py keeps the two
equal). Upgrading means re-reading every fix against the new code (docs/faust-integration.md
lists them with their pinning tests), then changing both.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from streams.runtime.errors import DependencyError

__all__ = ["SUPPORTED", "check_versions", "installed_version", "unsupported_version"]

SUPPORTED: Final[Mapping[str, str]] = MappingProxyType(
    {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}
)
"""Distribution name -> the one version the integration supports (as requirements.lock pins)."""


def installed_version(package: str) -> str | None:
    """The installed version of distribution `package` (None: not installed)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def unsupported_version(installed: Callable[[str], str | None] | None = None) -> str | None:
    """One line naming the first package whose installed version (`installed`, default: the
    environment's) is not the supported one, with both versions; None when all are."""
    lookup = installed or installed_version
    for package, supported in SUPPORTED.items():
        version = lookup(package)
        if version != supported:
            found = f"{package} {version} is installed" if version else f"{package} is missing"
            return f"{found}; streams/faust/ supports only {supported} (requirements.lock)"
    return None


def check_versions(installed: Callable[[str], str | None] | None = None) -> None:
    """Raise DependencyError (one line) unless every package is at its supported version."""
    problem = unsupported_version(installed)
    if problem is not None:
        raise DependencyError(problem)
