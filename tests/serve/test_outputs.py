"""The official `openai` client against the server: completions and chat,
streamed and not, each equal to `Engine.generate` for the same request
(greedy, seeded sampling, stop strings, max_tokens), with usage."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import openai  # noqa: E402
from support.serving import paged_loader, serving  # noqa: E402

from edgecore.engine import Engine  # noqa: E402


@pytest.fixture(scope="module")
def demo():
    with Engine("demo") as ref, serving(paged_loader("demo", pages=64), max_batch=4) as (_, url):
        yield ref, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def chat(chat_model):
    with Engine(chat_model) as ref, serving(paged_loader(chat_model, pages=64), "chat-llama", max_batch=4) as (_, url):
        yield ref, openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def streamed_text(stream, chat: bool):
    texts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            piece = choice.delta.content if chat else choice.text
            texts.append(piece or "")
            finish = choice.finish_reason or finish
    return "".join(texts), finish, usage


CASES = [
    dict(max_tokens=24, temperature=0),
    dict(max_tokens=30, temperature=0.9, seed=7),
    dict(max_tokens=30, temperature=1.2, top_k=20, top_p=0.9, seed=123),
    dict(max_tokens=40, temperature=0, stop=["e ", "xyz"]),
]


def api(case: dict) -> dict:
    """The case as client arguments (top_k is not an OpenAI field: extra_body)."""
    out = {k: v for k, v in case.items() if k != "top_k"}
    if "top_k" in case:
        out["extra_body"] = {"top_k": case["top_k"]}
    return out


def expected(ref: Engine, prompt, case: dict):
    want = ref.generate(prompt, max_new_tokens=case["max_tokens"], temperature=case.get("temperature"),
                        top_k=case.get("top_k"), top_p=case.get("top_p"), seed=case.get("seed"),
                        stop=case.get("stop"))
    finish = "length" if want.stats.finish_reason == "length" else "stop"
    return want.text, finish, len(want.tokens)


@pytest.mark.parametrize("case", CASES, ids=["greedy", "seeded", "top-k-p", "stop"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_completions_equal_engine_generate(demo, case, stream):
    ref, client = demo
    prompt = "The list of"
    text, finish, n = expected(ref, prompt, case)
    if stream:
        got = client.completions.create(model="demo", prompt=prompt, stream=True,
                                        stream_options={"include_usage": True}, **api(case))
        got_text, got_finish, usage = streamed_text(got, chat=False)
    else:
        got = client.completions.create(model="demo", prompt=prompt, **api(case))
        got_text, got_finish, usage = got.choices[0].text, got.choices[0].finish_reason, got.usage
    assert (got_text, got_finish) == (text, finish)
    assert usage.completion_tokens == n and usage.prompt_tokens == len(ref.tokenizer.encode(prompt))
    assert usage.total_tokens == usage.prompt_tokens + n


@pytest.mark.parametrize("case", CASES[:2], ids=["greedy", "seeded"])
def test_moe_demo_completions_equal_engine_generate(case):
    with Engine("demo-moe") as ref, serving(paged_loader("demo-moe", pages=64), "demo-moe", max_batch=4) as (_, url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        text, finish, n = expected(ref, "The list of", case)
        got = client.completions.create(model="demo-moe", prompt="The list of", **api(case))
    assert (got.choices[0].text, got.choices[0].finish_reason, got.usage.completion_tokens) == (text, finish, n)


def test_completion_prompt_as_token_ids(demo):
    ref, client = demo
    ids = list(b"Once upon")
    want = ref.generate(ids, max_new_tokens=16, temperature=0)
    got = client.completions.create(model="demo", prompt=ids, max_tokens=16, temperature=0)
    assert got.choices[0].text == want.text and got.usage.prompt_tokens == len(ids)


def test_models_lists_the_served_model(demo):
    _, client = demo
    assert [m.id for m in client.models.list()] == ["demo"]
    assert client.models.retrieve("demo").id == "demo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


@pytest.mark.parametrize("case", CASES[:3], ids=["greedy", "seeded", "top-k-p"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_chat_equal_engine_generate_on_the_chat_template(chat, case, stream):
    ref, client = chat
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Paris?"}]
    ids = ref.tokenizer.apply_chat_template(messages)
    text, finish, n = expected(ref, ids, case)
    if stream:
        got = client.chat.completions.create(model="chat-llama", messages=messages, stream=True,
                                             stream_options={"include_usage": True}, **api(case))
        got_text, got_finish, usage = streamed_text(got, chat=True)
    else:
        got = client.chat.completions.create(model="chat-llama", messages=messages, **api(case))
        got_text, got_finish, usage = got.choices[0].message.content, got.choices[0].finish_reason, got.usage
        assert got.choices[0].message.role == "assistant"
    assert (got_text, got_finish) == (text, finish)
    assert usage.prompt_tokens == len(ids) and usage.completion_tokens == n
