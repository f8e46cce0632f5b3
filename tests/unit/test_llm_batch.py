"""The one generation loop: de-duplication, chunked commits, lazy engine start, resume."""

import json

import pytest

from utilann.llm.batch import CachedGenerator, Request
from utilann.llm.cache import GenerationCache, ModelIdentity, request_key
from utilann.llm.engine import (
    PROMPT_TOO_LONG,
    SCORE_SAMPLING,
    SCORED,
    Generation,
    continuation_logprobs,
)

IDENTITY = ModelIdentity("m", "sha256:0", "0.32.0", "bfloat16")
SAMPLING = {"temperature": 0.0, "max_tokens": 8}


class EchoBackend:
    """Answers each prompt with its last message; records every engine call; can fail."""

    max_model_len = 4096

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    def chat(self, conversations, sampling):
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("engine died")
        assert len(sampling) == len(conversations)
        self.calls.append([c[-1]["content"] for c in conversations])
        return [
            Generation("", 10_000, 0, PROMPT_TOO_LONG)
            if "TOOLONG" in c[-1]["content"]
            else Generation(f"echo {c[-1]['content']}", 4, 2, "stop")
            for c in conversations
        ]


def request(text: str, template: str = "t@0", sampling=SAMPLING) -> Request:
    return Request(template, [{"role": "user", "content": text}], sampling)


class Starter:
    """A backend factory that counts how often the engine is started."""

    def __init__(self, backend):
        self.backend, self.starts = backend, 0

    def __call__(self):
        self.starts += 1
        return self.backend


def generator(tmp_path, backend, chunk_size=2, writer="w"):
    cache = GenerationCache(tmp_path / "cache", writer)
    starter = Starter(backend)
    return CachedGenerator(cache, IDENTITY, starter, chunk_size), starter


def test_outcomes_in_input_order_with_repeats_generated_once(tmp_path):
    backend = EchoBackend()
    gen, starter = generator(tmp_path, backend, chunk_size=2)
    texts = ["a", "b", "a", "c", "b", "d"]
    outcomes = gen.generate([request(t) for t in texts])
    assert [o.generation.text for o in outcomes] == [f"echo {t}" for t in texts]
    assert backend.calls == [["a", "b"], ["c", "d"]]  # distinct prompts, chunks of 2
    assert [o.from_cache for o in outcomes] == [False, False, True, False, True, False]
    assert outcomes[0].key == outcomes[2].key != outcomes[1].key
    assert starter.starts == 1 and gen.started and gen.generated == 4


def test_template_and_sampling_are_part_of_the_request(tmp_path):
    backend = EchoBackend()
    gen, _ = generator(tmp_path, backend, chunk_size=10)
    gen.generate([request("a"), request("a", template="t@1"), request("a", sampling={})])
    assert backend.calls == [["a", "a", "a"]]


def test_rerun_is_served_from_the_cache_without_starting_the_engine(tmp_path):
    first, _ = generator(tmp_path, EchoBackend())
    before = first.generate([request(t) for t in "abc"])
    first.cache.close()
    backend = EchoBackend()
    again, starter = generator(tmp_path, backend, writer="other")  # reads the first file
    after = again.generate([request(t) for t in "cab"])
    assert starter.starts == 0 and not again.started and backend.calls == []
    assert all(o.from_cache for o in after)
    assert [o.generation for o in after] == [
        before[2].generation,
        before[0].generation,
        before[1].generation,
    ]
    assert after[1].gen_seconds == before[0].gen_seconds  # the cost it had when generated


def test_each_chunk_is_committed_and_a_resume_regenerates_only_the_rest(tmp_path):
    texts = [str(i) for i in range(7)]
    dying, _ = generator(tmp_path, EchoBackend(fail_on_call=3), chunk_size=2)
    with pytest.raises(RuntimeError, match="engine died"):
        dying.generate([request(t) for t in texts])
    assert dying.cache.count() == 4  # chunks 1 and 2 were committed before the crash
    dying.cache.close()

    backend = EchoBackend()
    resumed, _ = generator(tmp_path, backend, chunk_size=2)
    outcomes = resumed.generate([request(t) for t in texts])
    assert backend.calls == [["4", "5"], ["6"]]  # the same chunks as an uninterrupted run
    assert [o.from_cache for o in outcomes] == [True] * 4 + [False] * 3
    assert [o.generation.text for o in outcomes] == [f"echo {t}" for t in texts]


