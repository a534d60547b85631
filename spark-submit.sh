#!/usr/bin/env bash
# Wraps pyspark's spark-submit for lakecast jobs:
#   ./spark-submit.sh [spark-submit options] jobs/<job>.py [job arguments]
# It adds the resolved JVM jars (Delta, Spark's Kafka connector), conf/spark-defaults.conf,
# lib/lakecast zipped as --py-files (so executors on a cluster import it), and points the driver
# and the executors' Python workers at this project's interpreter. Every other argument passes
# through; --master defaults to local[*] (spark://host:port, yarn and k8s:// work as usual).
#
# Safe defaults:
# - A local master (local, local[N], local[*]) binds the driver's RPC, block manager and UI to
#   127.0.0.1 (spark.driver.bindAddress / spark.driver.host, SPARK_LOCAL_IP for the UI); a
#   --conf of yours wins. A cluster master keeps what you configure.
# - A spark:// master with a shared secret (the file $LAKECAST_SPARK_SECRET_FILE, or the one
#   `lakecast local up --spark-workers N` keeps in .state/spark/auth.secret for a master on
#   127.0.0.1/localhost) gets spark.authenticate and the secret in a 0600 properties file that
#   is deleted when the job ends: never on a command line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${LAKECAST_PYTHON:-$here/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "spark-submit.sh: $python not found: run 'make setup' first (or set LAKECAST_PYTHON)" >&2
  exit 2
fi
spark_home="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

jars="$("$python" -m lakecast.cli.main jars --spark-list)"

# Private state: 0700, never a symlink; files in it are created with mktemp (O_EXCL, 0600).
state="$here/.state"
if [[ -L "$state" ]]; then
  echo "spark-submit.sh: $state is a symlink: remove it" >&2
  exit 2
fi
mkdir -p "$state"
chmod 700 "$state"
# Rebuilt every time: cheap, and executors then never run stale code. Written to a fresh
# temporary file, then named by its sha256: a running driver imports lazily from its zip by
# path (zipimport keeps the offsets it read first), so a zip is never replaced by other bytes
# under it. One shared name, rewritten by each submit, failed a concurrent job's driver with
# "ZipImportError: bad local file header". Zips unused for 7 days are removed.
mkdir -p "$state/pyfiles"
building="$(mktemp "$state/pyfiles/.building.XXXXXX")"
digest="$("$python" - "$here/lib" "$building" <<'PY'
import hashlib, sys, zipfile, pathlib
root, out = pathlib.Path(sys.argv[1]), sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in sorted((root / "lakecast").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            zf.write(path, path.relative_to(root))
print(hashlib.sha256(pathlib.Path(out).read_bytes()).hexdigest()[:16])
PY
)"
pyfiles="$state/pyfiles/lakecast-lib-$digest.zip"
mv -f "$building" "$pyfiles"  # the same bytes if it was there: a reader sees no change
touch "$pyfiles"
find "$state/pyfiles" -maxdepth 1 -name 'lakecast-lib-*.zip' -mtime +7 -delete 2>/dev/null || true

master="local[*]"
has_master=0
expect_master=0
for arg in "$@"; do
  if [[ $expect_master -eq 1 ]]; then
    master="$arg"
    expect_master=0
  elif [[ "$arg" == "--master" ]]; then
    has_master=1
    expect_master=1
  elif [[ "$arg" == --master=* ]]; then
    has_master=1
    master="${arg#--master=}"
  fi
done
master_args=()
[[ $has_master -eq 0 ]] && master_args=(--master "$master")

local_args=()
if [[ "$master" == local || "$master" == local\[* ]]; then
  export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"  # the driver's UI binds to it
  local_args=(--conf "spark.driver.bindAddress=127.0.0.1" --conf "spark.driver.host=127.0.0.1")
  # JSON logs from the Python workers: the daemon they fork from must import lakecast as it
  # starts, before any task brings the --py-files zip; here PYTHONPATH has lib/. On a cluster
  # that holds only when lakecast is installed on the executors: pass this --conf there.
  local_args+=(--conf "spark.python.daemon.module=lakecast.monitoring.spark_python_daemon")
fi

properties="$here/conf/spark-defaults.conf"
secret_file="${LAKECAST_SPARK_SECRET_FILE:-}"
if [[ -z "$secret_file" && "$master" =~ ^spark://(127\.0\.0\.1|localhost): \
      && -f "$state/spark/auth.secret" ]]; then
  secret_file="$state/spark/auth.secret"
fi
if [[ -n "$secret_file" && "$master" == spark://* ]]; then
  if [[ ! -r "$secret_file" ]]; then
    echo "spark-submit.sh: the Spark secret file $secret_file cannot be read" >&2
    exit 2
  fi
  IFS= read -r secret < "$secret_file" || true
  properties="$(mktemp "$state/submit-XXXXXX.properties")"
  trap 'rm -f "$properties"' EXIT
  {
    cat "$here/conf/spark-defaults.conf"
    printf '\nspark.authenticate true\nspark.authenticate.secret %s\n' "$secret"
  } > "$properties"
  unset secret
fi

export PYSPARK_PYTHON="$python" PYSPARK_DRIVER_PYTHON="$python" LAKECAST_SUBMITTED=1 LAKECAST_HOME="$here"
export PYTHONPATH="$here/lib${PYTHONPATH:+:$PYTHONPATH}"
# Logs are JSON lines: the JVMs' through conf/log4j2-spark.properties (Spark's JSON template),
# the Python driver's through lakecast.process.run_main, the Python workers' through the daemon
# they fork from (lakecast.monitoring.spark_python_daemon; local masters, see above).
# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) drowns the job's own output.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
submit=(
  "$spark_home/bin/spark-submit"
  "${master_args[@]}"
  --properties-file "$properties"
  --jars "$jars"
  --py-files "$pyfiles"
  --conf "spark.pyspark.python=$python"
  --conf "spark.pyspark.driver.python=$python"
  --conf "spark.executorEnv.LAKECAST_SUBMITTED=1"
  --conf "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL=$TF_CPP_MIN_LOG_LEVEL"
  --conf "spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:$here/conf/log4j2-spark.properties"
  --conf "spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=file:$here/conf/log4j2-spark.properties"
  --conf "spark.log.structuredLogging.enabled=true"
  "${local_args[@]}"
  "$@"
)
if [[ "$properties" == "$here/conf/spark-defaults.conf" ]]; then
  exec "${submit[@]}"
fi
# The secret's properties file is removed when the job ends, so spark-submit runs as a child
# here; a stop (Ctrl-C, SIGTERM from a scheduler) is passed on to it.
"${submit[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
status=0
wait "$child" || status=$?
if kill -0 "$child" 2>/dev/null; then  # wait was cut short by a signal: wait for the job's end
  wait "$child" || status=$?
fi
exit "$status"
