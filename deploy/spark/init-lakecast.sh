#!/usr/bin/env bash
# Node init script (Databricks cluster init script, EMR bootstrap action): install the lakecast
# wheel that `make dist` built, with its dependencies, into the Python that Spark runs.
#   LAKECAST_WHEEL  where the wheel is: a local path, /Volumes/..., /dbfs/..., or s3://...
#   LAKECAST_PYTHON the interpreter to install into (default: Databricks' /databricks/python3,
#                   else python3 on PATH)
set -euo pipefail

wheel="${LAKECAST_WHEEL:?set LAKECAST_WHEEL to the wheel built by make dist}"
python="${LAKECAST_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x /databricks/python3/bin/python ]]; then
    python=/databricks/python3/bin/python
  else
    python="$(command -v python3)"
  fi
fi

if [[ "$wheel" == s3://* ]]; then
  local_copy="$(mktemp -d)/$(basename "$wheel")"
  aws s3 cp --only-show-errors "$wheel" "$local_copy"
  wheel="$local_copy"
fi
if [[ ! -f "$wheel" ]]; then
  echo "init-lakecast.sh: no wheel at $wheel" >&2
  exit 1
fi
"$python" -m pip install --quiet --disable-pip-version-check "$wheel"
"$python" -c 'import lakecast, sys; print("lakecast installed into", sys.executable)'
