#!/usr/bin/env bash
# Build the C kernels with AddressSanitizer + UndefinedBehaviorSanitizer and
# run the kernel, weights and router tests against that build.
#
#   tools/check-sanitizers.sh [PYTHON]      (PYTHON: an interpreter with
#                                            numpy, Cython, setuptools,
#                                            pytest, hypothesis, safetensors)
#
# The build is a separate in-place build in a temporary copy of the tracked
# sources, so it never touches this checkout's (or an installed) extension.
# -fno-sanitize-recover=all turns every UBSan report into an abort, so a
# finding fails the tests instead of scrolling by. The Python interpreter is
# not instrumented, so libasan must be loaded first (LD_PRELOAD); leak
# checking is off because the interpreter's own allocations at exit are not
# ours. The tests parametrize every kernel tier this CPU runs (tests/conftest.py
# `tier` and `kernel_config`), so every tier's kernels run instrumented.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=${1:-${PYTHON:-python3}}
CC=${CC:-gcc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgecore-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

ASAN_LIB=$("$CC" -print-file-name=libasan.so)
UBSAN_LIB=$("$CC" -print-file-name=libubsan.so)
if [ ! -e "$ASAN_LIB" ] || [ ! -e "$UBSAN_LIB" ]; then
    echo "check-sanitizers: $CC has no libasan.so/libubsan.so (install the compiler's sanitizer runtimes)" >&2
    exit 1
fi

# the tracked files (plus untracked, not ignored ones), never build outputs
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$WORK"

# -O1: GCC needs over ten minutes for one AVX-512 source with the sanitizers
# at -O3, about a minute at -O1; the checks are the same (EDGECORE_EXTRA_CFLAGS
# comes after setup.py's own flags, so its -O1 wins)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1"
echo "check-sanitizers: building with $SAN" >&2
(cd "$WORK" && CC="$CC" EDGECORE_EXTRA_CFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" \
    "$PY" setup.py -q build_ext --inplace >build.log 2>&1) || { tail -40 "$WORK/build.log" >&2; exit 1; }
echo "check-sanitizers: built in $((SECONDS - START)) s" >&2
nm -D "$WORK"/edgecore/_kernels*.so >"$WORK/symbols.txt"  # not piped into grep -q: pipefail + SIGPIPE
grep -q __asan_report "$WORK/symbols.txt" || {
    echo "check-sanitizers: the extension is not instrumented (no __asan_report symbols)" >&2
    exit 1
}

cd "$WORK"
export PYTHONPATH=$WORK
# reports go to files as well as stderr: pytest captures a test's stderr, and
# an abort loses what it captured, so they are printed below on failure
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$WORK/sanitizer-report
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$WORK/sanitizer-report
# the sanitized copy, not an installed wheel, is what the tests import
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" "$PY" -c \
    "import edgecore, sys; assert edgecore.__file__.startswith('$WORK'), edgecore.__file__; print('sanitized build:', edgecore.capabilities())"
# test_long_context_does_not_allocate_per_call preloads its own malloc counter
# in a child process, which cannot come before the ASan runtime (and ASan
# replaces malloc anyway); the regular test run covers it
rc=0
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" "$PY" -m pytest -q -x -p no:cacheprovider \
    --deselect tests/kernels/test_attention.py::test_long_context_does_not_allocate_per_call \
    tests/kernels tests/weights tests/moe "${@:2}" || rc=$?
if [ "$rc" != 0 ]; then
    for report in "$WORK"/sanitizer-report.*; do
        [ -e "$report" ] && { echo "---- $report" >&2; cat "$report" >&2; }
    done
    echo "check-sanitizers: FAILED (pytest exit $rc)" >&2
    exit "$rc"
fi
echo "check-sanitizers: passed in $((SECONDS - START)) s (build and tests)" >&2
