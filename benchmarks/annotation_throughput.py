"""Throughput of the annotation backend (batched vLLM) against one-prompt-at-a-time transformers.

Both engines get the same RelSel prompts (built by the annotation library from real pools),
the same model directory, dtype, chat template and greedy decoding with the same token limit.
vLLM answers all prompts in one batched call; transformers answers them one by one with
``generate``, which is what a naive annotation script does. One-at-a-time throughput does not
depend on how many prompts are timed, so the baseline runs on the first ``--hf-prompts``
prompts only; vLLM needs the whole batch to show what batching buys.

    python benchmarks/annotation_throughput.py \\
        --model-dir resources/models/smollm2-135m-instruct \\
        --pools results/demo/pools/shard-0.parquet

Without ``--pools`` it builds pools from a BEIR directory (human positives + random passages).
Prints prompts/s and tokens/s of both engines and their ratio. ``--constrained`` also times
the same vLLM batch under constrained decoding (``annotation.decoding: constrained``: the
grammar of each window's answer, :mod:`utilann.llm.grammar`), on the same engine with its
prefix cache reset in between, and counts parse outcomes both ways. ``--throughput-out FILE``
also times the batch prefill-only (one output token per prompt) and writes the engine's
prompt and output tokens/s (:mod:`utilann.llm.throughput`: decode rate = output tokens over
the full run's time less the prefill-only run's) for the budget planner (``utilann plan
--throughput FILE``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
from beir_sample import beir_pools

from utilann.annotate.cascade import group_pools
from utilann.annotate.parse import parse_output
from utilann.annotate.windows import relsel_windows
from utilann.llm.grammar import BACKEND, constrained
from utilann.llm.templates import load_template
from utilann.llm.throughput import Throughput, write_throughput

RELSEL = load_template("relsel", "v1")


def relsel_prompts(
    pools: pd.DataFrame, n: int, window: int, words: int
) -> tuple[list[list[dict]], list[int]]:
    """The first ``n`` RelSel conversations of the cascade for these pools, and how many
    passages each shows."""
    conversations, shown_counts = [], []
    for q in group_pools(pools, words):
        for shown in relsel_windows(q.is_human, window, "fixed_first", query_id=q.query_id):
            conversations.append(RELSEL.render(q.query, [q.texts[i] for i in shown]))
            shown_counts.append(len(shown))
    if len(conversations) < n:
        raise SystemExit(f"only {len(conversations)} prompts available, {n} requested")
    return conversations[:n], shown_counts[:n]


def transformers_one_by_one(model_dir: str, prompts, max_tokens: int, dtype: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    prompt_tokens = output_tokens = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            out = model.generate(
                ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
            prompt_tokens += ids.shape[1]
            output_tokens += out.shape[1] - ids.shape[1]
    seconds = time.perf_counter() - started
    del model
    return summary(
        "transformers, one at a time", len(prompts), prompt_tokens, output_tokens, seconds
    )


def vllm_batched(
    model_dir: str,
    prompts,
    shown,
    max_tokens: int,
    dtype: str,
    kv_gib: int,
    grammar: bool,
    prefill_only: bool = False,
) -> list[dict]:
    """vLLM over the whole batch: free decoding, then (``grammar``) constrained decoding, then
    (``prefill_only``) one output token per prompt, the prefill's share of the time."""
    os.environ.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": str(kv_gib),
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        }
    )
    from utilann.llm.engine import VLLMChat

    chat = VLLMChat(
        model_dir,
        dtype=dtype,
        enforce_eager=True,
        enable_prefix_caching=True,
        max_model_len=8192,
        seed=0,
        **({"structured_outputs_config": {"backend": BACKEND}} if grammar else {}),
    )
    free = {"temperature": 0.0, "max_tokens": max_tokens}
    runs = {"vLLM (this stage's backend), batched": [free] * len(prompts)}
    if grammar:
        syntax = RELSEL.answer_syntax
        runs["vLLM batched, constrained decoding"] = [constrained(free, syntax, n) for n in shown]
    if prefill_only:
        runs[PREFILL_ONLY] = [{**free, "max_tokens": 1}] * len(prompts)
    rows = []
    for engine, sampling in runs.items():
        chat.llm.reset_prefix_cache()  # the second run must not reuse the first one's prefill
        started = time.perf_counter()
        gens = chat.chat(prompts, sampling, use_tqdm=False)
        seconds = time.perf_counter() - started
        row = summary(
            engine,
            len(prompts),
            sum(g.prompt_tokens for g in gens),
            sum(g.output_tokens for g in gens),
            seconds,
        )
        statuses = [parse_output("selection", g.text, n).status for g, n in zip(gens, shown)]
        rows.append({**row, **{s: statuses.count(s) for s in ("ok", "repaired", "failed")}})
    return rows


