#!/usr/bin/env bash
# The deploy stage (`make deploy-local`, `.ci/run`): on the local stack, train and register a
# fresh model (deploy/train_candidate.py: the champion's recipe retrained, or
# DEPLOY_CANDIDATE=keras; DEPLOY_OPTIMIZE=onnx|onnx-int8|onnx-fp32|xla canaries its optimised version), run
# the pre-rollout gates and a short canary of it against the champion through `lakecast deploy`,
# and exit 1 unless it is promoted (gates refused, canary rolled back or undecided).
#
# It works in its own lake (.state/deploy-local/lake, made anew each time; LAKECAST_DEPLOY_LAKE
# to choose another) so the demo's lake/ is left alone, and stops everything it started: a
# broker it had to start is stopped again, the canary's workers stop with the canary.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${DEPLOY_ROWS:-6000}"
DAYS="${DEPLOY_DAYS:-3}"
STEPS="${DEPLOY_STEPS:-50,100}"
STEP_SECONDS="${DEPLOY_STEP_SECONDS:-15}"
LAKE="${LAKECAST_DEPLOY_LAKE:-$PWD/.state/deploy-local/lake}"
export LAKECAST__LAKE__ROOT="$LAKE"
LAKECAST=.venv/bin/lakecast
SUBMIT=(./spark-submit.sh --master "local[2]")

rm -rf "$LAKE"
mkdir -p "$LAKE"

started_broker=0
if ! "$LAKECAST" local status 2>/dev/null | grep -q "broker.*running"; then
  "$LAKECAST" local up
  started_broker=1
fi
stop_what_we_started() {
  if [[ $started_broker == 1 ]]; then "$LAKECAST" local down || true; fi
}
trap stop_what_we_started EXIT

echo "== deploy: events ($ROWS rows over $DAYS days) and features"
"${SUBMIT[@]}" jobs/generate_events.py --rows "$ROWS" --days "$DAYS" --seed 42 --start-date 2026-01-01
"${SUBMIT[@]}" jobs/extract_features.py --all
echo "== deploy: the champion (jobs/train.py), then a freshly trained candidate as challenger"
"${SUBMIT[@]}" jobs/train.py --seed 42
.venv/bin/python deploy/train_candidate.py --flavor "${DEPLOY_CANDIDATE:-sklearn}" --seed 7 \
  ${DEPLOY_OPTIMIZE:+--optimize "$DEPLOY_OPTIMIZE"}
"$LAKECAST" models list
echo "== deploy: gates and a canary ($STEPS %, ${STEP_SECONDS}s a step) through lakecast deploy"
set +e
"$LAKECAST" demo canary --model purchase --steps "$STEPS" --step-seconds "$STEP_SECONDS" --rate 100
canary=$?
set -e
final=$("$LAKECAST" deploy status purchase --json 2>/dev/null | .venv/bin/python -c \
  'import json, sys; text = sys.stdin.read(); print(json.loads(text)["state"]["status"] if text else "none")')
echo "deploy: canary exit status $canary, rollout $final"
if [[ $canary != 0 || $final != promoted ]]; then
  echo "deploy: FAILED (the candidate was not promoted)" >&2
  exit 1
fi
echo "deploy: promoted"
