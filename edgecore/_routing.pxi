# MoE routing: EMA affinity, top-k, the memory-aware router core
# (included by _kernels.pyx).

# ---- EMA affinity update ----------------------------------------------------

def ema_update(scores, activated, *, double decay, double boost, double max_score=1.0, counts=None):
    """Expert affinity, in place: scores *= decay; scores[i] += boost for each
    distinct id i in ``activated`` (an id listed twice counts once); then
    clamp every score to [0, max_score] (a NaN score becomes 0).

    scores: float32 [E], writeable. activated: int32 or int64 ids (both read
    in place), any shape, C-contiguous. counts: optional uint64 [E],
    incremented once per distinct activated id. decay must be in [0, 1],
    boost >= 0 and max_score > 0, all finite. An id outside [0, E) raises
    ValueError and leaves scores and counts untouched.
    """
    cdef str fn = "ema_update"
    cdef cnp.ndarray sa = _as_array(scores, fn, "scores")
    cdef cnp.ndarray ia = _as_array(activated, fn, "activated")
    cdef cnp.ndarray ca = None
    cdef cnp.ndarray scratch = None
    cdef uint64_t *counts_ptr = NULL
    cdef uint64_t *scratch_ptr = NULL
    cdef int64_t bad
    cdef size_t e, n_ids
    cdef int itype = cnp.PyArray_TYPE(ia)

    _check(sa, cnp.NPY_FLOAT32, fn, "scores", True)
    if cnp.PyArray_NDIM(sa) != 1 or cnp.PyArray_DIM(sa, 0) < 1:
        raise ValueError(f"{fn}: scores must be 1-D [E] with E >= 1, got shape {_shape(sa)}")
    e = <size_t>cnp.PyArray_DIM(sa, 0)
    if not (isfinite(decay) and 0.0 <= decay <= 1.0):
        raise ValueError(f"{fn}: decay must be in [0, 1], got {decay}")
    if not (isfinite(boost) and boost >= 0.0):
        raise ValueError(f"{fn}: boost must be finite and >= 0, got {boost}")
    if not (isfinite(max_score) and max_score > 0.0):
        raise ValueError(f"{fn}: max_score must be finite and > 0, got {max_score}")
    if itype == cnp.NPY_INT64:
        _check(ia, cnp.NPY_INT64, fn, "activated", False)
    elif itype == cnp.NPY_INT32:
        _check(ia, cnp.NPY_INT32, fn, "activated", False)
    else:
        raise TypeError(f"{fn}: activated must hold int32 or int64 expert ids, got dtype {ia.dtype}")
    n_ids = <size_t>cnp.PyArray_SIZE(ia)
    if counts is not None:
        ca = _as_array(counts, fn, "counts")
        _check(ca, cnp.NPY_UINT64, fn, "counts", True)
        if cnp.PyArray_NDIM(ca) != 1 or <size_t>cnp.PyArray_DIM(ca, 0) != e:
            raise ValueError(f"{fn}: counts must have shape ({e},), got {_shape(ca)}")
        if _overlaps(ca, sa):
            raise ValueError(f"{fn}: counts must not overlap scores")
        counts_ptr = <uint64_t *>cnp.PyArray_DATA(ca)
    if e > EC_EMA_STACK_EXPERTS:
        scratch = np.empty((e + 63) // 64, dtype=np.uint64)
        scratch_ptr = <uint64_t *>cnp.PyArray_DATA(scratch)

    with nogil:
        if itype == cnp.NPY_INT64:  # read in place: no narrowed copy
            bad = ec_ema_update_f32_i64(<float *>cnp.PyArray_DATA(sa), e, <const int64_t *>cnp.PyArray_DATA(ia),
                                        n_ids, <float>decay, <float>boost, <float>max_score, counts_ptr,
                                        scratch_ptr)
        else:
            bad = ec_ema_update_f32(<float *>cnp.PyArray_DATA(sa), e, <const int32_t *>cnp.PyArray_DATA(ia),
                                    n_ids, <float>decay, <float>boost, <float>max_score, counts_ptr, scratch_ptr)
    if bad >= 0:
        _raise_bad_id(fn, ia.reshape(-1), e)


def _raise_bad_id(str fn, ids, size_t e):
    bad = np.flatnonzero((ids < 0) | (ids >= e))[0]
    raise ValueError(f"{fn}: activated[{bad}] = {ids[bad]} is not an expert id in [0, {e})")


# ---- top-k routing ----------------------------------------------------------

def route_topk(logits, k, *, bonus=None):
    """Choose the top-k experts per token from gate logits.

    logits: float32 [T, E] (or [E] for one token). bonus: optional float32 [E]
    added to every row before ranking (finite values only). Per row, the k
    experts with the highest ``logit + bonus`` are chosen (NaN ranks as -inf;
    ties go to the lower id). Returns ``(ids, weights)``: int32 and float32
    [T, k] (or [k]), ids in descending adjusted-score order, weights the
    softmax of the chosen *original* logits, renormalised over the k (the
    Mixtral rule). A row with fewer than k finite logits, or whose choice
    includes a +inf logit, has undefined weights and raises ValueError naming
    the row.
    """
    cdef str fn = "route_topk"
    cdef cnp.ndarray la = _as_array(logits, fn, "logits")
    cdef cnp.ndarray ba = None
    cdef cnp.ndarray ids, weights
    cdef const float *bias_ptr = NULL
    cdef cnp.npy_intp t, e, j, kn
    cdef cnp.npy_intp dims[2]
    cdef int64_t bad

    # a bool is an int to Python, not a number of experts
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{fn}: k must be an integer number of experts, got {type(k).__name__} {k!r}")
    _check(la, cnp.NPY_FLOAT32, fn, "logits", False)
    cdef int nd = cnp.PyArray_NDIM(la)
    if nd == 2:
        t = cnp.PyArray_DIM(la, 0)
        e = cnp.PyArray_DIM(la, 1)
    elif nd == 1:
        t = 1
        e = cnp.PyArray_DIM(la, 0)
    else:
        raise ValueError(f"{fn}: logits must be [T, E] or [E], got shape {_shape(la)}")
    if e < 1:
        raise ValueError(f"{fn}: logits must have at least one expert column, got shape {_shape(la)}")
    if k < 1 or k > e:
        raise ValueError(f"{fn}: k must be in [1, {e}] for {e} experts, got {k}")
    kn = k
    if bonus is not None:
        ba = _as_array(bonus, fn, "bonus")
        _check(ba, cnp.NPY_FLOAT32, fn, "bonus", False)
        if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != e:
            raise ValueError(f"{fn}: bonus must have shape ({e},) to match logits {_shape(la)}, got {_shape(ba)}")
        bias_ptr = <const float *>cnp.PyArray_DATA(ba)
        for j in range(e):
            if not isfinite(bias_ptr[j]):
                raise ValueError(f"{fn}: bonus[{j}] = {bias_ptr[j]} is not finite")

    if nd == 2:
        dims[0] = t
        dims[1] = kn
    else:
        dims[0] = kn
    ids = <cnp.ndarray>cnp.PyArray_EMPTY(nd, dims, cnp.NPY_INT32, 0)
    weights = <cnp.ndarray>cnp.PyArray_EMPTY(nd, dims, cnp.NPY_FLOAT32, 0)
    with nogil:
        bad = ec_route_topk_f32(<const float *>cnp.PyArray_DATA(la), bias_ptr, t, e, kn,
                                <int32_t *>cnp.PyArray_DATA(ids), <float *>cnp.PyArray_DATA(weights))
    if bad >= 0:
        row = la.reshape(t, e)[bad]
        finite = int(np.isfinite(row).sum())
        if finite < k:
            raise ValueError(f"{fn}: row {bad} has {finite} finite logits, fewer than k={kn}; "
                             f"its routing weights are undefined")
        raise ValueError(f"{fn}: row {bad} selects a +inf logit (expert {int(np.argmax(row))}); "
                         f"its routing weights are undefined")
    return ids, weights


# ---- memory-aware MoE router ------------------------------------------------
#
# One compiled call per route: the Routing result owns small inline buffers
# (decode steps need no heap at all) and builds its NumPy views only when
# they are read, because creating an array costs more than routing a token.

cdef extern from "<pthread.h>" nogil:
    # a plain mutex: ~20 ns uncontended, a third of a PyThread lock
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *mutex, const void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *mutex)
    int pthread_mutex_lock(pthread_mutex_t *mutex)
    int pthread_mutex_unlock(pthread_mutex_t *mutex)

