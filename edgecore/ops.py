"""Kernel entry points: the public Python API over the C kernels.

Everything here runs a dispatched C kernel (scalar, AVX2, AVX-512 or NEON,
chosen at import from the CPU; ``EDGECORE_ISA`` caps the tier) without the
GIL. Arguments are checked before any pointer is taken: a wrong dtype, shape,
layout or value raises TypeError / ValueError naming the argument.

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
    POLICIES,
    RouterCore,
    Routing,
    _use_tier,
    bf16_to_f32,
    capabilities,
    ema_update,
    f16_to_f32,
    fused_linear,
    get_num_threads,
    route_topk,
    set_num_threads,
    thread_calibration,
)

__all__ = [
    "ACTIVATIONS",
    "POLICIES",
    "RouterCore",
    "Routing",
    "bf16_to_f32",
    "capabilities",
    "ema_update",
    "f16_to_f32",
    "fused_linear",
    "get_num_threads",
    "route_topk",
    "set_num_threads",
    "thread_calibration",
    "forced_tier",
]


@contextmanager
def forced_tier(name: str):
    """Run the enclosed code on one kernel tier ("scalar", "avx2", "avx512",
    "neon"), then restore the previous one. For tests and debugging: the
    switch is process-wide and not synchronised with kernels running on
    other threads. Raises ValueError if the tier is not available here."""
    previous = _use_tier(name)
    try:
        yield name
    finally:
        _use_tier(previous)
