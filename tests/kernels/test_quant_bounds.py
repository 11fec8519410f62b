"""No weight-type kernel reads past its operands: ops.linear on every
quantized and half type x distinct kernel variant, with the weight, x and the scratch (the quantized
activations) each ending flush against an inaccessible page, at M and N
tails. SIMD micro-kernels load whole vectors from blocks of 18, 22 or 210
bytes, so an off-by-a-few read of the matrix's last block is an easy
mistake that the value tests cannot see (the bytes after an array are
usually mapped).

The checks run in a child process: a read into the guard page is a
segfault, reported here with the child's output (faulthandler says where)
instead of killing the test run. POSIX only (mmap + mprotect)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.quant import NAMES, distinct_configs

CHILD = textwrap.dedent(
    """
    import ctypes, faulthandler, mmap, sys
    import numpy as np
    sys.path.insert(0, {support!r})
    from support.quant import random_weights, use
    from edgecore import ops

    faulthandler.enable()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE
    keep = []

    def guarded(nbytes, dtype=np.uint8):
        # a fresh mapping whose last page is PROT_NONE; the array ends where it starts
        body = -(-max(nbytes, 1) // PAGE) * PAGE
        buf = mmap.mmap(-1, body + PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        if libc.mprotect(base + body, PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
        keep.append(buf)
        return np.frombuffer(buf, np.uint8, count=nbytes, offset=body - nbytes).view(dtype)

    rng = np.random.default_rng(0)
    for name, config in {cases!r}:
        block = 256 if name.endswith("_k") else 32
        for m, n, k in [(1, 1, block), (3, 7, 2 * block), (9, 17, 3 * block)]:
            w0 = random_weights(rng, name, n, k)
            w = guarded(w0.nbytes, w0.dtype).reshape(w0.shape)
            w[...] = w0
            x = guarded(m * k * 4, np.float32).reshape(m, k)
            x[...] = rng.standard_normal((m, k))
            with use(tuple(config)):
                scratch = guarded(ops.linear_scratch_bytes(name, m, k))
                got = ops.linear(x, w, wtype=name, scratch=scratch)
                want = ops.linear(x.copy(), w0, wtype=name)
            np.testing.assert_array_equal(got, want, err_msg=f"{{name}} {{config}} m={{m}} n={{n}} k={{k}}")
    print("ok", len({cases!r}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="LOUD SKIP: needs mmap + mprotect (POSIX)")
def test_no_kernel_reads_past_weights_x_or_scratch(tmp_path):
    cases = [
        (name, [config[0], list(config[1])]) for name in NAMES if name != "f32" for config in distinct_configs(name)
    ]
    support = str(Path(__file__).resolve().parents[1])
    script = CHILD.format(support=support, cases=cases)
    # cwd: `python -c` puts the working directory first on sys.path, and a
    # checkout there (no compiled extension) would shadow the installed package
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=support)
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip() == f"ok {len(cases)}"