POLICIES = ("lru", "lfu", "affinity")
cdef dict _POLICY_CODES = {"lru": EC_EVICT_LRU, "lfu": EC_EVICT_LFU, "affinity": EC_EVICT_AFFINITY}
cdef enum:
    # a decode step's ids, weights and plan fit in the Routing object itself
    ROUTING_INLINE_INTS = 32
    ROUTING_INLINE_FLOATS = 8
    # Below this many logits a route takes well under 10 us and keeps the GIL:
    # releasing and re-taking it would cost more than the routing, and under
    # contention re-taking it can wait a whole switch interval. The router's
    # own lock serialises routes either way.
    ROUTE_NOGIL_MIN_LOGITS = 4096


@cython.final
@cython.freelist(16)
cdef class Routing:
    """The result of one ``route()`` call: immutable, safe to keep.

    ``ids``/``weights``: int32/float32 ``[T, k]`` (``[k]`` for 1-D logits),
    the chosen experts per token in descending bonus-adjusted order and the
    softmax of their original logits, renormalised over the k.
    ``page_in``: the distinct chosen experts that were not resident, in order
    of first use (urgent: the tokens need them). ``evict``: experts to drop
    (explicit; nothing is implied). ``prefetch``: experts to load in the
    background. All are read-only int32 arrays, built on first access.
    An id in both ``page_in`` and ``evict`` is needed by this call but does
    not fit afterwards (only when one call activates more experts than the
    capacity): load it, use it, drop it.
    """

    cdef int32_t *_ids
    cdef float *_weights
    cdef int32_t *_plan  # page_in, evict, prefetch back to back
    cdef Py_ssize_t _t, _k, _n_page_in, _n_evict, _n_prefetch
    cdef bint _flat
    cdef void *_heap_rows
    cdef int32_t *_heap_plan
    cdef object _ids_view, _weights_view, _page_in_view, _evict_view, _prefetch_view
    cdef int32_t _inline_ints[ROUTING_INLINE_INTS]
    cdef float _inline_floats[ROUTING_INLINE_FLOATS]

    def __init__(self):
        raise TypeError("Routing objects are made by MemoryAwareRouter.route()")

    def __dealloc__(self):
        PyMem_RawFree(self._heap_rows)
        PyMem_RawFree(self._heap_plan)

    cdef int _prepare(self, Py_ssize_t t, Py_ssize_t k, bint flat) except -1:
        cdef size_t n = <size_t>(t * k)
        self._t, self._k, self._flat = t, k, flat
        self._heap_rows = self._heap_plan = NULL
        if n <= ROUTING_INLINE_FLOATS and n <= ROUTING_INLINE_INTS:
            self._ids, self._weights = self._inline_ints, self._inline_floats
        else:
            self._heap_rows = PyMem_RawMalloc(n * (sizeof(int32_t) + sizeof(float)))
            if self._heap_rows == NULL:
                raise MemoryError(f"route: cannot allocate the routing of {t} tokens")
            self._ids = <int32_t *>self._heap_rows
            self._weights = <float *>(self._ids + n)
        return 0

    cdef int _take_plan(self, const ec_route_plan *plan) noexcept nogil:
        """Copy the plan out of the router's scratch. Returns -1 if out of memory."""
        cdef size_t n = plan.n_page_in + plan.n_evict + plan.n_prefetch
        cdef size_t used = <size_t>(self._t * self._k) if self._ids == self._inline_ints else 0
        if used + n <= ROUTING_INLINE_INTS:
            self._plan = self._inline_ints + used
        else:
            self._heap_plan = <int32_t *>PyMem_RawMalloc(n * sizeof(int32_t))
            if self._heap_plan == NULL:
                return -1
            self._plan = self._heap_plan
        memcpy(self._plan, plan.page_in, plan.n_page_in * sizeof(int32_t))
        memcpy(self._plan + plan.n_page_in, plan.evict, plan.n_evict * sizeof(int32_t))
        memcpy(self._plan + plan.n_page_in + plan.n_evict, plan.prefetch, plan.n_prefetch * sizeof(int32_t))
        self._n_page_in, self._n_evict, self._n_prefetch = plan.n_page_in, plan.n_evict, plan.n_prefetch
        return 0

    cdef object _view(self, void *data, int nd, Py_ssize_t d0, Py_ssize_t d1, int typenum):
        cdef cnp.npy_intp dims[2]
        dims[0] = d0
        dims[1] = d1
        cdef cnp.ndarray a = <cnp.ndarray>cnp.PyArray_SimpleNewFromData(nd, dims, typenum, data)
        cnp.set_array_base(a, self)  # the views keep this Routing (their memory) alive
        cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)
        return a

    cdef object _rows(self, void *data, int typenum):
        if self._flat:
            return self._view(data, 1, self._k, 0, typenum)
        return self._view(data, 2, self._t, self._k, typenum)

    @property
    def ids(self):
        """int32 [T, k] chosen experts (descending adjusted score)."""
        if self._ids_view is None:
            self._ids_view = self._rows(self._ids, cnp.NPY_INT32)
        return self._ids_view

    @property
    def weights(self):
        """float32 [T, k] routing weights (softmax of the chosen original logits)."""
        if self._weights_view is None:
            self._weights_view = self._rows(self._weights, cnp.NPY_FLOAT32)
        return self._weights_view

    @property
    def page_in(self):
        """int32 ids to load now (chosen, not resident), in order of first use."""
        if self._page_in_view is None:
            self._page_in_view = self._view(self._plan, 1, self._n_page_in, 0, cnp.NPY_INT32)
        return self._page_in_view

    @property
    def evict(self):
        """int32 ids to drop (room for the page-ins, then for the prefetches)."""
        if self._evict_view is None:
            self._evict_view = self._view(self._plan + self._n_page_in, 1, self._n_evict, 0, cnp.NPY_INT32)
        return self._evict_view

    @property
    def prefetch(self):
        """int32 ids to load in the background (highest affinity first)."""
        if self._prefetch_view is None:
            self._prefetch_view = self._view(self._plan + self._n_page_in + self._n_evict, 1, self._n_prefetch,
                                             0, cnp.NPY_INT32)
        return self._prefetch_view

    @property
    def tokens(self):
        """Rows routed (T)."""
        return self._t

    @property
    def top_k(self):
        """Experts per token (k)."""
        return self._k

    @property
    def needs_paging(self):
        """True if page_in, evict or prefetch is non-empty (a cheap check
        that avoids building the arrays on the common all-hit path)."""
        return self._n_page_in + self._n_evict + self._n_prefetch > 0

    def __repr__(self):
        return (f"Routing(tokens={self._t}, top_k={self._k}, page_in={self.page_in.tolist()}, "
                f"evict={self.evict.tolist()}, prefetch={self.prefetch.tolist()})")


