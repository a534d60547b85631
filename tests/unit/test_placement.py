"""Where a scoring worker runs: the environment it sets before any framework is imported."""

from __future__ import annotations

import os

import pytest

from lakecast.scoring.placement import GpuCheck, nvml_gpu_at, place_worker

GPU_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "NVIDIA_TF32_OVERRIDE",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "CUDA_DEVICE_ORDER",
)


def a_gpu_everywhere(address: str) -> GpuCheck:
    return GpuCheck(True, f"test: GPU {address} present")


def no_gpu_anywhere(address: str) -> GpuCheck:
    return GpuCheck(False, "test: no driver")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_an_assigned_gpu_is_pinned_with_memory_growth_and_full_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what the executor may see
    placement = place_worker(["2", "3"], probe=a_gpu_everywhere)
    assert (placement.device, placement.is_gpu) == ("gpu:2", True)
    assert {name: os.environ[name] for name in GPU_VARIABLES} == {
        "CUDA_VISIBLE_DEVICES": "2",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "NVIDIA_TF32_OVERRIDE": "0",
        "JAX_DEFAULT_MATMUL_PRECISION": "highest",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # Spark's nvidia-smi indices, CUDA's numbering
    }
    assert placement.assigned == ("2", "3")


def test_an_operator_may_choose_tf32_in_the_executor_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "tensorfloat32")
    place_worker(["0"], probe=a_gpu_everywhere)
    assert os.environ["JAX_DEFAULT_MATMUL_PRECISION"] == "tensorfloat32"


def test_a_task_given_no_gpu_hides_the_executor_s_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    placement = place_worker([])
    assert (placement.device, placement.is_gpu) == ("cpu", False)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_outside_spark_an_explicit_device_list_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert place_worker().device == "cpu"  # no task: no addresses
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # unset before: hidden
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert place_worker().device == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_an_assigned_address_that_holds_no_gpu_falls_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    placement = place_worker(["0"], probe=no_gpu_anywhere)
    assert (placement.device, placement.assigned) == ("cpu", ("0",))
    assert placement.reason == "assigned GPU address '0' holds no GPU: test: no driver"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # hidden, not the executor's 0
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in os.environ


def test_the_driver_probe_finds_no_gpu_at_an_address_no_machine_has() -> None:
    check = nvml_gpu_at("4096")  # no driver here, or fewer cards than that
    assert not check.present
    assert check.detail.startswith(("no NVIDIA driver", "NVML"))
