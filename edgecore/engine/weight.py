"""Linear weights in their stored type, and the one place that multiplies by them.

A `Weight` is what the runtime hands the layers for a matrix: its weight
type name (an `ops.weight_types()` name: "f32", "f16", "bf16", "q8_0",
"q4_1", ...) and the array `ops.linear` takes for that type (float32 [N, K],
or [K, N] with `transposed`; float16/uint16 [N, K]; uint8 rows of GGML
blocks [N, K / block * block bytes]), usually a view into the mapped file.

- A single f32 matrix runs the tuned float32 kernel (`ops.fused_linear`);
  every other type runs the weight-type driver (`ops.linear`). Projections
  sharing an input (q/k/v, gate/up) go in one `ops.linear_multi` call, f32
  too (the driver calls the same tuned kernel): the input is quantized once
  and all outputs are split across the threads in one parallel run; gate/up
  with `glu=True` also fuse the gated product (SwiGLU, GeGLU). Every helper takes `out=` /
  `outs=` so the engine's workspace buffers receive the results.

Activation precision (`Weight.refine`, set by the runtime from the engine's
`act_precision`). The block-quantized kernels quantize their input x to 8
bits per block (docs/quantization.md). With "q8x2" the driver also
quantizes what those blocks leave out and adds its product (`refine=True`
in ops: W x8 + W r8, an input error about 250 times smaller, as if x had
~15 bits), reading the weights once for both, so a bandwidth-bound decode
step costs little more; compute (prefill) doubles. "q8" is the single pass
llama.cpp also makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecore import ops

ACT_PRECISIONS = ("q8", "q8x2")
# weight type -> the 8-bit activation format its kernel reads (absent: float32 activations)
ACT_FORMATS = {t["name"]: t["activations"] for t in ops.weight_types() if t["activations"] != "f32"}


class Weight:
    __slots__ = ("act_format", "data", "k", "n", "nbytes", "refine", "transposed", "wtype")

    def __init__(self, wtype: str, data: np.ndarray, n: int, k: int, transposed: bool = False,
                 refine: bool = False):
        self.wtype, self.data, self.n, self.k, self.transposed = wtype, data, n, k, transposed
        self.nbytes = data.nbytes
        self.act_format = ACT_FORMATS.get(wtype)
        self.refine = refine and self.act_format is not None  # see the module doc

    def rows(self, start: int, stop: int) -> Weight:
        """Output rows [start, stop) (a view: rows are whole blocks)."""
        if self.transposed:
            raise ValueError("rows() of a transposed ([K, N]) weight")
        return Weight(self.wtype, self.data[start:stop], stop - start, self.k, refine=self.refine)

    def __repr__(self) -> str:
        return f"Weight({self.wtype}, [{self.n}, {self.k}])"


def linear(x: np.ndarray, w: Weight, bias: np.ndarray | None = None, activation: str = "none",
           out: np.ndarray | None = None) -> np.ndarray:
    """activation(x @ W.T + bias) for float32 x [M, K] (into out when given)."""
    if w.wtype == "f32":
        return ops.fused_linear(x, w.data, bias, activation=activation, transposed=w.transposed, out=out)
    return ops.linear(x, w.data, bias, wtype=w.wtype, activation=activation, out=out, refine=w.refine)


def linears(x: np.ndarray, ws: Sequence[Weight], biases: Sequence[np.ndarray | None] | None = None,
            outs: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """x @ W_i.T + b_i for weights sharing x (into outs[i] when given): one
    linear_multi call, f32 included, unless some are transposed and some not."""
    biases = biases or [None] * len(ws)
    outs = outs or [None] * len(ws)
    if _mixed_layouts(ws):
        return [linear(x, w, b, out=o) for w, b, o in zip(ws, biases, outs, strict=True)]
    return ops.linear_multi(x, [w.data for w in ws], biases, wtypes=[w.wtype for w in ws], outs=outs,
                            transposed=ws[0].transposed, refine=_refine(ws))


def gated_mlp(x: np.ndarray, gate: Weight, up: Weight, down: Weight, biases=(None, None, None),
              outs=(None, None, None), activation: str = "silu") -> np.ndarray:
    """down(act(gate(x)) * up(x)): SwiGLU with "silu", GeGLU with
    "gelu_tanh"; outs: optional (gate, up, down) result buffers."""
    if _mixed_layouts((gate, up)):
        g = linear(x, gate, biases[0], activation=activation, out=outs[0])
        g *= linear(x, up, biases[1], out=outs[1])
    else:  # the gated pair in one call, the product fused
        g, _ = ops.linear_multi(x, [gate.data, up.data], biases[:2], wtypes=[gate.wtype, up.wtype],
                                activation=activation, glu=True, outs=outs[:2], transposed=gate.transposed,
                                refine=_refine((gate, up)))
    return linear(g, down, biases[2], out=outs[2])


def _refine(ws: Sequence[Weight]) -> bool:
    # the runtime sets one act_precision for every weight; types with
    # float32 activations ignore the flag
    return any(w.refine for w in ws)


def _mixed_layouts(ws: Sequence[Weight]) -> bool:
    # linear_multi's transposed flag is for all weights at once; a [K, N]
    # weight is always f32 (the runtime transposes other types at load)
    return len({w.transposed for w in ws}) > 1
