#!/usr/bin/env bash
# A *fake* Spark GPU discovery script, for testing resource scheduling on a machine with no GPU:
# it reports one address ($LAKECAST_FAKE_GPU_ADDRESS, default 0) without looking for a card.
# lakecast's placement then reads the address from TaskContext.resources(), finds no GPU there
# (NVML) and scores on the CPU. On real GPU nodes use Spark's own
# examples/src/main/scripts/getGpusResources.sh (nvidia-smi indices) instead.
#   SPARK_WORKER_OPTS="-Dspark.worker.resource.gpu.amount=1
#     -Dspark.worker.resource.gpu.discoveryScript=$PWD/deploy/spark/fake-gpu-discovery.sh"
printf '{"name": "gpu", "addresses": ["%s"]}\n' "${LAKECAST_FAKE_GPU_ADDRESS:-0}"
