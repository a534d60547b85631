"""Where a scoring worker runs: the environment it sets before any framework is imported."""

from __future__ import annotations

import os

import pytest

from lakecast.scoring.placement import place_worker

GPU_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "NVIDIA_TF32_OVERRIDE",
    "JAX_DEFAULT_MATMUL_PRECISION",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_an_assigned_gpu_is_pinned_with_memory_growth_and_full_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # what the executor may see
    placement = place_worker(["2", "3"])
    assert (placement.device, placement.is_gpu) == ("gpu:2", True)
    assert {name: os.environ[name] for name in GPU_VARIABLES} == {
        "CUDA_VISIBLE_DEVICES": "2",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "NVIDIA_TF32_OVERRIDE": "0",
        "JAX_DEFAULT_MATMUL_PRECISION": "highest",
    }


def test_an_operator_may_choose_tf32_in_the_executor_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "tensorfloat32")
    place_worker(["0"])
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
