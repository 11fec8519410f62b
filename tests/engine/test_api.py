"""Engine behaviour beyond the math: argument checking, sampling, stop
conditions, streaming, and clear errors for broken model directories."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build, reference_greedy, rewrite_config  # noqa: E402

from edgecore import Engine  # noqa: E402
from edgecore.models import ModelError  # noqa: E402
from edgecore.weights import load_safetensors, save_safetensors  # noqa: E402


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    """A byte-level GPT-2 (vocab 256) with edgecore's byte tokenizer."""
    path = tmp_path_factory.mktemp("bytes")
    ref = build("gpt2", path, vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=96,
                bos_token_id=None, eos_token_id=None)
    rewrite_config(path, edgecore_tokenizer="bytes")
    return path, ref


def test_text_prompt_streams_and_decodes(byte_model):
    path, ref = byte_model
    pieces = []
    with Engine(path) as engine:
        result = engine.generate("The list", max_new_tokens=12, stream=lambda t, piece: pieces.append((t, piece)))
    assert result.tokens == reference_greedy(ref, list(b"The list"), 12)
    assert [t for t, _ in pieces if t is not None] == result.tokens  # None: text held to the end
    assert "".join(p for _, p in pieces) == result.text
    assert result.text == bytes(result.tokens).decode("utf-8", errors="replace")
    s = result.stats
    assert s.prompt_tokens == 8 and s.new_tokens == 12 and s.finish_reason == "length"
    assert s.prefill_ms > 0 and s.decode_tokens_per_s > 0 and s.peak_rss_bytes > 0


def test_sampling_is_seeded_and_top_k_1_is_greedy(byte_model):
    path, _ = byte_model
    with Engine(path) as engine:
        a = engine.generate([65, 66], max_new_tokens=20, temperature=1.5, seed=1).tokens
        b = engine.generate([65, 66], max_new_tokens=20, temperature=1.5, seed=1).tokens
        c = engine.generate([65, 66], max_new_tokens=20, temperature=1.5, seed=2).tokens
        greedy = engine.generate([65, 66], max_new_tokens=20).tokens
        top1 = engine.generate([65, 66], max_new_tokens=20, temperature=0.7, top_k=1, seed=5).tokens
        nucleus = engine.generate([65, 66], max_new_tokens=20, temperature=0.7, top_p=1e-6, seed=5).tokens
    assert a == b and a != c
    assert top1 == greedy == nucleus


def test_stop_strings_and_ids(byte_model):
    path, _ = byte_model
    with Engine(path) as engine:
        free = engine.generate([65, 66], max_new_tokens=30)
        stop_id = free.tokens[5]
        by_id = engine.generate([65, 66], max_new_tokens=30, stop=[stop_id])
        assert by_id.tokens == free.tokens[:free.tokens.index(stop_id)]
        assert by_id.stats.finish_reason == "stop"
        text = free.text
        needle = text[3:5]
        by_text = engine.generate([65, 66], max_new_tokens=30, stop=needle)
        assert by_text.stats.finish_reason == "stop"
        assert needle not in by_text.text and text.startswith(by_text.text)


def test_eos_stops(tmp_path):
    build("gpt2", tmp_path, vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=96)
    with Engine(tmp_path) as engine:
        free = engine.generate([1, 2, 3], max_new_tokens=20)
    cut = next(i for i in range(1, 20) if free.tokens[i] not in free.tokens[:i])  # first new token value
    rewrite_config(tmp_path, eos_token_id=free.tokens[cut])
    with Engine(tmp_path) as engine:
        result = engine.generate([1, 2, 3], max_new_tokens=20)
    assert result.tokens == free.tokens[:cut] and result.stats.finish_reason == "eos"


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1), "temperature must be"),
    (dict(temperature=float("nan")), "temperature must be"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=-2), r"max_new_tokens must be an integer >= 0, or -1"),
    (dict(min_p=1.5), r"min_p must be in \[0, 1\]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be a finite number > 0"),
    (dict(max_new_tokens=1000), "exceed the context of 96 tokens"),
    (dict(stop=[""]), "stop must be non-empty strings"),
])
def test_generate_rejects(byte_model, kwargs, message):
    path, _ = byte_model
    with Engine(path) as engine, pytest.raises(ValueError, match=message):
        engine.generate("hi", **{"max_new_tokens": 4, **kwargs})


