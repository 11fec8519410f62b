"""Linear weights in their stored type, and the one place that multiplies by them.

A `Weight` is what the runtime hands the layers for a matrix: its weight
type name (an `ops.weight_types()` name: "f32", "f16", "bf16", "q8_0",
"q4_1", ...) and the array `ops.linear` takes for that type (float32 [N, K],
or [K, N] with `transposed`; float16/uint16 [N, K]; uint8 rows of GGML
blocks [N, K / block * block bytes]), usually a view into the mapped file.

- f32 runs the tuned float32 kernel (`ops.fused_linear`), as before.
- Every other type runs the weight-type driver (`ops.linear`); projections
  sharing an input (q/k/v, gate/up) go in one `ops.linear_multi` call: the
  input is quantized once and all outputs are split across the threads in
  one parallel run; gate/up with `glu=True` also fuse SwiGLU's product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecore import ops


class Weight:
    __slots__ = ("data", "k", "n", "nbytes", "transposed", "wtype")

    def __init__(self, wtype: str, data: np.ndarray, n: int, k: int, transposed: bool = False):
        self.wtype, self.data, self.n, self.k, self.transposed = wtype, data, n, k, transposed
        self.nbytes = data.nbytes

    def rows(self, start: int, stop: int) -> Weight:
        """Output rows [start, stop) (a view: rows are whole blocks)."""
        if self.transposed:
            raise ValueError("rows() of a transposed ([K, N]) weight")
        return Weight(self.wtype, self.data[start:stop], stop - start, self.k)

    def __repr__(self) -> str:
        return f"Weight({self.wtype}, [{self.n}, {self.k}])"


def linear(x: np.ndarray, w: Weight, bias: np.ndarray | None = None, activation: str = "none",
           out: np.ndarray | None = None) -> np.ndarray:
    """activation(x @ W.T + bias) for float32 x [M, K]."""
    if w.wtype == "f32":
        return ops.fused_linear(x, w.data, bias, activation=activation, transposed=w.transposed, out=out)
    return ops.linear(x, w.data, bias, wtype=w.wtype, activation=activation, out=out)


def linears(x: np.ndarray, ws: Sequence[Weight], biases: Sequence[np.ndarray | None] | None = None
            ) -> list[np.ndarray]:
    """x @ W_i.T + b_i for weights sharing x: one linear_multi call unless
    every weight is f32 (then the tuned f32 kernel, one call each)."""
    biases = biases or [None] * len(ws)
    if _all_f32_or_transposed(ws):
        return [linear(x, w, b) for w, b in zip(ws, biases, strict=True)]
    return ops.linear_multi(x, [w.data for w in ws], biases, wtypes=[w.wtype for w in ws])


def swiglu(x: np.ndarray, gate: Weight, up: Weight, down: Weight, biases=(None, None, None)) -> np.ndarray:
    """down(silu(gate(x)) * up(x))."""
    if _all_f32_or_transposed((gate, up)):
        g = linear(x, gate, biases[0], activation="silu")
        g *= linear(x, up, biases[1])
    else:
        g, _ = ops.linear_multi(x, [gate.data, up.data], biases[:2], wtypes=[gate.wtype, up.wtype],
                                activation="silu", glu=True)
    return linear(g, down, biases[2])


def _all_f32_or_transposed(ws: Sequence[Weight]) -> bool:
    # linear_multi's transposed flag is for all weights at once; a [K, N]
    # weight is always f32 (the runtime transposes other types at load)
    return all(w.wtype == "f32" for w in ws) or any(w.transposed for w in ws)
