#!/usr/bin/env bash
# Wraps pyspark's spark-submit for lakecast jobs:
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job arguments]
# It adds the resolved JVM jars (Delta, Spark's Kafka connector), conf/spark-defaults.conf,
# lib/lakecast zipped as --py-files (so executors on a cluster import it), and points the driver
# and the executors' Python workers at this project's interpreter. Every other argument passes
# through; --master defaults to local[*] (spark://host:port, yarn and k8s:// work as usual).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${LAKECAST_PYTHON:-$here/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "spark-submit.sh: $python not found: run 'make setup' first (or set LAKECAST_PYTHON)" >&2
  exit 2
fi
spark_home="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

jars="$("$python" -m lakecast.cli.main jars --spark-list)"

state="$here/.state"
mkdir -p "$state"
pyfiles="$state/lakecast-lib.zip"
# Rebuilt every time: cheap, and executors then never run stale code.
"$python" - "$here/lib" "$pyfiles" <<'PY'
import sys, zipfile, pathlib
root, out = pathlib.Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted((root / "lakecast").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            zf.write(path, path.relative_to(root))
PY

has_master=0
for arg in "$@"; do
  [[ "$arg" == "--master" || "$arg" == --master=* ]] && has_master=1
done
master_args=()
[[ $has_master -eq 0 ]] && master_args=(--master "local[*]")

export PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" LAKECAST_SUBMITTED=1 LAKECAST_HOME="$here"
export PYTHONPATH="$here/lib${PYTHONPATH:+:$PYTHONPATH}"
# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) drowns the job's own output.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "$spark_home/bin/spark-submit" \
  "${master_args[@]}" \
  --properties-file "$here/conf/spark-defaults.conf" \
  --jars "$jars" \
  --py-files "$pyfiles" \
  --conf "spark.pyspark.python=$python" \
  --conf "spark.pyspark.driver.python=$python" \
  --conf "spark.executorEnv.LAKECAST_SUBMITTED=1" \
  --conf "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL=$TF_CPP_MIN_LOG_LEVEL" \
  --conf "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:$here/conf/log4j2-spark.properties" \
  --conf "spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=file:$here/conf/log4j2-spark.properties" \
  "$@"
