"""`edgecore serve` under load, side by side with llama.cpp's llama-server.

    python bench/bench_serve.py                                  # demo model; llama-server if built
    python bench/bench_serve.py --model smollm2        # llama-server on the same file
    python bench/bench_serve.py --model /path/to/random-llama --concurrency 1,4,8

Each server is started as a subprocess on 127.0.0.1 and driven closed-loop
at concurrency 1, 4, 8 and 16: that many clients, each sending its next
streamed completion (fixed prompt, fixed max_tokens, greedy) as soon as
the previous one ends. Per level: aggregate output tokens/s (all output
tokens / wall time), time to first token and inter-token latency p50/p95
(from SSE chunk arrival times), and for edgecore the share of each engine
tick spent outside engine.step (scheduling, sampling, detokenizing: the
server's own overhead), the mean batch and the share of prompt tokens the
prefix cache supplied, read from /metrics. With --act-precision q8x2,q8
edgecore is served once per activation precision (q8 is llama.cpp's own
contract: 8-bit activation blocks, one pass; q8x2, the default, adds an
8-bit residual pass, twice the integer work), and with --prefix-cache 0,1024
once per prefix cache size. Every client sends the same prompt, so after
the first request a prefix cache (ours, or llama-server's prompt cache)
supplies all but its last token.

llama-server runs with `-np <max concurrency> -cb` (continuous batching,
one slot per client) on the GGUF file when a build is found
($LLAMA_CPP_BIN, else /work/llamacpp/bin); its column is on that model,
which is the same model only when --model is that GGUF. Prints a table and
writes bench/results/serve.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import real_model, table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ("The history of the city begins with a small village on the river, where farmers and traders met "
          "every week to sell grain, cloth and tools. Over the years")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {seconds} s")


def start_edgecore(model: str, max_batch: int, threads: int, kv_pages: int | None,
                   act_precision: str, prefix_cache: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "edgecore", "serve", "--model", model, "--port", str(port), "--max-batch",
           str(max_batch), "--threads", str(threads), "--act-precision", act_precision]
    if kv_pages:
        cmd += ["--kv-pages", str(kv_pages)]
    if prefix_cache != "default":
        cmd += ["--prefix-cache", prefix_cache]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def start_llama(binary: Path, gguf: str, slots: int, threads: int, context: int,
                log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [str(binary), "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-np", str(slots), "-cb",
           "-t", str(threads), "-c", str(context * slots), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def last_line(log) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no log)"


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def metrics(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        m = re.match(r"^(edgecore_[a-z_]+) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def one_request(client: httpx.AsyncClient, url: str, model: str, max_tokens: int, record: dict) -> None:
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    times, tokens = [], None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}: {await r.aread()}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
            if any(c.get("text") for c in data.get("choices", [])):
                times.append(time.perf_counter())
    if times:
        record["ttft"].append(times[0] - t0)
        record["itl"].extend(b - a for a, b in zip(times, times[1:], strict=False))
    record["tokens"] += tokens if tokens is not None else len(times)


async def closed_loop(url: str, model: str, concurrency: int, per_client: int, max_tokens: int) -> dict:
    record = {"ttft": [], "itl": [], "tokens": 0}
    # a new connection per request: llama-server closes idle keep-alive
    # connections, and a request sent on one it just closed fails with
    # "Server disconnected without sending a response" (seen at random
    # levels); loopback connects cost both servers the same, well under 1 ms
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        async def worker():
            for _ in range(per_client):
                await one_request(client, url, model, max_tokens, record)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        record["wall"] = time.perf_counter() - t0
    return record


async def warm_up(url: str, model: str) -> None:
    async with httpx.AsyncClient(timeout=None) as client:
        await one_request(client, url, model, 4, {"ttft": [], "itl": [], "tokens": 0})


def summarize(name: str, model: str, c: int, rec: dict, before: dict | None, after: dict | None) -> dict:
    row = {"server": name, "model": model, "concurrency": c, "tokens": rec["tokens"], "wall_s": rec["wall"],
           "tok_s": rec["tokens"] / rec["wall"],
           "ttft_p50_ms": 1e3 * percentile(rec["ttft"], 50), "ttft_p95_ms": 1e3 * percentile(rec["ttft"], 95),
           "itl_p50_ms": 1e3 * (percentile(rec["itl"], 50) or 0), "itl_p95_ms": 1e3 * (percentile(rec["itl"], 95) or 0)}
    if before is not None:
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        tick = d.get("edgecore_tick_seconds_total", 0)
        step = d.get("edgecore_engine_step_seconds_total", 0)
        steps = d.get("edgecore_steps_total", 0)
        row["overhead_pct"] = 100 * (tick - step) / tick if tick else None
        row["engine_busy_pct"] = 100 * tick / rec["wall"]
        row["mean_batch"] = d.get("edgecore_step_sequences_total", 0) / steps if steps else None
        row["preemptions"] = d.get("edgecore_preemptions_total", 0)
        prompt = d.get("edgecore_prompt_tokens_total", 0)
        reused = d.get("edgecore_prefix_cache_reused_tokens_total")
        row["prompt_reused_pct"] = 100 * reused / prompt if reused is not None and prompt else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo", help="what edgecore serves (a name, directory or .gguf)")
    ap.add_argument("--gguf", default=str(real_model("smollm2") or "smollm2.gguf"),
                    help="llama-server's model (default: SmolLM2 from `edgecore pull smollm2`)")
    ap.add_argument("--llama-bin", default=os.environ.get("LLAMA_CPP_BIN", "/work/llamacpp/bin"))
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--per-client", type=int, default=2, help="requests each client sends in a row")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-pages", type=int, default=None, help="edgecore's KV pages (default: the server's)")
    ap.add_argument("--act-precision", default="q8x2",
                    help="edgecore's activation precision(s), comma-separated: q8x2 (its default), q8 (llama.cpp's "
                         "contract: one 8-bit pass); each is a server run of its own")
    ap.add_argument("--prefix-cache", default="default",
                    help="edgecore's --prefix-cache token count(s), comma-separated, each a server run of its own "
                         "(default: the server's own; 0: off). llama-server keeps its prompt cache on")
    ap.add_argument("--context", type=int, default=512, help="llama-server context per slot")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--out", default="serve")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows = []

    runs = [(act, prefix) for act in args.act_precision.split(",") for prefix in args.prefix_cache.split(",")]
    for act, prefix in runs:
        proc, url = start_edgecore(args.model, max(levels), args.threads, args.kv_pages, act, prefix)
        try:
            wait_ready(url, proc)
            asyncio.run(warm_up(url, args.model))
            for c in levels:
                before = metrics(url)
                rec = asyncio.run(closed_loop(url, args.model, c, args.per_client, args.max_tokens))
                rows.append({**summarize("edgecore", args.model, c, rec, before, metrics(url)), "act": act,
                             "prefix_cache": prefix})
                print(f"edgecore ({act}, prefix cache {prefix}) c={c}: {rows[-1]['tok_s']:.1f} tok/s", file=sys.stderr)
        finally:
            stop(proc)
            err = proc.stderr.read()
            if proc.returncode not in (0, None):
                print(err, file=sys.stderr)

    server = Path(args.llama_bin) / "llama-server"
    llama = None
    if args.skip_llama:
        llama = "skipped (--skip-llama)"
    elif not server.exists():
        llama = f"not run: no llama-server at {server}"
    elif not Path(args.gguf).exists():
        llama = f"not run: no GGUF at {args.gguf}"
    else:
        log = tempfile.TemporaryFile()
        proc, url = start_llama(server, args.gguf, max(levels), args.threads, args.context, log)
        try:
            wait_ready(url, proc)
            name = Path(args.gguf).name
            asyncio.run(warm_up(url, name))
            for c in levels:
                try:
                    rec = asyncio.run(closed_loop(url, name, c, args.per_client, args.max_tokens))
                except httpx.HTTPError as exc:  # the peer failing is a result to report, not a reason to lose ours
                    time.sleep(1)
                    llama = (f"stopped at concurrency {c}: {type(exc).__name__}: {exc} (llama-server exit status "
                             f"{proc.poll()}; its last log line: {last_line(log)})")
                    break
                rows.append({**summarize("llama-server", name, c, rec, None, None), "act": "q8"})
                print(f"llama-server c={c}: {rows[-1]['tok_s']:.1f} tok/s", file=sys.stderr)
        finally:
            stop(proc)
            log.close()
    columns = [("server", "server"), ("model", "model"), ("act", "act"), ("prefix_cache", "prefix cache"),
               ("concurrency", "conc"), ("tok_s", "tok/s"), ("prompt_reused_pct", "prompt reused %"),
               ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p95_ms", "TTFT p95 ms"), ("itl_p50_ms", "ITL p50 ms"),
               ("itl_p95_ms", "ITL p95 ms"), ("mean_batch", "batch"), ("overhead_pct", "overhead %"),
               ("engine_busy_pct", "engine busy %"), ("preemptions", "preempt")]
    shown = [{k: (f"{v:.1f}" if isinstance(v, float) else ("" if v is None else v)) for k, v in r.items()}
             for r in rows]
    print(table(shown, columns))
    for act, prefix in runs:
        ours = {r["concurrency"]: r["tok_s"] for r in rows
                if r["server"] == "edgecore" and r["act"] == act and r["prefix_cache"] == prefix}
        if 1 in ours and 8 in ours:
            print(f"edgecore ({act}, prefix cache {prefix}) aggregate tok/s at concurrency 8 / at 1: "
                  f"{ours[8] / ours[1]:.2f}x")
    if llama:
        print(f"llama-server: {llama}")
    path = write_json(args.out, {"settings": vars(args), "rows": rows, "llama_server": llama or "run"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
