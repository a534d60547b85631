"""The clickstream generator end to end on a real local Spark with Delta: what it writes.

One small run (20k rows over 5 days) is generated once per module and examined by several
tests; the tests about reruns and determinism write their own tables.
"""

from __future__ import annotations

import bisect
import datetime as dt
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakecast.data.clickstream import ClickstreamRun, generate_events
from lakecast.data.draws import bucket, pick
from lakecast.data.events_table import write_events
from lakecast.errors import SchemaError
from lakecast.features.vocab import CATEGORIES, COUNTRIES, DEVICES
from lakecast.lake.delta import partition_columns, table_version, write_replacing
from lakecast.lake.events import EVENT_TYPES
from lakecast.lake.tables import EVENTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parents[2]
RUN = ClickstreamRun(rows=20_000, days=5, seed=7, start_date=dt.date(2026, 3, 4))  # Wed..Sun


def _job() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_events_job", ROOT / "jobs" / "generate_events.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job_args(run: ClickstreamRun, path: str) -> list[str]:
    return [
        "--rows", str(run.rows), "--days", str(run.days), "--seed", str(run.seed),
        "--start-date", run.start_date.isoformat(), "--path", path,
    ]  # fmt: skip


def _sorted_arrow(table: pa.Table) -> pa.Table:
    return table.cast(EVENTS.arrow_schema()).sort_by("event_id")


def _read_rs(path: str) -> pa.Table:
    return _sorted_arrow(DeltaTable(path).to_pyarrow_table())


@pytest.fixture(scope="module")
def events_path(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("generated") / "events")
    write_events(generate_events(spark, RUN.rows, RUN.days, RUN.seed, RUN.start_date), path, RUN)
    return path


