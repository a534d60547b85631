"""Where a Python worker runs its model: the GPU Spark gave the task, or the CPU.

Spark's resource scheduling hands each task GPU addresses (``TaskContext.resources()["gpu"]``),
as the executor's discovery script reported them (``nvidia-smi`` indices for Spark's own
``getGpusResources.sh``). The placement is fixed before the first framework import of the
worker process, because TensorFlow, JAX and PyTorch all read ``CUDA_VISIBLE_DEVICES`` once. An
assigned address is used only where the NVIDIA driver (NVML, which enumerates as ``nvidia-smi``
does and starts no CUDA context) shows a GPU there; otherwise, say a discovery script that
reports an address on a node with no driver, the worker falls back to the CPU and says why. A
Spark task given no GPU hides every GPU, even one its executor's environment names, so it
never grabs one by accident; outside Spark (a notebook, a test) an explicit
``CUDA_VISIBLE_DEVICES`` is left as it is.

Every worker writes one JSON line to its stderr (the executor's ``stderr`` log on a cluster)
with the addresses it was assigned, the device it chose and why.

On a GPU, float32 matrix products run in full float32, not TF32: with TF32 (the default of
cuBLAS for TensorFlow and of JAX on Ampere and later) the demo MLP's scores moved by up to
6e-4 from the CPU's on an H200; with full float32 by 2e-7. One model version gives the same
scores on any executor. Set ``NVIDIA_TF32_OVERRIDE`` / ``JAX_DEFAULT_MATMUL_PRECISION`` in the
executor's environment to choose otherwise.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PLACEMENT_EVENT = "worker_placement"
_NVML_LIBRARY = "libnvidia-ml.so.1"
_NVML_SUCCESS = 0


@dataclass(frozen=True)
class Placement:
    """The accelerator this worker uses: ``device`` is ``"gpu:<address>"`` or ``"cpu"``."""

    device: str
    assigned: tuple[str, ...] = ()  # the GPU addresses Spark (or the caller) assigned
    reason: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("gpu:")

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "assigned": list(self.assigned), "reason": self.reason}


@dataclass(frozen=True)
class GpuCheck:
    """Whether an address names a GPU this process can use, and what showed it."""

    present: bool
    detail: str


GpuProbe = Callable[[str], GpuCheck]


def nvml_gpu_at(address: str) -> GpuCheck:
    """Ask the NVIDIA driver (NVML) whether ``address`` (an index or a ``GPU-...`` UUID) is a
    GPU here. NVML initialises no CUDA context, so this is safe before any framework import."""
    try:
        nvml = ctypes.CDLL(_NVML_LIBRARY)
    except OSError:
        return GpuCheck(False, f"no NVIDIA driver ({_NVML_LIBRARY} not found)")
    code = nvml.nvmlInit_v2()
    if code != _NVML_SUCCESS:
        return GpuCheck(False, f"NVML did not start (nvmlInit_v2 returned {code})")
    try:
        if address.isdigit():
            count = ctypes.c_uint(0)
            code = nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
            if code != _NVML_SUCCESS:
                return GpuCheck(False, f"NVML could not count GPUs (returned {code})")
            found = int(address) < count.value
            return GpuCheck(found, f"NVML shows {count.value} GPU(s)")
        handle = ctypes.c_void_p()
        code = nvml.nvmlDeviceGetHandleByUUID(address.encode(), ctypes.byref(handle))
        return GpuCheck(code == _NVML_SUCCESS, f"NVML lookup by UUID returned {code}")
    finally:
        nvml.nvmlShutdown()


def _task_context() -> Any:
    """The running Spark task's context; None outside a task (or with no pyspark at all)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # the streaming worker runs without pyspark
        return None
    return TaskContext.get()


def task_gpu_addresses() -> list[str]:
    """The GPU addresses Spark assigned to the running task (empty outside Spark or on CPU)."""
    context = _task_context()
    if context is None:
        return []
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def _hide_gpus(*, assigned: bool) -> None:
    if assigned:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def place_worker(addresses: list[str] | None = None, *, probe: GpuProbe = nvml_gpu_at) -> Placement:
    """Pin this process to its first assigned GPU (memory growth on), or to the CPU.

    ``addresses`` defaults to the running Spark task's GPUs; an explicit list (even empty) is
    an assignment, as Spark's would be. ``probe`` says whether an address holds a GPU.
    """
    in_task = _task_context() is not None
    assigned = task_gpu_addresses() if addresses is None else addresses
    explicit = addresses is not None or in_task
    if not assigned:
        _hide_gpus(assigned=explicit)
        why = "no GPU assigned to the task" if explicit else "not in a Spark task"
        return _recorded(Placement("cpu", (), why), in_task=in_task)
    address = assigned[0]
    check = probe(address)
    if not check.present:
        _hide_gpus(assigned=True)
        reason = f"assigned GPU address {address!r} holds no GPU: {check.detail}"
        return _recorded(Placement("cpu", tuple(assigned), reason), in_task=in_task)
    # Spark's discovery script numbers GPUs as nvidia-smi does (PCI bus order); CUDA's default
    # order is fastest first, so without this an index could name another card.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ["CUDA_VISIBLE_DEVICES"] = address
    # TensorFlow otherwise reserves the whole card at start; several tasks share one GPU.
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the same for JAX
    os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # cuBLAS/cuDNN: full float32
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    return _recorded(Placement(f"gpu:{address}", tuple(assigned), check.detail), in_task=in_task)


def _recorded(placement: Placement, *, in_task: bool) -> Placement:
    """Write the placement as one JSON line to stderr where a Spark task made it (the
    executor's log keeps it; a notebook or a test stays quiet)."""
    if in_task:
        record = {
            "ts": datetime.now(UTC).isoformat(),
            "level": "INFO",
            "logger": __name__,
            "event": PLACEMENT_EVENT,
            "pid": os.getpid(),
            **placement.as_dict(),
        }
        print(json.dumps(record, sort_keys=True), file=sys.stderr, flush=True)
    return placement
