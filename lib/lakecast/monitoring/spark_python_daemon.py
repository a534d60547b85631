"""Spark's Python daemon for lakecast jobs: ``pyspark.daemon`` with the services' JSON logs.

Each executor starts its Python workers by forking this daemon (``spark.python.daemon.module``,
set by spark-submit.sh), so a worker inherits the JSON handler configured here: Python warnings
(numpy's RuntimeWarnings in a UDF) and TensorFlow's lines, re-emitted by
``native_stderr_as_logs`` when a Keras model loads, reach the executor's stderr as JSON lines
instead of TensorFlow's own ``WARNING:tensorflow:...`` format. WARNING and above, as the
executors' log4j2 level: TensorFlow's INFO start-up notes (oneDNN, no CUDA drivers) twice per
worker are chatter. The configuration starts no thread, which the daemon requires before it
forks.
"""

from __future__ import annotations

import logging

from pyspark import daemon

from lakecast.monitoring.logging import configure_json_logging

SERVICE = "spark-python-worker"

if __name__ == "__main__":
    configure_json_logging(SERVICE, level=logging.WARNING)
    daemon.manager()