cdef class RouterCore:
    """Compiled state and hot path of ``edgecore.moe.MemoryAwareRouter``
    (use that class: it validates the configuration and documents the
    model). Every method holds the router's lock, so calls from several
    threads are serialised and each sees a consistent state."""

    cdef ec_router r
    cdef ec_route_plan _plan
    cdef pthread_mutex_t _lock
    cdef cnp.ndarray _affinity, _bonus, _counts, _last_used, _prefetched_at, _resident
    cdef cnp.ndarray _bits, _true_ids, _true_weights, _plan_ids

    def __cinit__(self, *args, **kwargs):
        if pthread_mutex_init(&self._lock, NULL) != 0:
            raise MemoryError("router: cannot create its lock")

    def __dealloc__(self):
        pthread_mutex_destroy(&self._lock)

    cdef inline void _acquire(self) noexcept nogil:
        pthread_mutex_lock(&self._lock)

    cdef inline void _release(self) noexcept nogil:
        pthread_mutex_unlock(&self._lock)

    def _setup(self, Py_ssize_t num_experts, Py_ssize_t top_k, float cache_bonus, bint memory_aware,
               float decay, float boost, float max_score, int64_t capacity, str policy,
               Py_ssize_t prefetch_depth, uint64_t prefetch_window, uint64_t expert_bytes):
        """Allocate the state (validated arguments only; called once by __init__)."""
        if self.r.n_experts:
            raise RuntimeError("router: already set up")
        cdef Py_ssize_t words = (num_experts + 63) // 64
        self._affinity = np.zeros(num_experts, np.float32)
        self._bonus = np.zeros(num_experts, np.float32)
        self._counts = np.zeros(num_experts, np.uint64)
        self._last_used = np.zeros(num_experts, np.uint64)
        self._prefetched_at = np.zeros(num_experts, np.uint64)
        self._resident = np.zeros(num_experts, np.uint8)
        self._bits = np.zeros((3, words), np.uint64)
        self._true_ids = np.zeros(top_k, np.int32)
        self._true_weights = np.zeros(top_k, np.float32)
        self._plan_ids = np.zeros((3, num_experts), np.int32)
        self.r.top_k = top_k
        self.r.decay, self.r.boost, self.r.max_score = decay, boost, max_score
        self.r.prefetch_window = prefetch_window
        self.r.affinity = <float *>cnp.PyArray_DATA(self._affinity)
        self.r.bonus = <float *>cnp.PyArray_DATA(self._bonus)
        self.r.counts = <uint64_t *>cnp.PyArray_DATA(self._counts)
        self.r.last_used = <uint64_t *>cnp.PyArray_DATA(self._last_used)
        self.r.prefetched_at = <uint64_t *>cnp.PyArray_DATA(self._prefetched_at)
        self.r.resident = <uint8_t *>cnp.PyArray_DATA(self._resident)
        self.r.active_bits = <uint64_t *>cnp.PyArray_DATA(self._bits)
        self.r.paged_bits = self.r.active_bits + words
        self.r.dropped_bits = self.r.active_bits + 2 * words
        self.r.true_ids = <int32_t *>cnp.PyArray_DATA(self._true_ids)
        self.r.true_weights = <float *>cnp.PyArray_DATA(self._true_weights)
        self._plan.page_in = <int32_t *>cnp.PyArray_DATA(self._plan_ids)
        self._plan.evict = self._plan.page_in + num_experts
        self._plan.prefetch = self._plan.page_in + 2 * num_experts
        self._configure(cache_bonus, memory_aware, capacity, policy, prefetch_depth, expert_bytes)
        # an uncapped router models an all-resident model; a capped one starts cold
        self._resident[:] = capacity < 0
        self.r.n_experts = num_experts  # last: marks the router as set up
        ec_router_set_resident(&self.r, self.r.resident)

    def _configure(self, float cache_bonus, bint memory_aware, int64_t capacity, str policy,
                   Py_ssize_t prefetch_depth, uint64_t expert_bytes):
        """Replace the bonus and paging settings (validated arguments only);
        affinity, counts, residency and metrics are kept."""
        cdef int code = _POLICY_CODES[policy]
        self._acquire()
        self.r.cache_bonus, self.r.memory_aware = cache_bonus, memory_aware
        self.r.capacity, self.r.policy = capacity, code
        self.r.prefetch_depth, self.r.expert_bytes = prefetch_depth, expert_bytes
        if self.r.n_experts:
            ec_router_set_resident(&self.r, self.r.resident)  # re-derives the bonus
        self._release()

    cdef int64_t _route_locked(self, const float *data, Py_ssize_t t, Routing out, int *oom) noexcept nogil:
        self._acquire()
        cdef int64_t bad = ec_router_route_f32(&self.r, data, t, out._ids, out._weights, &self._plan)
        if bad < 0:
            oom[0] = out._take_plan(&self._plan)
        self._release()
        return bad

    def route(self, logits):
        """Route gate logits: float32 ``[T, E]`` (or ``[E]`` for one token),
        C-contiguous. Returns a :class:`Routing`; updates affinity, counts,
        the residency model and the metrics. A row with fewer than k finite
        logits (all-NaN included) raises ValueError naming it, and leaves the
        router's state unchanged."""
        cdef str fn = "route"
        cdef cnp.ndarray la
        cdef Py_ssize_t t, e
        cdef int64_t bad
        cdef int oom = 0
        cdef const float *data
        if self.r.n_experts == 0:
            raise RuntimeError("route: the router was not initialised (call MemoryAwareRouter.__init__)")
        la = <cnp.ndarray>logits if cnp.PyArray_Check(logits) else _as_array(logits, fn, "logits")
        _check(la, cnp.NPY_FLOAT32, fn, "logits", False)
        cdef int nd = cnp.PyArray_NDIM(la)
        if nd == 2:
            t = cnp.PyArray_DIM(la, 0)
            e = cnp.PyArray_DIM(la, 1)
        elif nd == 1:
            t = 1
            e = cnp.PyArray_DIM(la, 0)
        else:
            raise ValueError(f"{fn}: logits must be [T, E] or [E], got shape {_shape(la)}")
        if e != <Py_ssize_t>self.r.n_experts:
            raise ValueError(f"{fn}: logits rows have {e} entries but the router has {self.r.n_experts} "
                             f"experts; expected shape (T, {self.r.n_experts})")
        if t < 1:
            raise ValueError(f"{fn}: logits has no rows (shape {_shape(la)}); route at least one token")
        cdef Routing out = Routing.__new__(Routing)
        out._prepare(t, self.r.top_k, nd == 1)
        data = <const float *>cnp.PyArray_DATA(la)
        if t * e >= ROUTE_NOGIL_MIN_LOGITS:
            with nogil:
                bad = self._route_locked(data, t, out, &oom)
        else:
            bad = self._route_locked(data, t, out, &oom)
        if bad >= 0:
            row = la.reshape(t, e)[bad]
            finite = int(np.isfinite(row).sum())
            if finite < <Py_ssize_t>self.r.top_k:
                raise ValueError(f"{fn}: row {bad} has {finite} finite logits, fewer than top_k="
                                 f"{self.r.top_k}; its routing weights are undefined")
            raise ValueError(f"{fn}: row {bad} selects a +inf logit (expert {int(np.argmax(row))}); "
                             f"its routing weights are undefined")
        if oom:
            raise MemoryError(f"{fn}: cannot allocate the paging plan")
        return out

    def set_resident(self, mask):
        """Tell the router which experts are resident: bool (or uint8) ``[E]``.
        The cache calls this whenever its contents change."""
        cdef str fn = "set_resident"
        if self.r.n_experts == 0:
            raise RuntimeError(f"{fn}: the router was not initialised")
        cdef cnp.ndarray ma = _as_array(mask, fn, "mask")
        cdef int typenum = cnp.PyArray_TYPE(ma)
        if typenum != cnp.NPY_BOOL and typenum != cnp.NPY_UINT8:
            raise TypeError(f"{fn}: mask must be a bool array, got dtype {ma.dtype}")
        if cnp.PyArray_NDIM(ma) != 1 or cnp.PyArray_DIM(ma, 0) != <Py_ssize_t>self.r.n_experts:
            raise ValueError(f"{fn}: mask must have shape ({self.r.n_experts},), got {_shape(ma)}")
        if not cnp.PyArray_IS_C_CONTIGUOUS(ma):
            ma = np.ascontiguousarray(ma)
        cdef const uint8_t *p = <const uint8_t *>cnp.PyArray_DATA(ma)
        with nogil:
            self._acquire()
            ec_router_set_resident(&self.r, p)
            self._release()

    def _metrics(self):
        """(routes, tokens, hits, misses, bytes_paged_in, evictions,
        prefetches, prefetch_used, rerouted, gate_mass_sum)."""
        self._acquire()
        cdef ec_router_metrics m = self.r.metrics
        self._release()
        return (m.routes, m.tokens, m.hits, m.misses, m.bytes_paged_in, m.evictions, m.prefetches,
                m.prefetch_used, m.rerouted, m.gate_mass_sum)

    def _reset_metrics(self):
        self._acquire()
        memset(&self.r.metrics, 0, sizeof(ec_router_metrics))
        self._release()

    def _state(self):
        """Copies of (affinity, counts, last_used, resident as bool)."""
        self._acquire()
        try:
            return (self._affinity.copy(), self._counts.copy(), self._last_used.copy(),
                    self._resident.astype(bool))
        finally:
            self._release()

    @property
    def num_experts(self):
        """Experts per layer (E)."""
        return self.r.n_experts

    @property
    def top_k(self):
        """Experts chosen per token (k)."""
        return self.r.top_k

    @property
    def cache_bonus(self):
        """Logit-scale bonus added to resident experts (as float32)."""
        return self.r.cache_bonus

    @property
    def memory_aware(self):
        """Whether the bonus is applied."""
        return bool(self.r.memory_aware)

    @property
    def capacity(self):
        """Resident experts at most (None: unlimited)."""
        return None if self.r.capacity < 0 else self.r.capacity

    @property
    def policy(self):
        """Eviction policy: "lru", "lfu" or "affinity"."""
        return POLICIES[self.r.policy]

    @property
    def expert_bytes(self):
        """Bytes one page-in moves (for bytes_paged_in)."""
        return self.r.expert_bytes

    @property
    def prefetch_depth(self):
        """Prefetch suggestions per route at most."""
        return self.r.prefetch_depth

    @property
    def prefetch_window(self):
        """Routes within which a prefetched expert counts as used."""
        return self.r.prefetch_window

    @property
    def affinity_decay(self):
        return self.r.decay

    @property
    def affinity_boost(self):
        return self.r.boost

    @property
    def affinity_max(self):
        return self.r.max_score
