"""`edgecore run` with a chat model (template applied, --raw, --system,
--stop, --prompt-file, --ids, --no-echo, context overflow and --truncate,
stats line) and `edgecore chat` through piped standard input (multi-turn
with the KV cache reused, /reset, /exit, Ctrl-C stopping one answer), on a
random Llama with a Metaspace tokenizer and a ChatML template, against
transformers' tokenizer and generate."""

import io
import json
import re
import signal

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build  # noqa: E402
from support.tokenizers import CHATML, metaspace_bpe, save_dir  # noqa: E402

from edgecore.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat-llama")
    tok = metaspace_bpe()
    save_dir(path, tok, chat_template=CHATML, eos_token="<|im_end|>")
    ref = build("llama", path, vocab_size=tok.get_vocab_size(), max_position_embeddings=256,
                bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("<|im_end|>"))
    from transformers import AutoTokenizer

    return path, ref, AutoTokenizer.from_pretrained(str(path))


def hf_greedy(ref, ids, n):
    with torch.inference_mode():
        out = ref.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(ids):].tolist()


def run_json(capsys, *argv):
    assert main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_applies_the_chat_template(chat_model, capsys):
    path, ref, hf = chat_model
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    want_ids = list(hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))
    out = run_json(capsys, "--model", str(path), "--prompt", "What is 2+2?", "--system", "Be brief.",
                   "--max-new-tokens", "8")
    assert out["chat_template"] and out["prompt_ids"] == want_ids
    assert out["tokens"] == hf_greedy(ref, want_ids, 8)
    raw = run_json(capsys, "--model", str(path), "--prompt", "What is 2+2?", "--raw", "--max-new-tokens", "4")
    assert raw["prompt_ids"] == hf("What is 2+2?")["input_ids"]  # BOS from the tokenizer's template


