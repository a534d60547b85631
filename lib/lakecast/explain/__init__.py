"""Explaining one prediction: the event's way through validation, features and the model.

    from lakecast.explain import explain_event
    explain_event(b'{"event_id": ...}', "purchase@champion")

``lakecast explain --model NAME@ALIAS EVENT.json`` prints the same dictionary as JSON.
"""

from __future__ import annotations

from lakecast.explain.contributions import Contributions, contributions
from lakecast.explain.event import explain_event, read_event_file

__all__ = ["Contributions", "contributions", "explain_event", "read_event_file"]
