"""Quantized GGUF models end to end: edgecore vs llama.cpp on the same files.

    python bench/bench_quant.py [--models gpt2-small,llama-125m,smollm2,gemma3] [--types f32,f16,q8_0,q4_0,q4_1]
                                [--threads 1,2] [--prompt 128] [--new 32] [--rounds 3] [--workdir DIR]

Models: random-weight GPT-2-small (124M) and Llama-125M shapes (hidden 768,
12 layers, 12 heads, FFN 2048, vocab 32000, untied head), built with NumPy
as Hugging Face F32 directories, and the real SmolLM2-135M-Instruct
(`edgecore pull smollm2`, or $EDGECORE_TEST_MODELS/smollm2.gguf), whose
Q4_1 file is dequantized into such a directory and also benchmarked as
shipped ("orig"), and the real Gemma 3 270M (`edgecore pull gemma3`), as
shipped only (Q4_K_M; `edgecore quantize` does not write gemma3). Every GGUF file is written by `edgecore quantize` (the
output head and embedding in the same type) and measured, then deleted, so
disk use stays at one model; except --types q4_k_m, the k-quant mix most
GGUF users run, which llama.cpp's own `llama-quantize` makes from our f32
GGUF (needs that binary beside llama-bench; a model whose width is not a
multiple of 256, as SmolLM2's 576, gets Q5_0 where k-quants do not fit).

Per file, thread count and activation precision (--act: q8x2, the engine's
default, and/or q8; llama.cpp's own is q8), each in a fresh process: prefill of a
128-token prompt (tok/s), decode tok/s after it (a new random prompt each
round, so no KV prefix is reused), and the process's peak RSS (ru_maxrss
from wait4 in a small launcher process, the same measure for llama-bench). The decode floor is the
weight bytes one token reads (every tensor but the embedding rows not
looked up) over a streaming read bandwidth: the best of several NumPy
reductions over a 256 MiB buffer (uint64 sum, uint8 max, count_nonzero),
since on some hosts the sum alone is compute-bound below the memory's rate.
llama.cpp: `llama-bench -p 128 -n 128 -d 0,128 -t T -r 3 -o json` on the
same file ($LLAMA_CPP_BIN, else /work/llamacpp/bin): pp128 at depth 0 is
its prefill, tg128 at depth 128 its decode after a 128-token prompt. Columns
it could not fill say "not measured". Writes bench/results/quant.json (--out NAME:
NAME.json; quant-avx512.json is a run on an AVX-512 Xeon, quant.json on AMD Zen 3,
quant-zen4.json on AMD Zen 4, quant-smollm2-zen4-act.json SmolLM2 there with both
activation precisions: --models smollm2 --types q8_0,q4_0 --act q8x2,q8, and
quant-smollm2-q4km-zen4.json the same with --types q4_k_m).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare, real_model, table, write_json  # noqa: E402

MiB = 1 << 20
LLAMA_BIN = Path(os.environ.get("LLAMA_CPP_BIN", "/work/llamacpp/bin"))
# mixes `edgecore quantize` does not write: llama.cpp's llama-quantize makes
# them from our f32 GGUF of the same model (name -> its type argument)
LLAMA_MADE = {"q4_k_m": "Q4_K_M"}


def llama_quantize(src_dir: Path, out: Path, kind: str) -> str | None:
    """out as llama.cpp's `llama-quantize` makes it (via an f32 GGUF that
    `edgecore quantize` writes); None, or why it could not be made."""
    from edgecore.quantize import quantize_model

    tool = LLAMA_BIN / "llama-quantize"
    if not tool.exists():
        return f"no llama-quantize at {tool} (build that target of llama.cpp)"
    f32 = out.with_suffix(".f32.gguf")
    quantize_model(src_dir, f32, "f32", force=True)
    try:
        r = subprocess.run([str(tool), str(f32), str(out), kind, "2"], capture_output=True, text=True)
    finally:
        f32.unlink()
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return f"llama-quantize exited {r.returncode}: {lines[-1] if lines else ''}"
    return None

CHILD = r"""
import json, sys
import numpy as np
from edgecore import Engine
path = sys.argv[1]
threads, prompt_n, new, rounds = (int(a) for a in sys.argv[2:6])
try:
    engine = Engine(path, threads=threads, context=prompt_n + new + 8, act_precision=sys.argv[6])
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})); sys.exit(0)
with engine:
    vocab = engine.spec.vocab_size
    rng = np.random.default_rng(0)
    engine.generate([int(t) for t in rng.integers(0, vocab, 8)], max_new_tokens=4, temperature=0)  # warm-up
    prefill, decode, tokens = [], [], []
    for r in range(rounds):
        prompt = [int(t) for t in rng.integers(0, vocab, prompt_n)]
        s = engine.generate(prompt, max_new_tokens=new, temperature=0).stats
        prefill.append(s.prefill_tokens_per_s)
        decode.append(s.decode_tokens_per_s)
        tokens.append(s.new_tokens)