def test_run_streams_the_answer_alone_and_the_stats(chat_model, capsys):
    path, ref, hf = chat_model
    assert main(["run", "--model", str(path), "--prompt", "Hi", "--max-new-tokens", "6"]) == 0
    out, err = capsys.readouterr()
    ids = list(hf.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                      tokenize=True, return_dict=False))
    new = hf_greedy(ref, ids, 6)
    assert out.rstrip("\n") == hf.decode(ids + new)[len(hf.decode(ids)):]
    assert re.search(r"load \d+\.\d+ s \| prompt \d+ tokens, prefill [\d.]+ ms \([\d.]+ tok/s\)", err)
    # raw mode echoes the prompt (unless --no-echo)
    assert main(["run", "--model", str(path), "--prompt", "Hi", "--raw", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("Hi")
    assert main(["run", "--model", str(path), "--prompt", "Hi", "--raw", "--no-echo", "--max-new-tokens", "3"]) == 0
    assert not capsys.readouterr().out.startswith("Hi")


def test_prompt_file_ids_and_stop(chat_model, tmp_path, capsys):
    path, ref, hf = chat_model
    f = tmp_path / "p.txt"
    f.write_text("Tell me about Paris 🤗", encoding="utf-8")
    a = run_json(capsys, "--model", str(path), "--prompt-file", str(f), "--raw", "--max-new-tokens", "12")
    assert a["prompt_ids"] == hf("Tell me about Paris 🤗")["input_ids"]
    b = run_json(capsys, "--model", str(path), "--ids", ",".join(map(str, a["prompt_ids"])), "--max-new-tokens", "12")
    assert b["tokens"] == a["tokens"] == hf_greedy(ref, a["prompt_ids"], 12)
    text = a["text"]
    stop = text[4:6] if len(text) > 6 and text[4:6].strip() else None
    if stop:
        c = run_json(capsys, "--model", str(path), "--prompt-file", str(f), "--raw", "--max-new-tokens", "12",
                     "--stop", stop, "--stop", "never-there")
        assert c["stats"]["finish_reason"] == "stop" and c["text"] == text[:text.find(stop)]


def test_context_overflow_and_truncate(chat_model, capsys):
    path, ref, hf = chat_model
    long = "word " * 60
    argv = ["run", "--model", str(path), "--prompt", long, "--raw", "--context", "32", "--max-new-tokens", "8"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exceed the context of 32 tokens" in err and "--truncate" in err
    out = run_json(capsys, *argv[1:], "--truncate")
    full = hf(long)["input_ids"]
    assert out["prompt_ids"] == full[-24:] and len(out["tokens"]) == 8


@pytest.mark.parametrize("argv, message", [
    (["--ids", "1,x"], "--ids: expected comma-separated token ids"),
    (["--prompt", "x", "--top-p", "2"], "--top-p: expected a number in (0, 1], got 2.0"),
    (["--prompt", "x", "--max-new-tokens", "-5"], "--max-new-tokens: expected a number of tokens >= 0, or -1"),
    (["--prompt-file", "/nonexistent/p.txt"], "--prompt-file /nonexistent/p.txt: cannot read it"),
    (["--prompt", "x", "--raw", "--system", "s"], "--system is a chat message"),
])
def test_run_flag_errors(chat_model, capsys, argv, message):
    path, _, _ = chat_model
    assert main(["run", "--model", str(path), *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_demo_model_without_template_continues_text(capsys):
    assert main(["run", "--model", "demo", "--prompt", "The list", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("The list")
    assert main(["run", "--model", "demo", "--prompt", "x", "--system", "s"]) == 1
    assert "--system needs a chat template" in capsys.readouterr().err


# ---- chat -------------------------------------------------------------------------


def chat(monkeypatch, capsys, path, lines, *flags):
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    status = main(["chat", "--model", str(path), *flags])
    out, err = capsys.readouterr()
    return status, out, err


def test_chat_turns_reuse_the_cache(chat_model, monkeypatch, capsys):
    path, ref, hf = chat_model
    status, out, err = chat(monkeypatch, capsys, path, ["Hello!", "And then?", "/reset", "Hello!", "/exit",
                                                        "never read"], "--max-new-tokens", "6")
    assert status == 0
    stats = re.findall(r"\[(\d+) prompt tokens reused, (\d+) prefilled", err)
    assert len(stats) == 3 and "(conversation reset)" in err
    (r1, p1), (r2, p2), (r3, p3) = [(int(a), int(b)) for a, b in stats]
    assert r1 == 0 and r2 > p1 // 2 and p2 < r2 + p2  # turn 2 prefills only its own part
    assert r3 >= 1  # after /reset the first turn's prompt is the same again: its prefix is reused
    # the answers are what transformers generates for the templated conversation
    first_ids = list(hf.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False))
    answer = hf.decode(first_ids + hf_greedy(ref, first_ids, 6))[len(hf.decode(first_ids)):]
    lines = out.split("\n")
    assert lines[0] == answer and lines[2] == answer


def test_chat_ctrl_c_stops_the_answer_not_the_session(chat_model, monkeypatch, capsys):
    path, _, _ = chat_model
    import edgecore.cli.chat as chat_cli

    original = chat_cli._answer

    def answer_with_ctrl_c(engine, ids, new_tokens, stop, sampling):
        real_generate = engine.generate

        def generate(*a, **kw):
            stream = kw["stream"]

            def stream_then_interrupt(token, piece):
                stream(token, piece)
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends, mid-answer
            kw["stream"] = stream_then_interrupt
            return real_generate(*a, **kw)

        engine.generate = generate
        try:
            return original(engine, ids, new_tokens, stop, sampling)
        finally:
            del engine.generate

    monkeypatch.setattr(chat_cli, "_answer", answer_with_ctrl_c)
    status, out, err = chat(monkeypatch, capsys, path, ["Hello!", "More?"], "--max-new-tokens", "20")
    assert status == 0 and out.count("(stopped)") == 2
    assert re.findall(r"\| (\d+) tokens, .* \| stop: cancelled", err) == ["1", "1"]


def test_chat_needs_a_template(monkeypatch, capsys):
    status, out, err = chat(monkeypatch, capsys, "demo", ["hi"])
    assert status == 1 and "has no chat template" in err and "Traceback" not in err
