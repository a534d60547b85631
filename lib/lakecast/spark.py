"""The one SparkSession builder, used by jobs, tests and notebooks.

It puts Delta's extension and catalog and the resolved jars on the session, applies
``conf/spark-defaults.conf`` and points Spark's Python workers at this interpreter (without
that they start ``python3`` from PATH and miss pyarrow and lakecast). A local master binds the
driver (RPC, block manager, UI) to 127.0.0.1 unless ``conf`` says otherwise; a cluster master
keeps what the user configures. Under ``spark-submit.sh`` the submit already carried all of
that, and the builder adds nothing.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lakecast.config import Settings
from lakecast.config import settings as default_settings
from lakecast.local.jars import resolve_jars
from lakecast.process import SUBMITTED_ENV

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOOPBACK = "127.0.0.1"
# The RPC server and block manager bind to spark.driver.bindAddress; the UI binds to the
# SPARK_LOCAL_IP of the JVM's environment, or to every interface without it.
LOCAL_DRIVER_CONF = {"spark.driver.bindAddress": LOOPBACK, "spark.driver.host": LOOPBACK}


def is_local_master(master: str) -> bool:
    """``local``, ``local[N]``, ``local[*]``, ``local[N,F]``: everything in this one JVM."""
    return master == "local" or master.startswith("local[")


def read_spark_defaults(path: Path) -> dict[str, str]:
    """Parse a ``spark-defaults.conf`` file: ``key value`` lines, ``#`` comments."""
    conf: dict[str, str] = {}
    if not path.is_file():
        return conf
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        conf[key] = value.strip()
    return conf


def _point_workers_at_this_python() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def get_spark(
    app_name: str | None = None,
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> SparkSession:
    """Build (or return the running) SparkSession with Delta and lakecast's jars.

    Args:
        app_name: the application name; defaults to ``spark.app_name`` in config.
        master: ``local[2]``, ``spark://host:port`` ...; ``spark-submit``'s wins when submitted.
        conf: extra Spark properties, applied last.
        settings: the config to use; defaults to the process-wide one.
    """
    from pyspark.sql import SparkSession

    cfg = settings or default_settings()
    _point_workers_at_this_python()
    builder = SparkSession.builder.appName(app_name or cfg.spark.app_name)
    if os.environ.get(SUBMITTED_ENV) != "1":
        chosen = master or cfg.spark.master
        builder = builder.master(chosen)
        options = read_spark_defaults(cfg.project_path(cfg.spark.defaults_file))
        if is_local_master(chosen):
            options.update(LOCAL_DRIVER_CONF)
            # Read by the JVM that the session launches below (its UI's bind address).
            os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
        options["spark.sql.shuffle.partitions"] = str(cfg.spark.shuffle_partitions)
        options["spark.jars"] = resolve_jars(cfg, offline_only=False).spark_jars
        options["spark.pyspark.python"] = sys.executable
        log_conf = cfg.project_path("conf/log4j2-spark.properties")
        if log_conf.is_file():
            java_option = f"-Dlog4j2.configurationFile=file:{log_conf}"
            options.setdefault("spark.driver.extraJavaOptions", java_option)
            options.setdefault("spark.executor.extraJavaOptions", java_option)
            # Spark's MDC values (executor, task, ...) in its JSON lines' "context".
            options.setdefault("spark.log.structuredLogging.enabled", "true")
        for key, value in options.items():
            builder = builder.config(key, value)
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    # A job that returns an error status with the session still up can abort at interpreter
    # exit ("terminate called without an active exception", status 134) while the JVM gateway
    # and native threads are torn down in no particular order; stop it first.
    atexit.register(session.stop)
    return session