print(json.dumps({"prefill_tps": float(np.median(prefill)), "decode_tps": float(np.median(decode)),
                  "new_tokens": tokens}))
"""


# ---- sources ----------------------------------------------------------------

def _save_dir(path: Path, tensors: dict, config: dict, tokenizer=None) -> Path:
    """tokenizer: a `tokenizers.Tokenizer` to save (default: the small one below)."""
    from edgecore.weights import save_safetensors

    path.mkdir(parents=True, exist_ok=True)
    save_safetensors(path / "model.safetensors", tensors)
    (path / "config.json").write_text(json.dumps(config))
    if tokenizer is None:
        _save_tokenizer(path)
    else:
        tokenizer.save(str(path / "tokenizer.json"))
    return path


def _save_tokenizer(path: Path) -> None:
    """A small byte-level BPE (llama.cpp needs a vocabulary to load a file;
    `edgecore quantize` pads it to the model's vocab_size). The prompts are
    random ids, so which tokenizer it is does not matter."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog", "edge devices run small language models"] * 50
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                      show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(path / "tokenizer.json"))


def build_gpt2_small(path: Path) -> Path:
    rng = np.random.default_rng(0)
    d, layers, vocab, ctx = 768, 12, 50257, 1024

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    t = {"transformer.wte.weight": w(vocab, d), "transformer.wpe.weight": w(ctx, d),
         "transformer.ln_f.weight": np.ones(d, np.float32), "transformer.ln_f.bias": np.zeros(d, np.float32)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        t.update({p + "ln_1.weight": np.ones(d, np.float32), p + "ln_1.bias": np.zeros(d, np.float32),
                  p + "ln_2.weight": np.ones(d, np.float32), p + "ln_2.bias": np.zeros(d, np.float32),
                  p + "attn.c_attn.weight": w(d, 3 * d), p + "attn.c_attn.bias": w(3 * d),
                  p + "attn.c_proj.weight": w(d, d), p + "attn.c_proj.bias": w(d),
                  p + "mlp.c_fc.weight": w(d, 4 * d), p + "mlp.c_fc.bias": w(4 * d),
                  p + "mlp.c_proj.weight": w(4 * d, d), p + "mlp.c_proj.bias": w(d)})
    return _save_dir(path, t, {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab,
                               "n_embd": d, "n_layer": layers, "n_head": 12, "n_positions": ctx,
                               "layer_norm_epsilon": 1e-5, "bos_token_id": 0, "eos_token_id": 1})


def build_llama_125m(path: Path) -> Path:
    rng = np.random.default_rng(0)
    d, inter, layers, vocab = 768, 2048, 12, 32000

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    t = {"model.embed_tokens.weight": w(vocab, d), "model.norm.weight": np.ones(d, np.float32),
         "lm_head.weight": w(vocab, d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": np.ones(d, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(d, np.float32),
                  p + "self_attn.q_proj.weight": w(d, d), p + "self_attn.k_proj.weight": w(d, d),
                  p + "self_attn.v_proj.weight": w(d, d), p + "self_attn.o_proj.weight": w(d, d),
                  p + "mlp.gate_proj.weight": w(inter, d), p + "mlp.up_proj.weight": w(inter, d),
                  p + "mlp.down_proj.weight": w(d, inter)})
    return _save_dir(path, t, {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
                               "hidden_size": d, "intermediate_size": inter, "num_hidden_layers": layers,
                               "num_attention_heads": 12, "num_key_value_heads": 12,
                               "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                               "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1})


def build_smollm2(path: Path, gguf_path: Path) -> Path:
    """The shipped GGUF dequantized (edgecore's dequantizer, bit for bit
    gguf's) into a Hugging Face F32 directory: llama.cpp's Q/K row order
    undone, the tied embedding kept tied, the model's own tokenizer (so the
    requantized files are SmolLM2 in text too, not only in shape)."""
    from edgecore import ops
    from edgecore.models.tokenizer_gguf import tokenizer_from_gguf
    from edgecore.weights import load_gguf

    f = load_gguf(gguf_path)
    m = f.metadata
    heads, kv = m["llama.attention.head_count"], m["llama.attention.head_count_kv"]

    def dense(name):
        info, view = f.info(name), f[name]
        if info.dtype == "F32":
            return np.array(view)
        return ops.dequantize(view, wtype=info.dtype.lower())

    def unpermute(x, h):
        return x.reshape(h, x.shape[0] // h // 2, 2, x.shape[1]).swapaxes(1, 2).reshape(x.shape)

    layers = m["llama.block_count"]
    t = {"model.embed_tokens.weight": dense("token_embd.weight"), "model.norm.weight": dense("output_norm.weight")}
    names = {"attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for i in range(layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = dense(b + "attn_norm.weight")
        t[p + "post_attention_layernorm.weight"] = dense(b + "ffn_norm.weight")
        t[p + "self_attn.q_proj.weight"] = unpermute(dense(b + "attn_q.weight"), heads)
        t[p + "self_attn.k_proj.weight"] = unpermute(dense(b + "attn_k.weight"), kv)
        for g, h in names.items():
            t[f"{p}{h}.weight"] = dense(f"{b}{g}.weight")
    d = t["model.embed_tokens.weight"].shape[1]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "vocab_size": t["model.embed_tokens.weight"].shape[0], "hidden_size": d,
              "intermediate_size": m["llama.feed_forward_length"], "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv,
              "max_position_embeddings": m["llama.context_length"],
              "rms_norm_eps": m["llama.attention.layer_norm_rms_epsilon"], "rope_theta": m["llama.rope.freq_base"],
              "tie_word_embeddings": "output.weight" not in f, "bos_token_id": m.get("tokenizer.ggml.bos_token_id"),
              "eos_token_id": m.get("tokenizer.ggml.eos_token_id")}
    tokenizer = tokenizer_from_gguf(m, str(gguf_path)).backend
    f.close()
    return _save_dir(path, t, config, tokenizer)


# ---- measurements -----------------------------------------------------------

def stream_read_bandwidth(n_threads: int, nbytes: int = 256 * MiB, rounds: int = 5) -> tuple[float, str]:
    """(bytes/s, which reduction) for the fastest of several single-pass
    NumPy reductions over one buffer split across n_threads (NumPy releases
    the GIL): each is a lower bound on the read bandwidth, and the fastest
    is the least compute-bound on this CPU."""
    from concurrent.futures import ThreadPoolExecutor

    buf = np.ones(nbytes // 8, np.uint64)
    parts = np.array_split(buf, n_threads)
    reducers = {"uint64 sum": np.sum, "uint8 max": lambda p: p.view(np.uint8).max(),
                "count_nonzero": lambda p: np.count_nonzero(p.view(np.uint8))}
    with ThreadPoolExecutor(n_threads) as ex:
        probes = {name: (lambda f=f: list(ex.map(f, parts))) for name, f in reducers.items()}
        times = compare(probes, rounds=rounds, min_time=0.05)
    best = min(times, key=times.get)
    return buf.nbytes / times[best], best


def tensor_types(path: Path) -> set[str]:
    """The weight types of the file's tensors (lower case, as ops names them)."""
    from edgecore.weights import load_gguf

    with load_gguf(path) as f:
        return {f.info(n).dtype.lower() for n in f}


def bytes_per_token(path: Path) -> int:
    """Weight bytes one decode step reads: all tensors except the embedding
    tables (one row each; a tied embedding is read whole as the head)."""
    from edgecore.weights import load_gguf

    with load_gguf(path) as f:
        tied = "output.weight" not in f
        skip = {"position_embd.weight"} | (set() if tied else {"token_embd.weight"})
        return sum(f.info(n).nbytes for n in f if n not in skip)


# Runs argv[2:] and writes {"rc", "maxrss_kb"} of it to argv[1]. The peak RSS (ru_maxrss) of a process
# carries over exec from the address space it was forked or vforked from, so a child started straight from
# this benchmark (hundreds of MiB of source weights) would report at least the benchmark's own peak; started
# from this small launcher it carries at most the launcher's few MiB.
LAUNCHER = r"""
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, f)
"""


def _run_rusage(cmd: list[str], timeout: float) -> tuple[int, str, str, int]:
    """(returncode, stdout, stderr, peak RSS bytes of the command)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rusage.json"
        try:
            proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(result), *cmd], capture_output=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return -9, "", f"timed out after {timeout:.0f} s", 0
        if not result.exists():
            return proc.returncode, "", proc.stderr.decode(errors="replace") or "launcher failed", 0
        usage = json.loads(result.read_text())
        return usage["rc"], proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), \
            usage["maxrss_kb"] * 1024


def ours(path: Path, threads: int, prompt: int, new: int, rounds: int, act: str) -> dict:
    from edgecore._child import python_command

    rc, out, err, peak = _run_rusage(python_command(CHILD, str(path), str(threads), str(prompt), str(new),
                                                    str(rounds), act), timeout=1800)
    lines = out.strip().splitlines()
    if rc != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {rc}: {tail[:200]}"}
    result = json.loads(lines[-1])
    if "error" not in result:
        result["peak_rss"] = peak
    return result


def llama_cpp(path: Path, threads: int, prompt: int, new: int) -> dict:
    bench = LLAMA_BIN / "llama-bench"
    if not bench.exists():
        return {"error": f"not measured: no {bench}"}
    cmd = [str(bench), "-m", str(path), "-p", str(prompt), "-n", str(new), "-d", f"0,{prompt}", "-t", str(threads),
           "-r", "3", "-o", "json"]
    rc, out, err, peak = _run_rusage(cmd, timeout=1800)
    if rc != 0:
        return {"error": f"llama-bench exit {rc}: {(err.strip().splitlines() or [''])[-1][:200]}"}
    result = {"peak_rss": peak}
    for r in json.loads(out):
        if r.get("n_prompt") and not r.get("n_gen") and not r.get("n_depth"):
            result["prefill_tps"] = r["avg_ts"]
        if r.get("n_gen") and r.get("n_depth") == prompt:
            result["decode_tps"] = r["avg_ts"]
    return result


# ---- main -------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="gpt2-small,llama-125m,smollm2")
    ap.add_argument("--types", default="f32,f16,q8_0,q4_0,q4_1")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--act", default="q8x2", help="edgecore activation precisions to run (q8x2, q8)")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", help="where sources and GGUF files are written (default: a temporary directory)")
    ap.add_argument("--out", default="quant",
                    help="results file name in bench/results (default: quant; another name keeps "
                    "a second host's run beside the first)")
    args = ap.parse_args()

    from edgecore.quantize import quantize_model

    thread_counts = [int(t) for t in args.threads.split(",")]
    # "orig" (SmolLM2's shipped file) is always measured for smollm2; it is not a type to write
    types = [t for t in args.types.split(",") if t != "orig"]
    acts = args.act.split(",")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-quant-"))
    work.mkdir(parents=True, exist_ok=True)
    bandwidth = {n: stream_read_bandwidth(n) for n in thread_counts}
    for n, (bw, probe) in bandwidth.items():
        print(f"streaming read bandwidth, {n} thread(s): {bw / 1e9:.1f} GB/s ({probe})", flush=True)

    rows = []
    ran: set[str] = set()  # the weight types of every file measured
    builders = {"gpt2-small": build_gpt2_small, "llama-125m": build_llama_125m, "smollm2": None, "gemma3": None}
    try:
        for model in args.models.split(","):
            if model not in builders:
                raise SystemExit(f"bench_quant: unknown model {model!r}; choose from {', '.join(builders)}")
            src_dir = work / f"{model}-hf"
            files: list[tuple[str, Path, bool]] = []  # (type, file, delete after)
            if model in ("smollm2", "gemma3"):
                shipped = real_model(model)
                if shipped is None:
                    print(f"{model}: not measured: no model file (run `edgecore pull {model}`)", flush=True)
                    continue
                files.append(("orig", shipped, False))
            if model == "gemma3":  # `edgecore quantize` writes no gemma3 files: the shipped one only
                src_dir.mkdir(parents=True, exist_ok=True)
            elif model == "smollm2":
                build_smollm2(src_dir, shipped)
            else:
                builders[model](src_dir)
            if model != "gemma3":
                files += [(t, work / f"{model}-{t}.gguf", True) for t in types]
            for wtype, path, made in files:
                q_s = None
                if made:
                    t0 = time.perf_counter()
                    if wtype in LLAMA_MADE:
                        why = llama_quantize(src_dir, path, LLAMA_MADE[wtype])
                        if why:
                            print(f"{model} {wtype}: not measured: {why}", flush=True)
                            continue
                    else:
                        quantize_model(src_dir, path, wtype, force=True)
                    q_s = time.perf_counter() - t0
                per_token = bytes_per_token(path)
                ran |= tensor_types(path)
                for n in thread_counts:
                    b = llama_cpp(path, n, args.prompt, args.new)
                    for act in acts:
                        row = {"model": model, "type": wtype, "threads": n, "act": act,
                               "file_MiB": path.stat().st_size / MiB, "quantize_s": q_s,
                               "weight_MiB_per_token": per_token / MiB}
                        a = ours(path, n, args.prompt, args.new, args.rounds, act)
                        row["ours"], row["llama_cpp"] = a, b
                        row["floor_tps"] = bandwidth[n][0] / per_token
                        row["prefill"] = a.get("prefill_tps", "not measured")
                        row["decode"] = a.get("decode_tps", "not measured")
                        row["rss"] = a["peak_rss"] / MiB if "peak_rss" in a else "not measured"
                        row["ll_prefill"] = b.get("prefill_tps", "not measured")
                        row["ll_decode"] = b.get("decode_tps", "not measured")
                        row["ll_rss"] = b["peak_rss"] / MiB if "peak_rss" in b else "not measured"
                        for key, num, den in (("prefill_ratio", "prefill", "ll_prefill"),
                                              ("decode_ratio", "decode", "ll_decode"),
                                              ("rss_ratio", "rss", "ll_rss"), ("of_floor", "decode", "floor_tps")):
                            if isinstance(row[num], float) and isinstance(row[den], float):
                                row[key] = row[num] / row[den]
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                if made:
                    path.unlink()
            shutil.rmtree(src_dir)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    for r in rows:  # q4_0 vs our own f32 of the same model and thread count
        f32 = next((x for x in rows if x["model"] == r["model"] and x["type"] == "f32"
                    and x["threads"] == r["threads"] and x["act"] == r["act"]), None)
        if f32 and isinstance(r["decode"], float) and isinstance(f32["decode"], float):
            r["vs_f32"] = r["decode"] / f32["decode"]
    print(table(rows, [("model", "model"), ("type", "type"), ("threads", "thr"), ("act", "act"), ("file_MiB", "MiB"),
                       ("prefill", "prefill tok/s"), ("ll_prefill", "llama.cpp"), ("prefill_ratio", "/ll"),
                       ("decode", "decode tok/s"), ("ll_decode", "llama.cpp"), ("decode_ratio", "/ll"),
                       ("floor_tps", "floor tok/s"), ("of_floor", "/floor"), ("vs_f32", "/f32"),
                       ("rss", "RSS MiB"), ("ll_rss", "llama.cpp"), ("rss_ratio", "/ll")]))
    if any("error" in r["ours"] for r in rows):
        print(f"edgecore not measured: {next(r['ours']['error'] for r in rows if 'error' in r['ours'])}")
    from edgecore import ops

    kernels = {t: ops.kernel_dispatch(t) for t in sorted(ran - {"f32"})}  # which micro-kernels ran each type
    print("kernels: " + "; ".join(f"{t} gemm {k['gemm']}" for t, k in kernels.items()))
    payload = {"rows": rows, "kernels": kernels, "bandwidth_Bps": {n: v[0] for n, v in bandwidth.items()},
               "bandwidth_probe": {n: v[1] for n, v in bandwidth.items()}, "prompt": args.prompt, "new": args.new,
               "llama_cpp_bin": str(LLAMA_BIN)}
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