def test_prompts_too_long_are_returned_but_not_cached(tmp_path, caplog):
    gen, _ = generator(tmp_path, EchoBackend())
    outcomes = gen.generate([request("TOOLONG"), request("fine")], desc="relsel")
    assert outcomes[0].generation.finish_reason == PROMPT_TOO_LONG
    assert list(gen.cache.get_many([o.key for o in outcomes])) == [outcomes[1].key]
    assert (
        "relsel: 1 of 2 prompts do not fit max_model_len 4096 (longest 10000 tokens)" in caplog.text
    )


def test_engine_seconds_are_shared_by_tokens(tmp_path):
    gen, _ = generator(tmp_path, EchoBackend(), chunk_size=4)
    outcomes = gen.generate([request(t) for t in "ab"])
    assert outcomes[0].gen_seconds == pytest.approx(outcomes[1].gen_seconds)
    assert sum(o.gen_seconds for o in outcomes) == pytest.approx(gen.engine_seconds)


def test_a_backend_returning_too_few_outputs_is_an_error(tmp_path):
    class Broken(EchoBackend):
        def chat(self, conversations, sampling):
            return []

    gen, _ = generator(tmp_path, Broken())
    with pytest.raises(RuntimeError, match="0 outputs for 2 prompts"):
        gen.generate([request("a"), request("b")])
    with pytest.raises(ValueError, match="chunk_size"):
        CachedGenerator(gen.cache, IDENTITY, Broken, chunk_size=0)


class ScoringBackend(EchoBackend):
    """EchoBackend that also scores: each continuation token (word) gets -1 per letter."""

    def __init__(self):
        super().__init__()
        self.scored: list[list[str]] = []

    def score(self, conversations, sampling):
        assert all(s == SCORE_SAMPLING for s in sampling)
        self.scored.append([c[-1]["content"] for c in conversations])
        return [
            Generation(json.dumps([-len(w) for w in c[-1]["content"].split()]), 9, 1, SCORED)
            for c in conversations
        ]


def scoring(text: str, answer: str) -> Request:
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    return Request("t@0", messages, SCORE_SAMPLING, mode="score")


def test_score_requests_go_to_the_backends_scorer_and_are_cached(tmp_path):
    backend = ScoringBackend()
    gen, starter = generator(tmp_path, backend, chunk_size=8)
    requests = [request("a"), scoring("q", "ab c"), request("b"), scoring("q", "xyz")]
    outcomes = gen.generate(requests)
    assert backend.calls == [["a", "b"]] and backend.scored == [["ab c", "xyz"]]
    assert [continuation_logprobs(o.generation) for o in outcomes[1::2]] == [[-2, -1], [-3]]
    assert outcomes[0].generation.text == "echo a"
    # a second run is served from the cache, without an engine
    again, starter2 = generator(tmp_path, ScoringBackend(), chunk_size=8, writer="w2")
    assert [o.from_cache for o in again.generate(requests)] == [True] * 4 and not starter2.starts


def test_the_mode_is_part_of_the_key_and_generation_keys_do_not_change():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    generate = request_key(IDENTITY, "t@0", SCORE_SAMPLING, messages)
    assert generate == request_key(IDENTITY, "t@0", SCORE_SAMPLING, messages, "generate")
    assert generate != request_key(IDENTITY, "t@0", SCORE_SAMPLING, messages, "score")
    with pytest.raises(ValueError, match="mode"):
        request_key(IDENTITY, "t@0", SCORE_SAMPLING, messages, "embed")


def test_continuation_logprobs_rejects_a_generation():
    with pytest.raises(ValueError, match="not a scored continuation"):
        continuation_logprobs(Generation("hello", 3, 1, "stop"))