PREFILL_ONLY = "vLLM batched, prefill only (1 output token)"


def engine_throughput(free: dict, prefill: dict, model: str, dtype: str) -> Throughput:
    """Prompt tokens/s of the prefill-only run; output tokens/s of the full run's time beyond
    it (both runs prefill the same prompts from a reset prefix cache)."""
    from utilann.hardware import detect

    decode_seconds = free["seconds"] - prefill["seconds"]
    if decode_seconds <= 0 or not free["output_tokens"]:
        raise SystemExit("the prefill-only run was not faster than the full run: rerun")
    hw = detect()
    return Throughput(
        prefill_tokens_per_s=prefill["prompt_tokens"] / prefill["seconds"],
        decode_tokens_per_s=free["output_tokens"] / decode_seconds,
        source=(
            f"measured by benchmarks/annotation_throughput.py, {free['prompts']} RelSel prompts "
            f"({free['prompt_tokens']} prompt tokens) batched on vLLM"
        ),
        device=hw.device,
        device_name=hw.gpu_name or hw.cpu_model,
        gpus=1 if hw.device == "cuda" else 0,
        model=model,
        dtype=dtype,
        backend="vllm",
        load_average=os.getloadavg()[0],
    )


def summary(engine: str, n: int, prompt_tokens: int, output_tokens: int, seconds: float) -> dict:
    return {
        "engine": engine,
        "prompts": n,
        "prompt_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "seconds": round(seconds, 2),
        "prompts_per_s": n / seconds,
        "tokens_per_s": (prompt_tokens + output_tokens) / seconds,
        "output_tokens_per_s": output_tokens / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="resources/models/smollm2-135m-instruct")
    parser.add_argument("--pools", type=Path, default=None, help="a POOLS Parquet shard")
    parser.add_argument("--beir", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--prompts", type=int, default=32, help="prompts for vLLM")
    parser.add_argument("--hf-prompts", type=int, default=6, help="prompts for transformers")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--passage-max-words", type=int, default=40)
    parser.add_argument("--window-size", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--kv-cache-gib", type=int, default=2)
    parser.add_argument(
        "--constrained", action="store_true", help="also time vLLM with constrained decoding"
    )
    parser.add_argument(
        "--throughput-out",
        type=Path,
        default=None,
        help="also time prefill alone and write prompt/output tokens/s here (JSON)",
    )
    args = parser.parse_args()

    pools = pd.read_parquet(args.pools) if args.pools else beir_pools(args.beir, 64, 15)
    prompts, shown = relsel_prompts(pools, args.prompts, args.window_size, args.passage_max_words)
    # transformers first: vLLM lowers the process's torch threads when it starts in-process
    hf = transformers_one_by_one(
        args.model_dir, prompts[: args.hf_prompts], args.max_tokens, args.dtype
    )
    vllm_rows = vllm_batched(
        args.model_dir,
        prompts,
        shown,
        args.max_tokens,
        args.dtype,
        args.kv_cache_gib,
        args.constrained,
        prefill_only=args.throughput_out is not None,
    )
    vl = vllm_rows[0]
    table = pd.DataFrame([hf, *vllm_rows]).set_index("engine")
    print(table.to_string(float_format="{:.2f}".format))
    if args.constrained:
        cost = vllm_rows[1]["output_tokens_per_s"] / vl["output_tokens_per_s"]
        print(f"\nconstrained / free output tokens/s: {cost:.2f}")
    if args.throughput_out:
        rate = engine_throughput(vl, vllm_rows[-1], Path(args.model_dir).name, args.dtype)
        write_throughput(rate, args.throughput_out)
        print(f"\nthroughput: {rate.describe()} -> {args.throughput_out}")
    print(
        f"\nspeed-up (prompts/s): {vl['prompts_per_s'] / hf['prompts_per_s']:.1f}x   "
        f"(tokens/s: {vl['tokens_per_s'] / hf['tokens_per_s']:.1f}x, "
        f"output tokens/s: {vl['output_tokens_per_s'] / hf['output_tokens_per_s']:.1f}x)"
    )


if __name__ == "__main__":
    main()
