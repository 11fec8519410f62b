"""Kernel entry points: the public Python API over the C kernels.

Everything here runs a dispatched C kernel (scalar, AVX2, AVX-512 or NEON,
chosen at import from the CPU; ``EDGECORE_ISA`` caps the tier) without the
GIL. Arguments are checked before any pointer is taken: a wrong dtype, shape,
layout or value raises TypeError / ValueError naming the argument.

Weights in any registered type (f32, f16, bf16 and GGML's q8_0, q4_0,
q4_1, q5_0, q5_1, q4_k, q5_k, q6_k blocks; ``weight_types()`` lists them)
run through one linear driver: ``linear``, ``linear_multi`` (several
weights sharing x, optionally as a GLU), ``dequantize_rows`` /
``dequantize`` and ``quantize``. The numerical contract of the quantized
types (activations quantized to 8 bits per call) is docs/quantization.md.

The per-token path between the matrix products runs in C too: ``rms_norm``
and ``layer_norm`` (optionally fused with the residual add), ``rope``
(rotate-half or interleaved, per-row positions), and the paged KV cache:
``kv_store`` writes new K/V rows into their pages (float32 or float16) and
``attention`` runs causal (optionally sliding-window) GQA attention for a
batch of sequences over their own pages, bitwise independent of the batch
and of the thread count. ``DecoderBlock`` runs a whole llama-family block
(norms, projections, RoPE, KV store, attention, SwiGLU MLP) in one call,
checked once when built: a decode step's per-call Python cost, once per
layer instead of ten times; ``DecoderStack`` runs consecutive blocks in one
call (once per step for a model whose layers all stay loaded).

``RouterCore`` and ``Routing`` are the compiled core of the memory-aware MoE
router (``edgecore.moe.MemoryAwareRouter`` builds on them).

The checks live in the Cython module (`_kernels.pyx`) rather than here
because routing runs per token per layer: a Python-level check costs more
than the kernel itself. This module is the only one that imports
`_kernels`; everything above it imports from here.
"""

from contextlib import contextmanager

from edgecore._kernels import (
    ACTIVATIONS,
    FORMATS,
    MAX_THREADS,
    POLICIES,
    DecoderBlock,
    DecoderStack,
    RouterCore,
    Routing,
    _use_tier,
    attention,
    bf16_to_f32,
    capabilities,
    dequantize,
    dequantize_rows,
    ema_update,
    f16_to_f32,
    fused_linear,
    get_num_threads,
    kernel_dispatch,
    kv_store,
    layer_norm,
    linear,
    linear_multi,
    linear_scratch_bytes,
    quantize,
    quantize_activations,
    rms_norm,
    rope,
    route_topk,
    set_num_threads,
    thread_calibration,
    weight_types,
)

__all__ = [
    "ACTIVATIONS",
    "FORMATS",
    "DecoderBlock",
    "DecoderStack",
    "MAX_THREADS",
    "POLICIES",
    "RouterCore",
    "Routing",
    "attention",
    "bf16_to_f32",
    "capabilities",
    "dequantize",
    "dequantize_rows",
    "ema_update",
    "f16_to_f32",
    "forced_tier",
    "fused_linear",
    "get_num_threads",
    "kernel_dispatch",
    "kv_store",
    "layer_norm",
    "linear",
    "linear_multi",
    "linear_scratch_bytes",
    "quantize",
    "quantize_activations",
    "rms_norm",
    "rope",
    "route_topk",
    "set_num_threads",
    "thread_calibration",
    "weight_types",
]


@contextmanager
def forced_tier(name: str, features=None):
    """Run the enclosed code on one kernel tier ("scalar", "avx2", "avx512",
    "neon") with exactly ``features`` enabled (sub-feature names such as
    "avx512_vnni"; None: every available one the tier may use), then
    restore the previous setting. For tests and debugging: the switch is
    process-wide and not synchronised with kernels running on other
    threads. Raises ValueError if the tier or a feature is not available."""
    previous_tier, previous_features = _use_tier(name, features)
    try:
        yield name
    finally:
        _use_tier(previous_tier, previous_features)