def test_bad_token_ids(byte_model):
    path, _ = byte_model
    with Engine(path) as engine:
        with pytest.raises(ValueError, match=r"token id 300 at position 1 is outside the vocabulary \[0, 256\)"):
            engine.forward([1, 300])
        with pytest.raises(ValueError, match="non-empty 1-D sequence of integers"):
            engine.forward([])
        with pytest.raises(ValueError, match="non-empty 1-D sequence of integers"):
            engine.forward([1.5, 2.0])


def test_text_needs_a_tokenizer(tmp_path):
    build("gpt2", tmp_path, vocab_size=256, n_embd=64, n_layer=1, n_head=4, n_positions=32)
    with Engine(tmp_path) as engine, pytest.raises(ModelError, match="has no tokenizer; pass the prompt as token ids"):
        engine.generate("hello")


def test_engine_arguments(byte_model):
    path, _ = byte_model
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings"):
        Engine(path, context=1000)
    with pytest.raises(ValueError, match="memory budget|size|accepted"):
        Engine(path, memory_budget="lots")
    with pytest.raises(ValueError, match="strategy must be one of"):
        Engine(path, strategy="fastest")


# ---- broken model directories -------------------------------------------------


def copy_model(src, dst, transform):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    with load_safetensors(src / "model.safetensors") as st:
        tensors = {name: np.array(st[name]) for name in st}
    save_safetensors(dst / "model.safetensors", transform(tensors))


def test_missing_tensor_is_named(byte_model, tmp_path):
    path, _ = byte_model
    bad = tmp_path / "bad"
    copy_model(path, bad, lambda t: {k: v for k, v in t.items() if k != "transformer.h.1.mlp.c_fc.weight"})
    want = r"missing tensor transformer.h.1.mlp.c_fc.weight \(expected shape \[64, 256\]\)"
    with pytest.raises(ModelError, match=want):
        Engine(bad)


def test_wrong_shape_and_dtype_are_named(byte_model, tmp_path):
    path, _ = byte_model
    bad = tmp_path / "bad"

    def break_it(t):
        t["transformer.h.0.ln_1.weight"] = np.ones(63, np.float32)
        t["transformer.h.0.ln_1.bias"] = np.zeros(64, np.int32)
        return t

    copy_model(path, bad, break_it)
    with pytest.raises(ModelError) as info:
        Engine(bad)
    assert "tensor transformer.h.0.ln_1.weight has shape [63], expected [64]" in str(info.value)
    assert "tensor transformer.h.0.ln_1.bias has dtype I32" in str(info.value)


def test_unsupported_architecture_and_missing_files(tmp_path):
    with pytest.raises(ModelError, match="not a model directory"):
        Engine(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="architecture 'BertModel' is not supported"):
        Engine(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable JSON config"):
        Engine(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_head": 4,
                                                      "n_layer": 1, "vocab_size": 10, "n_positions": 8}))
    with pytest.raises(ModelError, match="no model.safetensors"):
        Engine(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "n_embd": 64,
                                                      "n_head": 4, "n_layer": 0, "vocab_size": 10,
                                                      "n_positions": 8}))
    with pytest.raises(ModelError, match="n_layer must be a positive integer"):
        Engine(tmp_path)


@pytest.mark.parametrize("rope, message", [
    (dict(rope_theta="x"), "rope_theta must be a positive number, got 'x'"),
    (dict(rope_scaling=[2.0]), r"rope_scaling must be an object, got \[2.0\]"),
    (dict(rope_scaling={"rope_type": "linear", "factor": -1}), "factor must be a positive number, got -1"),
    (dict(rope_parameters={"rope_theta": 1e4, "rope_type": "llama3", "original_max_position_embeddings": 0}),
     "original_max_position_embeddings must be a positive integer, got 0"),
])
def test_bad_rope_settings_are_one_model_error(rope, message):
    from edgecore.models.spec import parse_config

    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4,
              "num_hidden_layers": 1, "intermediate_size": 96, "vocab_size": 10, "max_position_embeddings": 8,
              **rope}
    with pytest.raises(ModelError, match=message):
        parse_config(config)
