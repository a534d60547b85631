"""Scheduled batch work: ``lakecast run daily`` (extract -> score -> archive -> report ->
quality -> drift, then the day's summary).

Each date's run holds a lock in the lake (:mod:`lakecast.schedule.lock`), records every step it
finished (:mod:`lakecast.schedule.ledger`), and skips what is already recorded, so a scheduler
may run, re-run and backfill dates in any order.
"""
