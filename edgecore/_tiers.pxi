# Tiers, features, threads and the environment (included by _kernels.pyx).

# ---- tiers and threads ------------------------------------------------------

MAX_THREADS = EC_MAX_THREADS  # the most threads set_num_threads accepts

def capabilities():
    """Kernel tiers and sub-features.

    ``{"compiled": [...], "available": [...], "active": name, "features":
    [...]}``. compiled: tiers built into this wheel; available: compiled and
    supported by this CPU and OS; active: the tier in use (the best
    available one, or the best one allowed by ``EDGECORE_ISA``). features:
    one dict per sub-feature (AVX-512 VNNI/BF16, AVX-VNNI, NEON dotprod,
    i8mm): name, tier (the tier it extends), compiled (its sources could be
    built), detected (this CPU and OS have it), active (enabled for
    dispatch now; by default every compiled and detected feature of the
    active tier and the tiers below it). weight_prefetch: how the avx512
    gemm kernels prefetch weights on this CPU ("non-temporal" on AMD, "l2"
    on other x86 CPUs, "none" off x86)."""
    cdef unsigned compiled = ec_features_compiled(), detected = ec_features_detected()
    cdef unsigned active = ec_active_features()
    return {
        "compiled": [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_compiled(t)],
        "available": [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_available(t)],
        "active": ec_tier_name(ec_active_tier()).decode(),
        "weight_prefetch": ec_weight_prefetch_name().decode(),
        "features": [
            {"name": ec_feature_name(b).decode(), "tier": ec_tier_name(ec_feature_tier(b)).decode(),
             "compiled": bool(compiled >> b & 1), "detected": bool(detected >> b & 1),
             "active": bool(active >> b & 1)}
            for b in range(EC_FEATURE_COUNT)
        ],
    }


def _use_tier(str name, features=None):
    """Point the dispatch table at one tier and enable exactly ``features``
    (names; None: every available feature that tier may use). Tests and
    debugging only: not synchronised with kernels running on other threads.
    Returns ``(tier, features)`` as they were, for restoring."""
    previous = (ec_tier_name(ec_active_tier()).decode(),
                [ec_feature_name(b).decode() for b in range(EC_FEATURE_COUNT) if ec_active_features() >> b & 1])
    tier = _TIER_BY_NAME.get(name)
    if tier is None or not ec_tier_available(tier):
        raise ValueError(f"tier {name!r} is not available here; available: {capabilities()['available']}")
    cdef unsigned mask = 0
    if features is not None:
        names = {ec_feature_name(b).decode(): b for b in range(EC_FEATURE_COUNT)}
        for f in ([features] if isinstance(features, str) else features):
            if f not in names:
                raise ValueError(f"unknown feature {f!r}; features: {', '.join(names)}")
            mask |= 1u << names[f]
    cdef int prev_tier = ec_active_tier()
    cdef unsigned prev_mask = ec_active_features()
    ec_set_active_tier(tier)
    cdef unsigned usable = ec_active_features()  # the default: all it may use
    if features is not None:
        if mask & ~usable:
            ec_set_active_tier(prev_tier)
            ec_set_active_features(prev_mask)
            names = [ec_feature_name(b).decode() for b in range(EC_FEATURE_COUNT) if usable >> b & 1]
            raise ValueError(f"features {sorted(features) if not isinstance(features, str) else [features]} "
                             f"are not all available to the {name} tier here; available to it: "
                             f"{', '.join(names) or 'none'}")
        ec_set_active_features(mask)
    return previous


def set_num_threads(n):
    """Set how many threads large kernel calls may use (the caller counts as
    one). Small calls stay on one thread regardless; see thread_calibration()."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if ec_set_num_threads(int(n)) != 0:
        raise ValueError(f"set_num_threads: n must be in [1, {EC_MAX_THREADS}], got {n}")


def get_num_threads():
    """Threads large kernel calls may use."""
    return ec_get_num_threads()


def thread_calibration():
    """The measurements behind the "is threading worth it" decision:
    dispatch_ns (round trip of an empty parallel run), linear_macs_per_ns
    (one thread) and min_parallel_macs (smaller calls stay on one thread).
    Measured on first use per (tier, thread count)."""
    cdef ec_thread_calibration c = ec_thread_calibration_get()
    return {
        "threads": ec_get_num_threads(),
        "calibrated": bool(c.calibrated),
        "dispatch_ns": c.dispatch_ns if c.calibrated else None,
        "linear_macs_per_ns": c.linear_macs_per_ns if c.calibrated else None,
        "min_parallel_macs": c.min_parallel_macs if c.calibrated else None,
    }


# ---- configuration from the environment (read once, never written) ----------

def _configure_from_env():
    from edgecore._cpus import usable_cpus
    from edgecore._env import EnvSettingError

    cap = os.environ.get("EDGECORE_ISA", "").strip().lower()
    compiled = [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_compiled(t)]
    if cap and cap not in compiled:
        raise EnvSettingError(f"EDGECORE_ISA={cap!r} is not a tier of this build; set it to one of "
                              f"{', '.join(compiled)}, or unset it")
    best = EC_TIER_SCALAR
    for t in range(EC_TIER_COUNT):
        # tiers are numbered in increasing capability within an architecture
        if ec_tier_available(t) and (not cap or t <= _TIER_BY_NAME[cap]):
            best = t
    ec_set_active_tier(best)

    raw = os.environ.get("EDGECORE_NUM_THREADS", "").strip()
    if raw:
        try:
            threads = int(raw)
        except ValueError:
            raise EnvSettingError(f"EDGECORE_NUM_THREADS={raw!r} is not a whole number; set it to a thread "
                                  f"count in [1, {EC_MAX_THREADS}], or unset it") from None
        if not 1 <= threads <= EC_MAX_THREADS:
            raise EnvSettingError(f"EDGECORE_NUM_THREADS={raw!r} is out of range; set it to a thread count in "
                                  f"[1, {EC_MAX_THREADS}], or unset it")
    else:
        threads = min(usable_cpus(), EC_MAX_THREADS)
    ec_set_num_threads(threads)

