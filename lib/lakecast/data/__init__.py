"""The synthetic clickstream generator (Spark-parallel, deterministic by seed).

See :mod:`lakecast.data.clickstream` for how rows are made and the planted purchase signal.
"""

from lakecast.data.calendar import DEFAULT_START_DATE
from lakecast.data.clickstream import ClickstreamRun, generate_events

__all__ = ["DEFAULT_START_DATE", "ClickstreamRun", "generate_events"]
