# The conv kernels' last guard before code without bounds checks: do a call's arrays agree?
# It reads the C shapes of the typed memoryviews (``x.shape`` of a ``floating[:, :, :, ::1]``),
# so an entry point checks its arguments without making a Python object of each: passing them
# to ``_conv._check_shapes`` did, 1.5-2 us a call (AMD EPYC Zen 3: 4 of them for LeNet c2's
# forward, 10 for its backward).  ``_conv._check_shapes`` and ``_check_like``, which the other
# kernel modules call with Python objects, run these same checks.  Inline functions only, as in
# ``_parallel.pxd``.

cdef inline tuple shape_of(const Py_ssize_t *shape, int ndim):
    """The first ``ndim`` numbers of ``shape`` as a tuple (for a message)."""
    return tuple([shape[i] for i in range(ndim)])


cdef inline int check_conv_shapes(const Py_ssize_t *x, const Py_ssize_t *w, Py_ssize_t b_len,
                                  const Py_ssize_t *out, int sh, int sw, int pt, int pl,
                                  int dil_h=1, int dil_w=1) except -1:
    """ValueError unless x ``(N, H, W, C)``, w ``(kh, kw, C, K)``, b ``(K,)`` and out
    ``(N, H_out, W_out, K)`` agree, none is empty and the geometry is positive."""
    cdef Py_ssize_t N = x[0], H = x[1], W = x[2], C = x[3], kh = w[0], kw = w[1], K = w[3]
    if w[2] != C or b_len != K or out[0] != N or out[3] != K:
        raise ValueError(f"conv2d kernel: inconsistent shapes x {shape_of(x, 4)}, "
                         f"w {shape_of(w, 4)}, b {(b_len,)}, out {shape_of(out, 4)}")
    if sh < 1 or sw < 1 or pt < 0 or pl < 0 or min(N, H, W, C, kh, kw, K) < 1 \
            or out[1] < 1 or out[2] < 1 or dil_h < 1 or dil_w < 1:
        raise ValueError(f"conv2d kernel: bad geometry strides ({sh}, {sw}), pads ({pt}, {pl}), "
                         f"dilation ({dil_h}, {dil_w}), "
                         f"x {shape_of(x, 4)}, w {shape_of(w, 4)}, out {shape_of(out, 4)}")
    return 0


cdef inline int check_like(const Py_ssize_t *a, const Py_ssize_t *b, str name_a,
                           str name_b) except -1:
    """ValueError unless the 4-D shapes ``a`` (of ``name_a``) and ``b`` agree."""
    if a[0] != b[0] or a[1] != b[1] or a[2] != b[2] or a[3] != b[3]:
        raise ValueError(f"conv2d kernel: {name_a} {shape_of(a, 4)} must have the shape "
                         f"of {name_b} {shape_of(b, 4)}")
    return 0
