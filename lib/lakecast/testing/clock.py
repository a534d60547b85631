"""Waiting in tests: poll a condition until it holds, or fail naming what was awaited.

The one definition is :func:`lakecast.polling.wait_for`, which the demo uses too.
"""

from __future__ import annotations

from lakecast.polling import wait_for

__all__ = ["wait_for"]
