"""Threading: bitwise-identical results for any thread count, concurrent
callers, fork safety, and the environment knobs (read in fresh processes)."""

import os
import subprocess
import threading

import numpy as np
import pytest

import edgecore
from edgecore import ops
from edgecore._child import python_command


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield
    ops.set_num_threads(before)


def big_case(transposed=False, m=8):
    rng = np.random.default_rng(42)
    x = rng.standard_normal((m, 1024)).astype(np.float32)
    w = rng.standard_normal((1024, 777) if transposed else (777, 1024)).astype(np.float32)
    b = rng.standard_normal(777).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [1, 8, 70])
def test_result_independent_of_thread_count(tier, threads, transposed, m):
    x, w, b = big_case(transposed, m)
    results = []
    for n in (1, 2, 3, 4):
        ops.set_num_threads(n)
        results.append(ops.fused_linear(x, w, b, activation="gelu", transposed=transposed))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_topk_independent_of_thread_count(threads):
    logits = np.random.default_rng(1).standard_normal((4096, 64)).astype(np.float32)
    ops.set_num_threads(1)
    one = ops.route_topk(logits, 8)
    ops.set_num_threads(3)
    many = ops.route_topk(logits, 8)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_concurrent_python_threads_get_identical_results(threads):
    ops.set_num_threads(2)
    x, w, b = big_case()
    want = ops.fused_linear(x, w, b, activation="relu")
    errors = []

    def worker():
        for _ in range(30):
            y = ops.fused_linear(x, w, b, activation="relu")
            if not np.array_equal(y, want):
                errors.append("mismatch")
            ids, _ = ops.route_topk(x[:, :64].copy(), 2)
            if ids.shape != (8, 2):
                errors.append("topk shape")

    pool = [threading.Thread(target=worker) for _ in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in pool), "a kernel call hung"
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_after_threads_were_used(threads):
    ops.set_num_threads(2)
    x, w, b = big_case()
    want = ops.fused_linear(x, w, b)
    pid = os.fork()
    if pid == 0:  # child: the pool's workers did not survive the fork
        try:
            ok = np.array_equal(ops.fused_linear(x, w, b), want)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_set_num_threads_validation(threads):
    ops.set_num_threads(3)
    assert ops.get_num_threads() == 3
    with pytest.raises(ValueError, match=r"\[1, 256\]"):
        ops.set_num_threads(0)
    with pytest.raises(TypeError):
        ops.set_num_threads(2.0)
    with pytest.raises(TypeError):
        ops.set_num_threads(True)
    assert edgecore.get_num_threads() == 3


def test_small_calls_stay_on_one_thread_by_measurement(threads):
    ops.set_num_threads(2)
    cal = ops.thread_calibration()
    assert cal["calibrated"] and cal["threads"] == 2
    assert cal["dispatch_ns"] > 0 and cal["linear_macs_per_ns"] > 0
    # the threshold is derived from the two measurements (2x break-even)
    want = 2 * cal["dispatch_ns"] * cal["linear_macs_per_ns"] * 2 / (2 - 1)
    assert cal["min_parallel_macs"] == pytest.approx(want)


def run_python(code, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORE_")}
    full_env.update(env)
    return subprocess.run(python_command(code), env=full_env, capture_output=True, text=True, timeout=120)


def test_env_num_threads():
    r = run_python("import edgecore; print(edgecore.get_num_threads())", EDGECORE_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    r = run_python("import edgecore; edgecore.get_num_threads()", EDGECORE_NUM_THREADS="lots")
    assert r.returncode != 0 and "EDGECORE_NUM_THREADS='lots' is not a whole number" in r.stderr


def test_env_isa_caps_the_tier():
    r = run_python("import edgecore; print(edgecore.capabilities()['active'])", EDGECORE_ISA="scalar")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "scalar"
    r = run_python("import edgecore; edgecore.capabilities()", EDGECORE_ISA="sse9")
    assert r.returncode != 0 and "EDGECORE_ISA='sse9' is not a tier of this build" in r.stderr


def test_default_threads_honour_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity API")
    code = "import os; os.sched_setaffinity(0, {0}); import edgecore; print(edgecore.get_num_threads())"
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
