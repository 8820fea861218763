"""trailscan: why workloads on Amazon EKS get refused by AWS, from CloudTrail.

``trailscan.open()`` opens the store for investigation in Python or Jupyter (see
:mod:`trailscan.api`).  Importing the package prints nothing, configures no logging and
loads nothing heavy: the API module is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trailscan.version import __version__

# Not in __all__: `from trailscan import *` must not shadow the builtin open().
__all__ = ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.api import Session as Session
    from trailscan.api import open as open

_LAZY = frozenset({"Session", "open"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from trailscan import api

        return getattr(api, name)
    raise AttributeError(f"module 'trailscan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
