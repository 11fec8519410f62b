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
  with `glu=True` also fuse SwiGLU's product. Every helper takes `out=` /
  `outs=` so the engine's workspace buffers receive the results.

Activation precision (`Weight.refine`, set by the runtime from the engine's
`act_precision`). The block-quantized kernels quantize their input x to 8
bits per block (docs/quantization.md): x = x8 + r with |r| <= d/2 per
element (d = block max / 127). With "q8x2" the rows [x; r] go through the
kernel together, r quantized by the same rule (its step is at most d/254),
and the two halves of the output are added: W x8 + W r8, an input error
about 250 times smaller, as if x had ~15 bits. The weights are read once
for both rows, so a bandwidth-bound decode step costs little more; compute
(prefill) doubles. "q8" is the single pass llama.cpp also makes.
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
    if not w.refine:
        return ops.linear(x, w.data, bias, wtype=w.wtype, activation=activation, out=out)
    y = _fold(ops.linear(with_residual(x, w.act_format), w.data, wtype=w.wtype), bias, None)
    return _activate(y, activation, out)


def linears(x: np.ndarray, ws: Sequence[Weight], biases: Sequence[np.ndarray | None] | None = None,
            outs: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """x @ W_i.T + b_i for weights sharing x (into outs[i] when given): one
    linear_multi call, f32 included, unless the weights need different
    passes (some transposed, or refined activations of different formats)."""
    biases = biases or [None] * len(ws)
    outs = outs or [None] * len(ws)
    if _mixed_layouts(ws):
        return [linear(x, w, b, out=o) for w, b, o in zip(ws, biases, outs, strict=True)]
    if not any(w.refine for w in ws):
        return ops.linear_multi(x, [w.data for w in ws], biases, wtypes=[w.wtype for w in ws], outs=outs,
                                transposed=ws[0].transposed)
    if len({w.act_format for w in ws}) > 1:  # a residual corrects one quantization rule only
        return [linear(x, w, b, out=o) for w, b, o in zip(ws, biases, outs, strict=True)]
    ys = ops.linear_multi(with_residual(x, ws[0].act_format), [w.data for w in ws], wtypes=[w.wtype for w in ws])
    return [_fold(y, b, o) for y, b, o in zip(ys, biases, outs, strict=True)]


def swiglu(x: np.ndarray, gate: Weight, up: Weight, down: Weight, biases=(None, None, None),
           outs=(None, None, None)) -> np.ndarray:
    """down(silu(gate(x)) * up(x)); outs: optional (gate, up, down) result
    buffers."""
    if _mixed_layouts((gate, up)) or gate.refine or up.refine:
        g, u = linears(x, (gate, up), biases[:2], outs[:2])
        g = _activate(g, "silu", g)
        g *= u
    else:  # the gated pair in one call, SwiGLU's product fused
        g, _ = ops.linear_multi(x, [gate.data, up.data], biases[:2], wtypes=[gate.wtype, up.wtype],
                                activation="silu", glu=True, outs=outs[:2], transposed=gate.transposed)
    return linear(g, down, biases[2], out=outs[2])


def _mixed_layouts(ws: Sequence[Weight]) -> bool:
    # linear_multi's transposed flag is for all weights at once; a [K, N]
    # weight is always f32 (the runtime transposes other types at load)
    return len({w.transposed for w in ws}) > 1


def with_residual(x: np.ndarray, act_format: str) -> np.ndarray:
    """[x; r] (2M rows): x and what the kernel's 8-bit quantization of x
    leaves out, r = x - d * q, read from the driver's own blocks."""
    x = np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1])
    m, k = x.shape
    blocks = ops.quantize_activations(x, act_format)
    if act_format == "q8_32":  # float32 d, int32 sum, int8 q[32]: 40 bytes
        b = blocks.reshape(m, k // 32, 40)
        d, q = b[..., :4].copy().view(np.float32), b[..., 8:].view(np.int8)
    else:  # q8_256: float32 d, int8 q[256], int16 bsums[16]: 292 bytes
        b = blocks.reshape(m, k // 256, 292)
        d, q = b[..., :4].copy().view(np.float32), b[..., 4:260].view(np.int8)
    out = np.empty((2 * m, k), np.float32)
    out[:m] = x
    np.subtract(x, (q.astype(np.float32) * d).reshape(m, k), out=out[m:])
    return out


def _fold(y2: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None) -> np.ndarray:
    m = y2.shape[0] // 2
    y = np.add(y2[:m], y2[m:], out=out)
    if bias is not None:
        y += bias
    return y


def _activate(y: np.ndarray, activation: str, out: np.ndarray | None) -> np.ndarray:
    """The kernels' epilogue activations, in float32 NumPy (refined path)."""
    if activation == "silu":
        with np.errstate(over="ignore"):  # exp(-y) = inf for y < -88: y / inf = -0, silu's limit
            y = y / (np.float32(1) + np.exp(-y))
    elif activation == "gelu_tanh":
        c = np.float32(np.sqrt(2 / np.pi))
        y = np.float32(0.5) * y * (np.float32(1) + np.tanh(c * (y + np.float32(0.044715) * y * y * y)))
    elif activation == "relu":
        y = np.maximum(y, np.float32(0))
    elif activation != "none":
        raise ValueError(f"act_precision='q8x2' does not support activation {activation!r} "
                         f"(silu, gelu_tanh, relu, none); use act_precision='q8'")
    if out is None:
        return y
    np.copyto(out, y)
    return out
