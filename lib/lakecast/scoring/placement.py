"""Where a Python worker runs its model: the GPU Spark gave the task, or the CPU.

Spark's resource scheduling hands each task GPU addresses (``TaskContext.resources()["gpu"]``).
The placement is fixed before the first framework import of the worker process, because
TensorFlow, JAX and PyTorch all read ``CUDA_VISIBLE_DEVICES`` once. A Spark task given no GPU
hides every GPU, even one its executor's environment names, so it never grabs one by accident;
outside Spark (a notebook, a test) an explicit ``CUDA_VISIBLE_DEVICES`` is left as it is.

On a GPU, float32 matrix products run in full float32, not TF32: with TF32 (the default of
cuBLAS for TensorFlow and of JAX on Ampere and later) the demo MLP's scores moved by up to
6e-4 from the CPU's on an H200; with full float32 by 2e-7. One model version gives the same
scores on any executor. Set ``NVIDIA_TF32_OVERRIDE`` / ``JAX_DEFAULT_MATMUL_PRECISION`` in the
executor's environment to choose otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    """The accelerator this worker uses: ``device`` is ``"gpu:<address>"`` or ``"cpu"``."""

    device: str

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("gpu:")


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


def place_worker(addresses: list[str] | None = None) -> Placement:
    """Pin this process to its first assigned GPU (memory growth on), or to the CPU.

    ``addresses`` defaults to the running Spark task's GPUs; an explicit list (even empty) is
    an assignment, as Spark's would be.
    """
    assigned = task_gpu_addresses() if addresses is None else addresses
    if not assigned:
        if addresses is not None or _task_context() is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        else:
            os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
        return Placement("cpu")
    os.environ["CUDA_VISIBLE_DEVICES"] = assigned[0]
    # TensorFlow otherwise reserves the whole card at start; several tasks share one GPU.
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the same for JAX
    os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # cuBLAS/cuDNN: full float32
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
    return Placement(f"gpu:{assigned[0]}")
