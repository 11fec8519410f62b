"""The inference engine: plan a model under a memory budget, then run it.

    engine = Engine("path/to/model", memory_budget="256M")
    result = engine.generate("The list", max_new_tokens=64)
    print(result.text, result.stats)

Execution follows the plan for real: pinned groups are loaded once; every
other group is loaded right before it runs and dropped right after (with
the speculative strategy the next group loads on a background thread while
the current one computes). Loads, the KV cache and the planned activation
space all go through one MemoryPool holding the budget, so the budget is
enforced, not just predicted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecore import ops
from edgecore.engine import layers as L
from edgecore.engine.batch import StepBatch, build_batch, check_items
from edgecore.engine.experts import ExpertLayers, ExpertStats
from edgecore.engine.kv import DEFAULT_PAGE_TOKENS, KVSequence, PagedKV, check_kv_dtype, kv_cache_bytes
from edgecore.engine.mixtral import mixtral_block
from edgecore.engine.runtime import WeightRuntime
from edgecore.engine.sampling import check_sampling, choose
from edgecore.engine.weight import ACT_PRECISIONS
from edgecore.memory import MemoryPool, parse_size, reset_peak_rss, sample_footprint
from edgecore.models import Model, ModelError
from edgecore.models.detokenize import StopText
from edgecore.moe import POLICIES
from edgecore.planner import CostModel, Plan, device_rates, plan_model

DEFAULT_CONTEXT = 2048
DEFAULT_STEP_TOKENS = 256
DEFAULT_ACT_PRECISION = "q8x2"


@dataclass
class GenerationStats:
    prompt_tokens: int
    new_tokens: int
    prefill_ms: float
    decode_ms: float
    decode_tokens_per_s: float | None
    peak_rss_bytes: int | None  # process peak RSS during the call (VmHWM after a reset)
    peak_rss_is_call_peak: bool  # False if the kernel could not reset the peak (then it is the process peak)
    weight_bytes_loaded: int  # weight bytes (stored type) brought in during the call (streaming)
    finish_reason: str  # length | eos | stop | cancelled
    strategy: str
    groups: int
    budget: int | None
    experts: ExpertStats | None = None  # MoE with expert caches: hits, loads, bytes during the call
    prompt_tokens_reused: int = 0  # prompt tokens whose KV came from the previous call (common prefix)

    @property
    def prompt_tokens_prefilled(self) -> int:
        return self.prompt_tokens - self.prompt_tokens_reused

    @property
    def prefill_tokens_per_s(self) -> float | None:
        n = self.prompt_tokens_prefilled
        return n / (self.prefill_ms / 1e3) if n and self.prefill_ms > 0 else None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationResult:
    tokens: list[int]
    text: str | None
    stats: GenerationStats
    prompt_tokens: list[int] = field(repr=False, default_factory=list)


class Engine:
    """Run a Hugging Face checkpoint (GPT-2, Llama, Mixtral families) or a
    GGUF file (architectures llama, with or without experts, and gpt2)
    under a memory budget, weights in their stored type.

    model_dir: a model directory, a .gguf file, a registry name
    (`edgecore models`), a built-in model name ("demo", "demo-moe"), None
    for the default demo model, or an open Model (the engine takes it over
    and closes it). memory_budget: bytes
    (int) or a size string ("512M"); None = no limit. strategy: sequential,
    greedy, speculative or auto. threads: kernel threads (process-wide, as
    edgecore.set_num_threads). context: KV cache capacity in tokens
    (default: the model's maximum, at most 2048, and at most its
    sliding_window). step_tokens: the most tokens one forward step
    processes (longer prompts are prefilled in chunks; bounds activation
    memory); under a budget too small for that many, the planner picks
    the largest step that fits (self.step_tokens says which).

    The KV cache is paged (engine/kv.py): `kv_pages` pages (default: enough
    for one sequence of the whole context) of `page_tokens` tokens, K and V
    in `kv_dtype` ("f16", "q8_0" or "f32"), counted in the plan and the budget.
    `engine.kv` hands out sequences and pages; `engine.step` runs a batch of
    sequences together (the server's path); generate and forward run on the
    same step with the engine's own sequence.

    MoE models whose experts do not all fit keep C experts per layer in an
    expert cache (C chosen by the planner, or expert_capacity). expert_policy:
    which expert a full cache evicts (lru, lfu, affinity). cache_bonus: a
    logit bonus for experts already in memory (0, the default, routes
    exactly as the model does; > 0 trades fidelity for fewer loads).

    act_precision: how block-quantized weights (GGUF q8_0, q4_1, q4_k, ...)
    take their input: "q8x2" (default) quantizes it to 8 bits plus an 8-bit
    residual, ~250x less input error for little decode cost (prefill
    computes twice); "q8" is one 8-bit pass, as llama.cpp (engine/weight.py).
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, memory_budget: int | str | None = None,
                 strategy: str = "auto", threads: int | None = None, *, context: int | None = None,
                 step_tokens: int | None = None, expert_capacity: int | None = None, expert_policy: str = "lru",
                 cache_bonus: float = 0.0, act_precision: str = DEFAULT_ACT_PRECISION, kv_dtype: str = "f16",
                 kv_pages: int | None = None, page_tokens: int = DEFAULT_PAGE_TOKENS):
        if act_precision not in ACT_PRECISIONS:
            raise ValueError(f"act_precision must be one of {', '.join(ACT_PRECISIONS)}; got {act_precision!r}")
        self.act_precision = act_precision
        check_kv_dtype(kv_dtype)
        if threads is not None:
            ops.set_num_threads(threads)
        budget = None if memory_budget is None else parse_size(memory_budget)
        self.model = model_dir if isinstance(model_dir, Model) else Model(model_dir)
        try:
            self._setup(budget, strategy, context, step_tokens, expert_capacity, expert_policy, cache_bonus,
                        kv_dtype, kv_pages, page_tokens)
        except BaseException:
            self.close()
            raise

    def _setup(self, budget, strategy, context, step_tokens, expert_capacity, expert_policy, cache_bonus,
               kv_dtype, kv_pages, page_tokens) -> None:
        spec = self.model.spec
        _check_expert_options(spec, expert_capacity, expert_policy, cache_bonus)
        self.spec = spec
        self.tokenizer = self.model.tokenizer
        window = spec.sliding_window or spec.max_positions  # windowed attention is not implemented
        self.context = _positive("context", context, min(spec.max_positions, window, DEFAULT_CONTEXT))
        if self.context > spec.max_positions:
            raise ValueError(f"context {self.context} exceeds the model's max_position_embeddings "
                             f"({spec.max_positions})")
        if spec.sliding_window and self.context > spec.sliding_window:
            raise ValueError(f"context {self.context} exceeds the model's sliding_window ({spec.sliding_window}); "
                             f"windowed attention is not implemented, pass context <= {spec.sliding_window}")
        self.step_tokens = min(_positive("step_tokens", step_tokens, DEFAULT_STEP_TOKENS), self.context)
        page_tokens = _positive("page_tokens", page_tokens, DEFAULT_PAGE_TOKENS)
        kv_pages = _positive("kv_pages", kv_pages, -(-self.context // page_tokens))
        graph = self.model.graph
        blocks = sum(1 for layer in graph.layers if layer.kind == "block")
        kv_bytes = kv_cache_bytes(blocks, spec.num_kv_heads, spec.head_dim, kv_pages, page_tokens, kv_dtype)
        cost = None
        if strategy == "auto" and budget is not None and graph.total_weight_bytes(self.step_tokens) + \
                kv_bytes > budget:
            cost = CostModel(device_rates())  # only needed when the strategies differ
        self.plan: Plan = plan_model(graph, budget, expert_capacity=expert_capacity, context_tokens=self.context,
                                     step_tokens=self.step_tokens, strategy=strategy, all_logits=False,
                                     cost_model=cost, kv_bytes=kv_bytes)
        self.step_tokens = self.plan.step_tokens  # smaller when the budget needed it
        self.pool = MemoryPool(budget)
        self._activations = self.pool.reserve(self.plan.activation_bytes + self.plan.scratch_bytes,
                                              "activations and conversion scratch")
        self.runtime = WeightRuntime(self.model.weights, self.model.layouts, self.pool,
                                     experts_cached=bool(self.plan.expert_capacity),
                                     refine=self.act_precision == "q8x2")
        self.experts: ExpertLayers | None = None
        if self.plan.expert_capacity:
            self.experts = ExpertLayers(
                self.runtime, [i for i, layer in enumerate(graph.layers) if layer.num_experts],
                num_experts=spec.num_experts, top_k=spec.experts_per_token, intermediate=spec.intermediate_size,
                expert_bytes=graph.expert_bytes, capacity=self.plan.expert_capacity, policy=expert_policy,
                cache_bonus=cache_bonus)
        self.kv = PagedKV(self.pool, blocks, spec.num_kv_heads, spec.head_dim, pages=kv_pages,
                          page_tokens=page_tokens, kv_dtype=kv_dtype, context=self.context)
        self.rope = L.Rope(spec.rope.inv_freq(), self.context, spec.rope.interleaved) if spec.rope else None
        # Gemma 3's windowed layers rotate with their own base
        self.local_rope = None if spec.local_rope is None else \
            L.Rope(spec.local_rope.inv_freq(), self.context, spec.local_rope.interleaved)
        self._ws = L.Workspace(spec, self.step_tokens)  # every layer's intermediates, reused
        self._pending: dict[int, Future] = {}  # streamed group -> its background load
        self._busy = threading.Lock()  # one step at a time: weights stream per step
        self._seq = self.kv.new_sequence()  # generate/forward's own sequence
        self._cached: list[int] = []  # the token ids whose K/V self._seq holds, from position 0
        for group in self.plan.groups:
            if group.pinned:
                self.runtime.load_layers(group.layers)
        self._blocks = self._decoder_blocks()
        self._stacks = self._decoder_stacks()
        ops.thread_calibration()  # measure the threading threshold now, not inside the first prefill

    # ---- public API -------------------------------------------------------

    def forward(self, input_ids: Sequence[int]) -> np.ndarray:
        """float32 logits [T, vocab] for every position of a fresh sequence."""
        ids = self._check_ids(input_ids, 0)
        out = np.empty((len(ids), self.spec.vocab_size), np.float32)
        with self._busy:
            self._reset_own()  # the engine's sequence is rewritten from position 0
            try:
                for start in range(0, len(ids), self.step_tokens):
                    chunk = ids[start:start + self.step_tokens]
                    self._run_own(chunk, out[start:start + len(chunk)])
            except BaseException:
                self._reset_own()
                raise
            finally:
                self._finish_streaming()
        return out

    def step(self, items: Sequence[tuple[KVSequence, Sequence[int]]]) -> np.ndarray:
        """One batched step: items are (seq, token_ids) pairs (1+ tokens
        each, every sequence of `engine.kv` at most once). Stores each item's
        K/V at positions seq.length.. (reserve the pages first:
        engine.kv.reserve(seq, len(token_ids))), runs all rows together (one
        [M, d] activation per layer, M = the total tokens, at most
        engine.step_tokens), and returns float32 [len(items), vocab]: the
        logits of each item's last token. Every seq.length then advances by
        its token count; if the step raises, no length changes.

        A sequence's logits depend only on its own tokens, never on the
        other items or the thread count: every kernel is batch invariant
        (docs/quantization.md), so the logits are bitwise those of the
        sequence alone."""
        checked = check_items(items, self.spec.vocab_size, self.context, self.kv.page_tokens)
        rows = sum(len(ids) for _, ids in checked)
        if rows > self.step_tokens:
            raise ValueError(f"step: {rows} tokens in one step exceed step_tokens={self.step_tokens} (the "
                             f"activation memory planned); split prefills into chunks")
        with self._busy:
            try:
                logits = self._execute(build_batch(checked), None)
            except BaseException:
                self._finish_streaming()
                raise
        for seq, ids in checked:
            seq.length += len(ids)
        return logits

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 64, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 stop: str | Sequence[str | int] | None = None,
                 stream: Callable[[int, str | None], object] | None = None, *, min_p: float | None = None,
                 repetition_penalty: float | None = None, do_sample: bool | None = None,
                 should_stop: Callable[[], bool] | None = None) -> GenerationResult:
        """Generate after `prompt`: text (encoded with the tokenizer's special
        tokens, e.g. BOS) or token ids.

        max_new_tokens: at most this many tokens; -1 = until an EOS token or
        the end of the context. Sampling follows transformers: arguments
        left at None take the model's generation config (greedy unless it
        says do_sample), temperature 0 is greedy, top_k/top_p/min_p without
        a temperature sample at the configured one; repetition_penalty and
        min_p have Hugging Face's definitions (engine/sampling.py). `stop`:
        strings (matched on the decoded text, excluded from it and never
        streamed) or token ids; every EOS id of the model stops.
        `stream(token_id, text_piece)` is called for every new token
        (text_piece is None without a tokenizer, "" while text is held
        back), and once more as stream(None, rest) if text was held to the
        end (an unfinished character, a possible stop string). `should_stop()` is asked after every token; True ends the
        call (finish_reason "cancelled"), keeping what was generated.

        The KV cache of the longest common prefix with the previous call's
        tokens is reused: only the rest of the prompt is prefilled (always
        at least its last token, whose logits choose the first new token);
        stats.prompt_tokens_reused says how many were reused. Calls from
        several threads run one at a time (the engine holds one KV cache)."""
        check_sampling(temperature, top_k, top_p, min_p, repetition_penalty)
        if do_sample is not None and not isinstance(do_sample, bool):
            raise ValueError(f"do_sample must be True, False or None, got {do_sample!r}")
        sampling = self.model.generation_config.sampling(temperature, top_k, top_p, min_p, repetition_penalty,
                                                         do_sample)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < -1:
            raise ValueError(f"max_new_tokens must be an integer >= 0, or -1 (until EOS or the end of the "
                             f"context), got {max_new_tokens!r}")
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ModelError(f"{self.model.dir}: this model has no tokenizer; pass the prompt as token ids")
            ids = self.tokenizer.encode(prompt)
        else:
            ids = list(prompt)
        ids_arr = self._check_ids(ids, max(max_new_tokens, 1))  # -1 still needs room for one new token
        limit = self.context - len(ids_arr) if max_new_tokens == -1 else max_new_tokens
        stop_strings, stop_ids = _split_stop(stop, self.tokenizer)
        with self._busy:
            try:
                return self._generate(ids_arr.tolist(), limit, sampling, seed, stop_strings, stop_ids, stream,
                                      should_stop)
            except BaseException:
                self._reset_own()  # a failed step leaves the cache in an unknown state
                raise
            finally:
                self._finish_streaming()

    def _generate(self, ids, max_new_tokens, sampling, seed, stop_strings, stop_ids, stream,
                  should_stop) -> GenerationResult:
        rng = np.random.default_rng(seed)
        decoder = self.tokenizer.stream(ids) if self.tokenizer else None
        text = StopText(stop_strings)
        eos = set(self.model.eos_token_ids)
        exact_peak = reset_peak_rss()
        loaded_before = self.runtime.bytes_loaded
        experts_before = self.experts.snapshot() if self.experts else None

        t0 = time.perf_counter()
        reused = _common_prefix(self._cached, ids, len(ids) - 1)  # the last prompt token always runs: its logits
        del self._cached[reused:]
        self.kv.truncate(self._seq, reused)
        logits = None
        for start in range(reused, len(ids), self.step_tokens):
            logits = self._run_own(np.array(ids[start:start + self.step_tokens], np.int64), None)
        t_prefill = time.perf_counter() - t0

        new: list[int] = []
        finish = "length"
        t1 = time.perf_counter()
        while len(new) < max_new_tokens:
            token = choose(logits, sampling["temperature"], sampling.get("top_k"), sampling.get("top_p"), rng,
                           min_p=sampling.get("min_p"), repetition_penalty=sampling["repetition_penalty"],
                           previous=self._cached)
            if token in eos or token in stop_ids:
                finish = "eos" if token in eos else "stop"
                break
            new.append(token)
            piece = text.push(decoder.push(token)) if decoder else None
            if stream is not None:
                stream(token, piece)
            if text.stopped:
                finish = "stop"
                break
            if should_stop is not None and should_stop():
                finish = "cancelled"
                break
            if len(new) < max_new_tokens:
                logits = self._run_own(np.array([token], np.int64), None)
        t_decode = time.perf_counter() - t1
        self._finish_streaming()

        if decoder and not text.stopped:
            rest = text.push(decoder.flush())
            rest += "" if text.stopped else text.flush()
            if text.stopped:
                finish = "stop"
            if rest and stream is not None:
                stream(None, rest)
        steps = max(len(new) - 1, 0)  # the first new token comes from the prefill logits
        footprint = sample_footprint()
        stats = GenerationStats(
            prompt_tokens=len(ids), new_tokens=len(new), prefill_ms=t_prefill * 1e3, decode_ms=t_decode * 1e3,
            decode_tokens_per_s=steps / t_decode if steps and t_decode > 0 else None,
            peak_rss_bytes=footprint.peak_rss, peak_rss_is_call_peak=bool(exact_peak),
            weight_bytes_loaded=self.runtime.bytes_loaded - loaded_before, finish_reason=finish,
            strategy=self.plan.strategy, groups=len(self.plan.groups), budget=self.plan.budget,
            experts=self.experts.stats_since(experts_before) if self.experts else None,
            prompt_tokens_reused=reused)
        return GenerationResult(new, text.text if decoder else None, stats, ids)

    def close(self) -> None:
        self._blocks = self._stacks = {}  # they reference the weights, the cache and the workspace
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            for future in getattr(self, "_pending", {}).values():
                future.exception()
            if getattr(self, "experts", None) is not None:
                self.experts.close()
            runtime.close()
        if getattr(self, "kv", None) is not None:
            self.kv.close()
        if getattr(self, "_activations", None) is not None:
            self._activations.release()
        self.model.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- execution ----------------------------------------------------------

    def _check_ids(self, ids, extra: int) -> np.ndarray:
        try:
            arr = np.asarray(ids)
        except (TypeError, ValueError):
            raise TypeError("input ids must be a sequence of integers") from None
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"input ids must be a non-empty 1-D sequence of integers, got {arr.dtype} "
                             f"shape {arr.shape}")
        bad = np.flatnonzero((arr < 0) | (arr >= self.spec.vocab_size))
        if bad.size:
            raise ValueError(f"token id {arr[bad[0]]} at position {bad[0]} is outside the vocabulary "
                             f"[0, {self.spec.vocab_size})")
        if arr.size + extra > self.context:
            raise ValueError(f"{arr.size} prompt tokens + {extra} new tokens exceed the context of "
                             f"{self.context} tokens (pass a larger context= if the model allows it)")
        return arr.astype(np.int64)

    def _reset_own(self) -> None:
        self._cached = []
        self.kv.release(self._seq)

    def _run_own(self, ids: np.ndarray, logits_out: np.ndarray | None) -> np.ndarray:
        """Append ids to the engine's own sequence (generate, forward): the
        last row's logits, or every row's into logits_out."""
        seq = self._seq
        self.kv.reserve(seq, len(ids))
        logits = self._execute(build_batch([(seq, ids)]), logits_out)
        seq.length += len(ids)
        self._cached.extend(ids.tolist())
        return logits[0] if logits_out is None else logits

    def _execute(self, batch: StepBatch, logits_out: np.ndarray | None) -> np.ndarray:
        """Run every layer on the batch's rows. Returns the logits of each
        item's last row [S, vocab], or fills logits_out [M, vocab] with every
        row's and returns it."""
        spec, plan, rt = self.spec, self.plan, self.runtime
        streamed = [i for i, g in enumerate(plan.groups) if not g.pinned]
        x = delta = logits = None  # delta: the last block's output, added to x by the next norm
        for gi, group in enumerate(plan.groups):
            if not group.pinned:
                self._acquire_group(gi)
                if plan.strategy == "speculative" and len(streamed) > 1:
                    nxt = streamed[(streamed.index(gi) + 1) % len(streamed)]
                    if nxt not in self._pending:
                        self._pending[nxt] = rt.prefetch_layers(plan.groups[nxt].layers)
            layers, i = group.layers, 0
            while i < len(layers):
                li = layers[i]
                stack = self._stacks.get(li)
                if stack is not None:  # consecutive dense blocks in one call
                    delta = stack.run(x, delta, batch.positions, batch.table, batch.starts, batch.pos0)
                    i += len(stack)
                    continue
                i += 1
                layer = self.model.graph.layers[li]
                if layer.kind == "embed":
                    x = self._embed(batch)
                elif layer.kind == "block":
                    block = self._blocks.get(li)
                    if block is not None and not spec.is_moe:  # the whole layer in one call, no weights dict
                        delta = block.run(x, delta, batch.positions, batch.table, batch.starts, batch.pos0)
                    else:
                        delta = self._block(rt.layer_weights(li), x, delta, li, layer.index, batch)
                elif logits_out is None:
                    logits = L.head(spec, rt.layer_weights(li), x, delta, self._ws, batch.last)
                else:
                    logits = L.head(spec, rt.layer_weights(li), x, delta, self._ws, out=logits_out)
            if not group.pinned:
                rt.unload_layers(group.layers)
        return logits

    def _embed(self, batch: StepBatch) -> np.ndarray:
        lay = self.model.layouts[0].tensors
        x = self.runtime.gather_rows(lay["wte"].name, batch.ids)
        if "wpe" in lay:
            x += self.runtime.gather_rows(lay["wpe"].name, batch.positions)
        if self.spec.embed_scale != 1.0:
            x *= np.float32(self.spec.embed_scale)  # Gemma: sqrt(hidden), in float32 as transformers
        return x

    def _block(self, w: dict, x: np.ndarray, delta, li: int, index: int, batch: StepBatch) -> np.ndarray:
        """li: the layer's index in the graph; index: its block number. x is
        updated in place; returns the block's output (the next delta)."""
        spec, kv, ws = self.spec, self.kv, self._ws
        if spec.family == "gpt2":
            return L.gpt2_block(spec, w, x, delta, kv, index, batch, ws)
        if spec.family == "gemma3":
            return L.gemma3_block(spec, w, self._layer_rope(index), x, delta, kv, index, batch, ws)
        block = self._blocks.get(li)
        if spec.is_moe:
            attention = None if block is None else \
                (lambda: block.run(x, delta, batch.positions, batch.table, batch.starts, batch.pos0))
            if self.experts is None:
                return mixtral_block(spec, w, self.rope, x, delta, kv, index, batch, ws, attention=attention)
            ex = self.experts
            return mixtral_block(spec, w, self.rope, x, delta, kv, index, batch, ws, attention=attention,
                                 experts=lambda e: ex.weights(li, e), route=lambda logits: ex.route(li, logits))
        return L.llama_block(spec, w, self.rope, x, delta, kv, index, batch, ws)

    def _decoder_blocks(self) -> dict:
        """graph layer index -> ops.DecoderBlock for the llama layers (and
        mixtral's attention) whose weights stay loaded (pinned groups):
        checked and built once, then one C call per layer per step. Streamed
        layers run op by op (their weights are mapped again each step)."""
        spec, graph = self.spec, self.model.graph
        if spec.family not in ("llama", "mixtral", "gemma3") or self.rope is None:
            return {}
        layers = [li for g in self.plan.groups if g.pinned for li in g.layers if graph.layers[li].kind == "block"]
        weights = {li: self.runtime.layer_weights(li) for li in layers}
        layers = [li for li in layers if L.fits_decoder_block(spec, weights[li])]
        if not layers:
            return {}
        # one scratch for all: steps run one at a time (counted in the plan's activation bytes)
        scratch = np.empty(max(L.decoder_block_scratch(spec, weights[li], self.step_tokens) for li in layers), np.uint8)
        return {li: L.decoder_block(spec, weights[li], self._layer_rope(graph.layers[li].index), self.kv,
                                    graph.layers[li].index, self._ws, scratch)
                for li in layers}

    def _layer_rope(self, index: int) -> L.Rope:
        """Block `index`'s rotary tables (Gemma 3's windowed layers have their own)."""
        return self.local_rope if self.local_rope is not None and self.spec.window(index) else self.rope

    def _decoder_stacks(self) -> dict:
        """first graph layer index -> ops.DecoderStack, for each run of two
        or more consecutive dense DecoderBlocks within a pinned group: one C
        call per step for the run (for a model whose layers all stay loaded,
        one for the whole decoder) instead of one per layer."""
        if self.spec.is_moe:
            return {}  # the blocks are attention halves; the sparse MLP runs in Python between them
        stacks = {}
        for group in self.plan.groups:
            if not group.pinned:
                continue
            run: list[int] = []
            for li in [*group.layers, None]:  # None ends the last run
                if li is not None and li in self._blocks:
                    run.append(li)
                    continue
                if len(run) > 1:
                    stacks[run[0]] = ops.DecoderStack([self._blocks[r] for r in run])
                run = []
        return stacks

    def _acquire_group(self, gi: int) -> None:
        future = self._pending.pop(gi, None)
        if future is not None:
            future.result()  # re-raises a failed background load
        else:
            self.runtime.load_layers(self.plan.groups[gi].layers)

    def _finish_streaming(self) -> None:
        """Unload groups prefetched for a next step that will not come."""
        for gi, future in list(self._pending.items()):
            del self._pending[gi]
            future.result()
            self.runtime.unload_layers(self.plan.groups[gi].layers)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _check_expert_options(spec, capacity, policy, cache_bonus) -> None:
    if policy not in POLICIES:
        raise ValueError(f"expert_policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    numeric = isinstance(cache_bonus, (int, float)) and not isinstance(cache_bonus, bool)
    if not numeric or not 0 <= cache_bonus < float("inf"):
        raise ValueError(f"cache_bonus must be a finite number >= 0, got {cache_bonus!r}")
    if not spec.is_moe and (capacity is not None or cache_bonus):
        raise ValueError("expert_capacity and cache_bonus apply to mixture-of-experts models; "
                         f"this model ({spec.family}) is dense")


def _positive(name: str, value, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _split_stop(stop, tokenizer) -> tuple[list[str], set[int]]:
    if stop is None:
        return [], set()
    items = [stop] if isinstance(stop, (str, int)) else list(stop)
    strings = [s for s in items if isinstance(s, str)]
    ids = {s for s in items if isinstance(s, int) and not isinstance(s, bool)}
    if len(strings) + len(ids) != len(items) or any(s == "" for s in strings):
        raise ValueError("stop must be non-empty strings and/or token ids")
    if strings and tokenizer is None:
        raise ValueError("stop strings need a tokenizer; this model has none (pass token ids)")
    return strings, ids
