"""The synthetic clickstream: ``events`` rows generated in parallel by Spark, deterministic by seed.

How a row is made
    Row ids ``0 .. rows-1`` are cut into blocks of 32; hashed bits of a block mark where its
    sessions start (break probability 0.25, so sessions are geometric, mean ~4 events, and never
    cross a block). Spark generates one row per block (``spark.range``), explodes it into its
    sessions, draws everything session-level once per session, then explodes sessions into
    events. Every value is a hash of the seed and the row's block, session or id
    (:mod:`lakecast.data.draws`), so the same arguments give byte-for-byte the same rows whatever
    the partitioning, with no Python on the hot path. Blocks map to days in id order with weekly
    seasonality (Saturday ~1.3x a Monday); a session's start hour (UTC) follows a daily profile
    with a lunchtime bump and an evening peak; its events are 15-120 s apart; sessions never
    cross midnight UTC, so ``date`` is always ``to_date(ts)``.

Who and what
    Users: ``max(50, rows // 40)`` of them, Zipf-Mandelbrot over rank (density ``1 / (x +
    0.005)``): the busiest user is ~100x the median one, the top 1% hold ~20% of the events and
    the top 10% ~55%. Each user has a primary device (80% of their sessions), a country and a
    favourite category (50% of their sessions), all with skewed shares (mobile 56%, US 36% ...,
    see :mod:`lakecast.data.world`). Products: 2,000 per category, popularity
    ``floor(2000 * u**2)``, each with one fixed log-normal price around its category's median
    (grocery ~9, books ~15 ... electronics ~180). Users and products depend only on the seed,
    so runs over other dates (daily increments) share the same population.

The funnel
    Each session targets one product of its category. Its last view is of the target; the
    session may then add it to the cart and buy it: ``view+ [cart [purchase]]`` (a two-event
    session that buys is ``view, purchase``; one-event sessions only view). So every purchase's
    session has a view of the same product, and a purchase is always the session's last event.

The planted signal (what a purchase-propensity model can learn)
    ``P(cart) = sigmoid(-1.8 + z + device + country + hour + price)`` and
    ``P(purchase | cart) = sigmoid(-0.3 + z + 1.5 * device + hour / 2 + price)``, with

    - ``z``: the user's latent propensity, ``0.7 * N(0, 1) + 0.6 * (activity - 2)`` where
      ``activity = -ln((x + 0.005) / 0.505)`` at the user's rank fraction ``x`` (0 for the
      median user, ~4.6 for the busiest): heavy users cart and buy more, so a user's past
      events, carts and purchases predict the next purchase;
    - ``device``: desktop +0.7, tablet 0, mobile -0.5;
    - ``country``: US +0.3, GB +0.2, CA +0.2, DE +0.1, JP +0.1, FR 0, BR -0.4, IN -0.7;
    - ``hour`` (UTC, the session's start): 18-22 h +0.5, 0-5 h -0.6, otherwise 0;
    - ``price``: ``-0.9 * ln(price / category median)`` of the target product: cheaper than
      the category's usual price sells better.

    The label a model learns (``lakecast.features.spec.LABEL_COLUMN``: a purchase later in the
    same session) follows from these. Roughly 10-15% of sessions and 3-4% of events are
    purchases; at 1M rows a desktop session buys ~2.6x as often as the others, a session of a
    top-10% user ~4x, an evening session ~2x a night one, a cheaper-than-usual target ~2x.

Re-running with the same arguments replaces the run's dates (Delta ``replaceWhere`` on
``date``), never duplicates; other dates of the table are left alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakecast.data import world
from lakecast.data.calendar import DEFAULT_START_DATE, MAX_DAYS, day_block_bounds, run_dates
from lakecast.data.draws import bucket, hex_id, lookup, normal, pick, uniform
from lakecast.errors import ConfigError
from lakecast.features.vocab import CATEGORIES
from lakecast.lake.tables import EVENTS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ROWS_PER_PARTITION = 1_000_000
MAX_ROWS = 10**12
_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class ClickstreamRun:
    """The arguments of one generator run; the same run always yields the same rows."""

    rows: int
    days: int
    seed: int = 0
    start_date: dt.date = DEFAULT_START_DATE
    shift: world.ConceptShift | None = None  # a planted concept shift (demo of the quality loop)

    def __post_init__(self) -> None:
        if not 1 <= self.rows <= MAX_ROWS:
            msg = f"generate_events: rows must be in [1, {MAX_ROWS}], got {self.rows}"
            raise ConfigError(msg)
        if not 1 <= self.days <= MAX_DAYS:
            msg = f"generate_events: days must be in [1, {MAX_DAYS}], got {self.days}"
            raise ConfigError(msg)
        if self.seed < 0:
            msg = f"generate_events: seed must be >= 0, got {self.seed}"
            raise ConfigError(msg)
        if self.shift is not None and self.shift.from_day >= self.days:
            msg = (
                f"generate_events: the concept shift starts on day {self.shift.from_day}, "
                f"past the run's {self.days} days"
            )
            raise ConfigError(msg)

    @property
    def end_date(self) -> dt.date:
        """The last date of the run (inclusive)."""
        return run_dates(self.start_date, self.days)[-1]

    @property
    def world_seed(self) -> int:
        """Seeds users and products: shared by every run with this seed."""
        return _seed_of(f"world:{self.seed}")

    @property
    def stream_seed(self) -> int:
        """Seeds sessions and events: different for other dates, days or rows."""
        return _seed_of(f"stream:{self.seed}:{self.start_date}:{self.days}:{self.rows}")

    @property
    def run_tag(self) -> str:
        """A prefix of event and session ids that keeps ids of different runs apart."""
        return f"{self.stream_seed:016x}"[:10]


def _seed_of(text: str) -> int:
    # A stable 63-bit seed (Python's hash() is salted per process).
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def partitions_for(rows: int, parallelism: int) -> int:
    """Enough partitions of ~1M rows, a multiple of the cores so that no wave runs half-empty."""
    cores = max(1, parallelism)
    wanted = max(1, math.ceil(rows / ROWS_PER_PARTITION))
    return math.ceil(wanted / cores) * cores


def generate_events(
    spark: SparkSession,
    rows: int,
    days: int,
    seed: int = 0,
    start_date: dt.date = DEFAULT_START_DATE,
    shift: world.ConceptShift | None = None,
) -> DataFrame:
    """The run's events as a DataFrame with the ``events`` schema; nothing is computed yet.

    ``shift`` plants a concept shift from one of the run's days on (see
    :class:`lakecast.data.world.ConceptShift`); the ids and every draw stay the same.

    Raises:
        ConfigError: rows, days or seed are out of range, or the shift starts past the run.
    """
    run = ClickstreamRun(rows, days, seed, start_date, shift)
    frame = _with_events(_explode_events(_with_sessions(_sessions(spark, run), run)), run)
    return frame.select(
        *(frame[field.name].cast(field.dataType) for field in EVENTS.spark_schema())
    )


def _sessions(spark: SparkSession, run: ClickstreamRun) -> DataFrame:
    """One row per session: its block, day, key (id of its first event) and length.

    Work per block, then per session, then per event: the session-level draws run once per
    session rather than once per event.
    """
    from pyspark.sql import functions as F

    stream = F.lit(run.stream_seed)
    size = world.SESSION_BLOCK
    blocks = math.ceil(run.rows / size)
    partitions = partitions_for(run.rows, spark.sparkContext.defaultParallelism)
    block = F.col("id")
    # Bit j of the mask (j >= 1) starts a session at position j: two ANDed hashes give p=0.25.
    mask = (
        F.xxhash64(F.lit("breaks.a"), stream, block)
        .bitwiseAND(F.xxhash64(F.lit("breaks.b"), stream, block))
        .bitwiseAND(F.lit(0xFFFFFFFF))
        .bitwiseOR(F.lit(1))
    )
    block_len = F.least(F.lit(size), F.lit(run.rows) - block * size)
    frame = spark.range(0, blocks, 1, partitions).select(
        block.alias("block"),
        bucket(block, day_block_bounds(blocks, run.start_date, run.days)).alias("day"),
        block_len.alias("block_len"),
        mask.alias("mask"),
    )
    # One row per session start: the positions whose mask bit is set; the session ends at the
    # next set bit (trailing zeros of the higher bits) or at the end of the block.
    position = F.explode(F.sequence(F.lit(0), F.col("block_len").cast("int") - 1)).alias("start")
    frame = frame.select("block", "day", "block_len", "mask", position).where(
        "(mask >>> start) & 1 = 1"
    )
    higher = F.expr("mask >>> (start + 1)")
    trailing_zeros = F.bit_count(higher.bitwiseAND(-higher) - 1)
    end = F.when(higher == 0, F.col("block_len")).otherwise(
        F.least(F.col("block_len"), F.col("start") + 1 + trailing_zeros)
    )
    return frame.select(
        "day",
        (F.col("block") * size + F.col("start")).alias("session_key"),
        (end - F.col("start")).cast("long").alias("session_len"),
    )


def _explode_events(sessions: DataFrame) -> DataFrame:
    """One row per event: ``k`` is its position in the session, ``id`` its global row number."""
    from pyspark.sql import functions as F

    positions = F.sequence(F.lit(0).cast("long"), F.col("session_len") - 1)
    frame = sessions.select("*", F.explode(positions).alias("k"))
    return frame.withColumn("id", F.col("session_key") + F.col("k"))


def _product_price(category: Column, product: Column, seed: Column) -> Column:
    """A product's one fixed price: log-normal around its category's median, in cents."""
    from pyspark.sql import functions as F

    median = lookup(category, [c.median_price for c in world.CATEGORY_TABLE])
    sigma = lookup(category, [c.price_sigma for c in world.CATEGORY_TABLE])
    return F.round(median * F.exp(sigma * normal("price", seed, category, product)), 2)


def _popular_product(draw: Column) -> Column:
    from pyspark.sql import functions as F

    n = world.PRODUCTS_PER_CATEGORY
    return F.floor(F.lit(n) * F.pow(draw, world.PRODUCT_POPULARITY_EXPONENT))


def _effect(key: Column, terms: tuple[tuple[str, float], ...]) -> Column:
    from pyspark.sql import functions as F

    effect = F.lit(0.0)
    for value, weight in terms:
        effect = F.when(key == F.lit(value), F.lit(weight)).otherwise(effect)
    return effect


def _with_sessions(frame: DataFrame, run: ClickstreamRun) -> DataFrame:
    """Session-level draws (the same on every row of a session): user, device, time, funnel."""
    from pyspark.sql import functions as F

    stream, people = F.lit(run.stream_seed), F.lit(run.world_seed)
    session = F.col("session_key")
    users = world.user_count(run.rows)
    offset = world.USER_RANK_OFFSET
    rank_fraction = F.lit(offset) * (
        F.exp(uniform("user", stream, session) * F.lit(math.log1p(1 / offset))) - F.lit(1.0)
    )
    user = F.least(F.floor(F.lit(users) * rank_fraction), F.lit(users - 1))
    frame = frame.withColumn("user", user)
    who = F.col("user")
    categories = list(range(len(CATEGORIES)))
    category_edges = world.cumulative(tuple(c.weight for c in world.CATEGORY_TABLE))
    device_values = list(world.DEVICE_WEIGHTS)
    device_edges = world.cumulative(world.DEVICE_WEIGHTS)
    activity = -F.log(
        ((who + F.lit(0.5)) / F.lit(float(users)) + F.lit(offset)) / F.lit(0.5 + offset)
    )
    signal = world.SIGNAL
    pace_low, pace_high = world.PACE_SECONDS
    frame = frame.withColumns(
        {
            "user_id": F.concat(F.lit("u"), hex_id(F.xxhash64(F.lit("user.id"), people, who), 16)),
            "country": pick(
                uniform("user.country", people, who),
                list(world.COUNTRY_WEIGHTS),
                world.cumulative(world.COUNTRY_WEIGHTS),
            ),
            "device": F.when(
                uniform("device.sticky", stream, session) < F.lit(world.DEVICE_STICKINESS),
                pick(uniform("user.device", people, who), device_values, device_edges),
            ).otherwise(pick(uniform("device", stream, session), device_values, device_edges)),
            "category_ix": F.when(
                uniform("category.favourite", stream, session)
                < F.lit(world.FAVOURITE_CATEGORY_SHARE),
                pick(uniform("user.category", people, who), categories, category_edges),
            ).otherwise(pick(uniform("category", stream, session), categories, category_edges)),
            "propensity": F.lit(signal.propensity_sd) * normal("user.propensity", people, who)
            + F.lit(signal.propensity_activity) * (activity - F.lit(signal.activity_centre)),
            "hour": pick(
                uniform("hour", stream, session),
                list(range(24)),
                world.cumulative(world.HOUR_WEIGHTS),
            ),
            "pace_us": F.floor(
                F.lit(pace_low * 1e6)
                + uniform("pace", stream, session) * F.lit((pace_high - pace_low) * 1e6)
            ),
            "target": _popular_product(uniform("target", stream, session)),
        }
    )
    target_price = _product_price(F.col("category_ix"), F.col("target"), people)
    median = lookup(F.col("category_ix"), [c.median_price for c in world.CATEGORY_TABLE])
    hour_effect = lookup(F.col("hour"), [signal.hour_effect(hour) for hour in range(24)])
    device_effect = _effect(F.col("device"), signal.device)
    price_effect = F.lit(signal.price_slope) * F.log(target_price / median)
    if run.shift is not None:
        shifted = F.col("day") >= F.lit(run.shift.from_day)
        device_effect = device_effect * F.when(shifted, run.shift.device_factor).otherwise(1.0)
        price_effect = price_effect * F.when(shifted, run.shift.price_factor).otherwise(1.0)
    cart_logit = (
        F.lit(signal.cart_base)
        + F.col("propensity")
        + device_effect
        + _effect(F.col("country"), signal.country)
        + hour_effect
        + price_effect
    )
    buy_logit = (
        F.lit(signal.purchase_base)
        + F.col("propensity")
        + F.lit(1.5) * device_effect
        + F.lit(0.5) * hour_effect
        + price_effect
    )
    carts = uniform("cart", stream, session) < F.lit(1.0) / (F.lit(1.0) + F.exp(-cart_logit))
    buys = uniform("buy", stream, session) < F.lit(1.0) / (F.lit(1.0) + F.exp(-buy_logit))
    stage = F.when(carts & buys, 2).when(carts, 1).otherwise(0)
    # Sessions never cross midnight UTC: a late start is pulled back by the session's length.
    latest_start = F.lit(_DAY_US - 1) - F.col("session_len") * F.col("pace_us")
    start_us = F.least(
        F.col("hour") * F.lit(3_600_000_000)
        + F.floor(uniform("minute", stream, session) * F.lit(3.6e9)),
        latest_start,
    )
    return frame.withColumns({"stage": stage, "start_us": start_us})


def _with_events(frame: DataFrame, run: ClickstreamRun) -> DataFrame:
    """Row-level values: event type by position in the funnel, product, price, ids, time."""
    from pyspark.sql import functions as F

    stream, people = F.lit(run.stream_seed), F.lit(run.world_seed)
    length, k, stage = F.col("session_len"), F.col("k"), F.col("stage")
    funnel = (
        F.when((stage == 2) & (length >= 3), 2)
        .when((stage == 2) & (length == 2), 1)
        .when((stage == 1) & (length >= 2), 1)
        .otherwise(0)
    )
    frame = frame.withColumn("funnel", funnel)
    views = length - F.col("funnel")
    event_type = (
        F.when(k < views, F.lit("view"))
        .when((stage == 2) & (k == length - 1), F.lit("purchase"))
        .otherwise(F.lit("cart"))
    )
    product = F.when(k >= views - 1, F.col("target")).otherwise(
        _popular_product(uniform("product", stream, F.col("id")))
    )
    frame = frame.withColumn("product", product)
    start_epoch_us = int(
        dt.datetime.combine(run.start_date, dt.time(), tzinfo=dt.UTC).timestamp() * 1_000_000
    )
    jitter = F.floor(uniform("jitter", stream, F.col("id")) * F.col("pace_us"))
    ts_us = (
        F.lit(start_epoch_us)
        + F.col("day") * F.lit(_DAY_US)
        + F.col("start_us")
        + k * F.col("pace_us")
        + jitter
    )
    category = F.col("category_ix")
    return frame.withColumns(
        {
            "event_id": F.concat(F.lit(f"e{run.run_tag}"), hex_id(F.col("id"), 12)),
            "session_id": F.concat(F.lit(f"s{run.run_tag}"), hex_id(F.col("session_key"), 12)),
            "product_id": F.concat(
                F.lit("P"), category.cast("string"), F.lit("-"), F.lpad(F.col("product"), 5, "0")
            ),
            "category": lookup(category, list(CATEGORIES)),
            "event_type": event_type,
            "price": _product_price(category, F.col("product"), people),
            "ts": F.timestamp_micros(ts_us),
            "date": F.date_add(F.lit(run.start_date), F.col("day")),
        }
    )
