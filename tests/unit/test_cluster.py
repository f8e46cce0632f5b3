"""Cluster resources: GPU counts checked against what the jobs start, runtime by attempt."""

from __future__ import annotations

import pytest

from utilann.cluster import (
    ClusterConfigError,
    job_resources,
    retry_runtime,
    single_gpu,
    torchrun_gpus,
    vllm_gpus,
    world_size,
)

NODE = {"gpu": 8, "cpus": 32, "mem_mb": 256000, "runtime": 480}


def test_runtime_grows_with_attempt():
    runtime = retry_runtime(480)
    assert [runtime(None, attempt=a) for a in (1, 2, 3)] == [480, 960, 1440]
    with pytest.raises(ClusterConfigError, match="at least 1 minute"):
        retry_runtime(0)


def test_job_resources_leave_cpus_to_threads():
    res = job_resources(NODE, 8)
    assert set(res) == {"gpu", "mem_mb", "runtime"}  # no cpus_per_task: threads rule
    assert res["gpu"] == 8 and res["mem_mb"] == 256000 and res["runtime"](None, 2) == 960


def test_vllm_gpus_equal_tensor_times_pipeline_parallel():
    assert vllm_gpus(NODE, {"tensor_parallel_size": 8}, "annotation.resources") == 8
    pp = {"tensor_parallel_size": 4, "extra": {"pipeline_parallel_size": 2}}
    assert vllm_gpus(NODE, pp, "annotation.resources") == 8
    with pytest.raises(ClusterConfigError) as err:
        vllm_gpus(NODE, {"tensor_parallel_size": 4}, "annotation.resources")
    assert "annotation.resources.gpu is 8" in str(err.value)
    assert "tensor_parallel_size 4 = 4 GPUs" in str(err.value)
    assert "set annotation.resources.gpu: 4" in str(err.value)


def test_vllm_on_cpu_needs_no_gpu():
    cpu = {"gpu": 0, "cpus": 2, "mem_mb": 8000, "runtime": 120}
    assert vllm_gpus(cpu, {"tensor_parallel_size": 1}, "annotation.resources") == 0


def test_workers_need_a_cpu_each():
    few = {**NODE, "cpus": 4}
    with pytest.raises(ClusterConfigError, match="cpus is 4 but the job starts 8 processes"):
        vllm_gpus(few, {"tensor_parallel_size": 8}, "rag.generator.resources")
    with pytest.raises(ClusterConfigError, match="one torchrun rank per GPU"):
        torchrun_gpus(few, "training.resources")


def test_torchrun_world_size_is_the_gpu_count():
    assert torchrun_gpus(NODE, "training.resources") == 8
    assert [world_size(g) for g in (0, 1, 8)] == [1, 1, 8]


def test_encoding_uses_one_gpu_per_job():
    assert single_gpu({**NODE, "gpu": 1}, "dense.resources") == 1
    assert single_gpu({**NODE, "gpu": 0}, "dense.resources") == 0
    with pytest.raises(ClusterConfigError, match="raise dense.encode_shards"):
        single_gpu(NODE, "dense.resources")
