"""Where a Python worker runs its model: the GPU Spark gave the task, or the CPU.

Spark's resource scheduling hands each task GPU addresses (``TaskContext.resources()["gpu"]``).
The placement is fixed before the first framework import of the worker process, because
TensorFlow, JAX and PyTorch all read ``CUDA_VISIBLE_DEVICES`` once. With no GPU assigned the
worker hides every GPU, so a CPU-only executor never grabs one by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """The accelerator this worker uses: ``device`` is ``"gpu:<address>"`` or ``"cpu"``."""

    device: str

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("gpu:")


def task_gpu_addresses() -> list[str]:
    """The GPU addresses Spark assigned to the running task (empty outside Spark or on CPU)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # the streaming worker runs without pyspark
        return []
    context = TaskContext.get()
    if context is None:
        return []
    gpu = context.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def place_worker(addresses: list[str] | None = None) -> Placement:
    """Pin this process to its first assigned GPU (memory growth on), or to the CPU."""
    assigned = task_gpu_addresses() if addresses is None else addresses
    if not assigned:
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
        return Placement("cpu")
    os.environ["CUDA_VISIBLE_DEVICES"] = assigned[0]
    # TensorFlow otherwise reserves the whole card at start; several tasks share one GPU.
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the same for JAX
    return Placement(f"gpu:{assigned[0]}")