@pytest.fixture(scope="module")
def events(events_path: str) -> pd.DataFrame:
    frame = DeltaTable(events_path).to_pandas()
    return frame.sort_values(["session_id", "ts"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def sessions(events: pd.DataFrame) -> pd.DataFrame:
    """One row per session: its device, start hour, user, target price ratio, whether it bought."""
    median = events.groupby("category")["price"].median()
    events = events.assign(price_ratio=events["price"] / events["category"].map(median))
    last_view = events[events["event_type"] == "view"].groupby("session_id").last()
    grouped = events.groupby("session_id")
    frame = pd.DataFrame(
        {
            "events": grouped.size(),
            "bought": grouped["event_type"].agg(lambda kinds: bool((kinds == "purchase").any())),
            "device": grouped["device"].first(),
            "hour": grouped["ts"].min().dt.hour,
            "user_id": grouped["user_id"].first(),
            "target_price_ratio": last_view["price_ratio"],
        }
    )
    user_events = events["user_id"].value_counts()
    frame["heavy_user"] = frame["user_id"].map(user_events >= user_events.quantile(0.9))
    return frame


def test_rows_schema_and_partitioning(spark: SparkSession, events_path: str) -> None:
    table = spark.read.format("delta").load(events_path)
    assert table.count() == RUN.rows
    assert [(f.name, f.dataType) for f in table.schema] == [
        (f.name, f.dataType) for f in EVENTS.spark_schema()
    ]
    assert DeltaTable(events_path).metadata().partition_columns == ["date"]
    assert partition_columns(spark, events_path) == ["date"]
    EVENTS.check(DeltaTable(events_path).to_pyarrow_dataset().schema, "delta-rs read")


def test_delta_rs_reads_the_same_rows_as_spark(spark: SparkSession, events_path: str) -> None:
    through_spark = _sorted_arrow(spark.read.format("delta").load(events_path).toArrow())
    through_rs = _read_rs(events_path)
    assert through_rs.num_rows == RUN.rows
    assert through_rs.equals(through_spark)


def test_same_arguments_give_the_same_rows(
    spark: SparkSession,
    events_path: str,
    table_path: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    again = table_path("events_again")
    assert _job().main(_job_args(RUN, again)) == 0
    assert _read_rs(again).equals(_read_rs(events_path))
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == 0
    assert summary["dates"][0]["date"] == RUN.start_date.isoformat()
    assert summary["dates"][0]["weekday"] == "Wed"
    assert sum(day["rows"] for day in summary["dates"]) == RUN.rows

    other_seed = ClickstreamRun(RUN.rows, RUN.days, RUN.seed + 1, RUN.start_date)
    different = generate_events(
        spark, other_seed.rows, other_seed.days, other_seed.seed, RUN.start_date
    )
    other = _sorted_arrow(different.toArrow())
    assert other.num_rows == RUN.rows
    assert other.column("user_id") != _read_rs(events_path).column("user_id")


def test_rerun_replaces_the_run_dates_and_keeps_the_others(
    spark: SparkSession, table_path: Callable[[str], str]
) -> None:
    path = table_path("events_rerun")
    run = ClickstreamRun(rows=3_000, days=3, seed=1, start_date=dt.date(2026, 2, 1))
    later = ClickstreamRun(rows=1_000, days=2, seed=1, start_date=dt.date(2026, 2, 4))
    job = _job()
    job.main(_job_args(run, path))
    first = _read_rs(path)
    job.main(_job_args(run, path))
    assert table_version(spark, path) == 1
    assert _read_rs(path).equals(first)  # replaced by the same rows, nothing duplicated

    job.main(_job_args(later, path))
    combined = _read_rs(path)
    assert combined.num_rows == run.rows + later.rows
    dates = pd.Series(combined.column("date").to_pylist()).value_counts()
    assert set(dates.index) == {run.start_date + dt.timedelta(days=d) for d in range(5)}
    job.main(_job_args(run, path))  # the first run's dates again: the later ones stay
    assert _read_rs(path).equals(combined)
    assert table_version(spark, path) == 3


def test_values_are_in_their_vocabularies(events: pd.DataFrame) -> None:
    assert set(events["event_type"]) == set(EVENT_TYPES)
    assert set(events["device"]) <= set(DEVICES)
    assert set(events["country"]) <= set(COUNTRIES)
    assert set(events["category"]) == set(CATEGORIES)
    assert events["event_id"].is_unique
    assert (events["price"] > 0).all()
    assert (events["date"] == events["ts"].dt.date).all()
    dates = {RUN.start_date + dt.timedelta(days=d) for d in range(RUN.days)}
    assert set(events["date"]) == dates


def test_sessions_follow_the_funnel(events: pd.DataFrame) -> None:
    """view* [cart [purchase]] in time order; a cart or purchase is of the last viewed product."""
    by_session = events.groupby("session_id")
    position = by_session.cumcount()
    length = by_session["event_id"].transform("size")
    kind = events["event_type"]
    assert (by_session["ts"].diff().dropna() > pd.Timedelta(0)).all()
    assert (by_session["user_id"].nunique() == 1).all() and (
        by_session["date"].nunique() == 1
    ).all()
    assert (kind[position == 0] == "view").all()
    assert (position[kind == "purchase"] == length[kind == "purchase"] - 1).all()
    assert (position[kind == "cart"] >= length[kind == "cart"] - 2).all()
    assert (
        position[kind == "view"]
        < length[kind == "view"]
        - (kind != "view").groupby(events["session_id"]).transform("sum")[kind == "view"]
    ).all()
    last_view = events[kind == "view"].groupby("session_id")["product_id"].last()
    funnel = events[kind != "view"]
    assert (funnel["product_id"] == funnel["session_id"].map(last_view)).all()
    assert (kind == "purchase").sum() > 100


def test_planted_signal_separates_buyers(sessions: pd.DataFrame) -> None:
    """The groups of the documented signal differ strongly in how often a session buys."""
    can_buy = sessions[sessions["events"] >= 2]

    def ratio(mask: pd.Series) -> float:
        return float(can_buy[mask]["bought"].mean() / can_buy[~mask]["bought"].mean())

    assert ratio(can_buy["device"] == "desktop") > 1.4
    assert ratio(can_buy["target_price_ratio"] < 1.0) > 1.5
    assert ratio(can_buy["heavy_user"]) > 2  # the top 10% of users by activity
    evening = can_buy["hour"].between(18, 22)
    night = can_buy["hour"] < 6
    assert can_buy[evening]["bought"].mean() > 2 * can_buy[night]["bought"].mean()


def test_activity_time_and_prices_look_like_a_shop(events: pd.DataFrame) -> None:
    per_user = events["user_id"].value_counts()
    top_tenth = per_user.head(len(per_user) // 10).sum() / len(events)
    assert top_tenth > 0.35  # heavy-tailed users
    per_day = events.groupby("date").size()
    weekend = [day for day in per_day.index if day.weekday() >= 5]
    weekdays = [day for day in per_day.index if day.weekday() < 5]
    assert per_day[weekend].min() > per_day[weekdays].max()
    hours = events["ts"].dt.hour.value_counts()
    assert hours[range(18, 22)].mean() > 3 * hours[range(2, 6)].mean()
    medians = events.groupby("category")["price"].median()
    assert medians["electronics"] > 5 * medians["books"] > 5 * medians["grocery"] / 2
    log_prices = events.groupby("product_id")["price"].nunique()
    assert (log_prices == 1).all()  # one fixed price per product
    sizes = events.groupby("session_id").size()
    assert sizes.min() == 1 and sizes.max() > 10 and 3 < sizes.mean() < 5


def test_writing_with_other_partitioning_is_refused(
    spark: SparkSession, table_path: Callable[[str], str]
) -> None:
    path = table_path("unpartitioned")
    small = generate_events(spark, 100, 1, 0)
    write_replacing(small, path)
    with pytest.raises(SchemaError, match="partitioned by"):
        write_replacing(small, path, partition_by=("date",))


def test_bucket_and_pick_match_their_python_meaning(spark: SparkSession) -> None:
    from pyspark.sql import functions as F

    bounds = [10, 10, 25, 60, 100]
    edges = [0.2, 0.5, 1.0]
    frame = spark.range(0, 100).select(
        "id",
        bucket(F.col("id"), bounds).alias("bucket"),
        pick(F.col("id") / 100.0, ["a", "b", "c"], edges).alias("pick"),
    )
    for row in frame.collect():
        assert row["bucket"] == min(bisect.bisect_right(bounds, row["id"]), len(bounds) - 1)
        assert row["pick"] == "abc"[bisect.bisect_right(edges, row["id"] / 100.0)]
