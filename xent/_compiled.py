"""The compiled kernels themselves (numba), at module level so that numba's disk cache finds
them again in a new process (a jitted closure is keyed by objects that differ in every process,
and would be compiled anew each time). Imported only by ``kernels.kernels``, after it has set
numba's cache directory; ``kernels``' docstring says what they compute."""

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .kernels import RowTargets

#: fastmath flags: reassociation lets the dot products vectorise; nothing that assumes finite
#: values (a logit of -inf must still give an exact loss)
_FAST = {"reassoc", "contract"}

#: the loss kernels' options. numpy's error model: a division by zero gives inf or NaN (which
#: the caller reads as divergence) instead of raising, so that a loop that divides has no
#: branch to an exception and vectorises
_OPTIONS = dict(nogil=True, cache=True, fastmath=_FAST, error_model="numpy")

jit = numba.njit(**_OPTIONS)
inline = numba.njit(**_OPTIONS, inline="always")


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 ``bits``: a bit cast, which vectorises
    (numba has no ``view`` of a scalar)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _prefetch(typingctx, rows, i, j):
    """Ask the CPU to bring the cache line of rows[i, j] (a C-ordered 2-D array) towards the
    core (llvm.prefetch: a read, kept in the outer caches); no effect on any result."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array,
                                           [args[1], args[2]], wraparound=False,
                                           boundscheck=False)
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        # read (0), locality 2 (the outer caches: the row is used a block later), data (1)
        builder.call(prefetch, [byte_pointer, ir.Constant(i32, 0), ir.Constant(i32, 2),
                                ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.none(rows, i, j), codegen


_LOG2_E = 1.4426950408889634
_LN2_HIGH = 6.93147180369123816490e-01  # ln 2 in two parts; k ln2_high is exact for |k| < 2^11
_LN2_LOW = 1.90821492927058770002e-10


@inline
def exp_of(x):
    """exp(x) for x <= 0 (a logit less the row's largest): within 1 ulp, 0 for -inf, NaN for
    NaN. Branch-free arithmetic instead of a call to ``np.exp``, so that a row's loop of them
    vectorises (ten took 26 against 54 ns, in cache).

    x = k ln 2 + s with k an integer and |s| <= ln(2) / 2 (Cody and Waite's reduction, ln 2
    in two parts so that k ln 2 is exact); exp(s) is its Taylor series to s^13 (the next
    term is below 2^-56 of it); 2^k is applied as 2^floor(k/2) 2^(k - floor(k/2)), two normal
    numbers even where exp(x) is subnormal."""
    clamped = max(x, -746.0)  # exp rounds to 0 below -745.14; keeps k small for x = -inf
    k = np.rint(clamped * _LOG2_E)
    s = (clamped - k * _LN2_HIGH) - k * _LN2_LOW
    p = 1.0 / 6227020800.0  # Horner's rule from 1/13!
    p = p * s + 1.0 / 479001600.0
    p = p * s + 1.0 / 39916800.0
    p = p * s + 1.0 / 3628800.0
    p = p * s + 1.0 / 362880.0
    p = p * s + 1.0 / 40320.0
    p = p * s + 1.0 / 5040.0
    p = p * s + 1.0 / 720.0
    p = p * s + 1.0 / 120.0
    p = p * s + 1.0 / 24.0
    p = p * s + 1.0 / 6.0
    p = p * s + 0.5
    p = p * s + 1.0
    p = p * s + 1.0
    whole = np.int64(k)
    half = whole >> 1
    low_factor = _float_from_bits((half + 1023) << 52)  # 2^half, built from its exponent bits
    high_factor = _float_from_bits((whole - half + 1023) << 52)
    return 0.0 if x < -746.0 else p * low_factor * high_factor


_LN2 = 0.6931471805599453
_SQRT2_LESS_1 = 0.41421356237309515


@inline
def log1p_of(e):
    """log(1 + e) for 0 <= e <= 1 (the sigmoid's e^-|z|), within 1 ulp; branch-free
    arithmetic (``np.log1p`` is a call), so that a block's loop of sigmoid rows vectorises.

    1 + e = 2^k (1 + f): k = 0 and f = e, or above sqrt(2) - 1, k = 1 and f = (e - 1) / 2;
    so s = f / (2 + f) is within +-0.172. log(1 + f) = 2 atanh(s) = 2s + s T, with
    T = (2/3) s^2 + (2/5) s^4 + ... + (2/21) s^20 (the next term is below 2^-55 of it);
    as 2s = f - s f, log(1 + f) = f - s (f - T): s's rounding reaches only the correction,
    not the leading f."""
    above = e > _SQRT2_LESS_1
    f = 0.5 * (e - 1.0) if above else e
    s = f / (2.0 + f)
    s2 = s * s
    t = 2.0 / 21.0  # Horner's rule in s^2
    t = t * s2 + 2.0 / 19.0
    t = t * s2 + 2.0 / 17.0
    t = t * s2 + 2.0 / 15.0
    t = t * s2 + 2.0 / 13.0
    t = t * s2 + 2.0 / 11.0
    t = t * s2 + 2.0 / 9.0
    t = t * s2 + 2.0 / 7.0
    t = t * s2 + 2.0 / 5.0
    t = t * s2 + 2.0 / 3.0
    log_1f = f - s * (f - t * s2)
    return log_1f + _LN2 if above else log_1f


@inline
def sigmoid_target(target, row, soft):
    """(class, p) of sigmoid row ``row`` of ``target`` (``RowTargets``): with ``soft``,
    p = P(class 1) = proba[row, 1] and the class the likelier one; else its label, p
    smoothed by eps."""
    if soft:
        proba = target.proba
        return (1 if proba[row, 1] > proba[row, 0] else 0), proba[row, 1]
    label = target.labels[row]
    return label, label * (1.0 - target.eps) + target.eps / 2.0


@inline
def sigmoid_row(z, truth, p):
    """A sigmoid row's (loss, q - p, 1 if right else 0) from its logit z and target p:
    loss = log(1 + e^z) - p z = max(z, 0) + log1p(e^-|z|) - p z, which does not overflow;
    q = 1 / (1 + e^-z), from the same e = e^-|z|."""
    e = exp_of(-abs(z))
    inverse = 1.0 / (1.0 + e)
    loss = max(z, 0.0) + log1p_of(e) - p * z
    q = inverse if z >= 0.0 else e * inverse
    right = 1 if (z > 0.0) == (truth == 1) else 0
    return loss, q - p, right


@inline
def block_space(k, rows):
    """The work space of a block of ``rows`` rows and k outputs: (z, r, losses, shifted,
    exps, top, total, best). z and r (rows, k) hold the logits and residuals, losses (rows,);
    the rest is the softmax's (``softmax_block``): shifted and exps (k rows,), (k, m) laid out
    flat for a block of m rows; top and total (rows,), best (rows,) int64."""
    return (np.empty((rows, k)), np.empty((rows, k)), np.empty(rows), np.empty(k * rows),
            np.empty(k * rows), np.empty(rows), np.empty(rows), np.empty(rows, np.int64))


@inline
def shifted_logits(z, shifted, top, best, m):
    """shifted[c m + t] = z[t, c] - top[t] for the m rows of a block (``shifted`` is (K, m)
    laid out flat), top[t] their largest logit and best[t] its class (the first, where several
    are largest). Class by class over the rows, so that each loop runs along the rows and
    vectorises; a block of one row (the lazy steps' default batch) goes along its classes
    instead, where those loops would each run once."""
    k = z.shape[1]
    if m == 1:
        top[0], best[0] = z[0, 0], 0
        for c in range(1, k):
            if z[0, c] > top[0]:
                top[0], best[0] = z[0, c], c
        for c in range(k):
            shifted[c] = z[0, c] - top[0]
        return
    for t in range(m):
        for c in range(k):
            shifted[c * m + t] = z[t, c]
    for t in range(m):
        top[t], best[t] = shifted[t], 0
    for c in range(1, k):
        for t in range(m):
            above = shifted[c * m + t] > top[t]  # strictly: the first largest stays
            best[t] = c if above else best[t]
            top[t] = shifted[c * m + t] if above else top[t]
    for c in range(k):
        for t in range(m):
            shifted[c * m + t] -= top[t]


@inline
def softmax_block(space, m, first, target, soft):
    """The softmax's links of the m rows of a block from ``first`` (their logits in z[t]):
    each row's loss in losses[t], q - p in r[t]; returns how many rows are right (their first
    largest logit is the true class). Of ``target`` (``RowTargets``): the true class is
    labels[first + t], p its one-hot smoothed by eps: (1 - eps) onehot + eps / K; or with
    ``soft``, p = proba[first + t].

    loss = log(sum_c e^(z_c - top)) - p . (z - top), top = max z (no overflow, no log(0)).
    The work goes class by class over the block's rows: ``shifted`` and ``exps`` hold (K, m)
    laid out flat (element c m + t), so that each loop runs along the rows and the exps are
    one flat loop, which vectorises for any m (32 against 44 ns a row of ten classes, in
    cache, with the two transpositions)."""
    z, r, losses, shifted, exps, top, total, best = space
    labels, proba, eps = target.labels, target.proba, target.eps
    k = z.shape[1]
    shifted_logits(z, shifted, top, best, m)
    for j in range(k * m):
        exps[j] = exp_of(shifted[j])
    for t in range(m):
        total[t] = 0.0
    for c in range(k):
        for t in range(m):
            total[t] += exps[c * m + t]
    n_right = 0
    for t in range(m):
        row = first + t
        target_term = 0.0
        if soft:
            truth = 0
            likeliest = proba[row, 0]
            for c in range(k):
                target_term += proba[row, c] * shifted[c * m + t]
                if proba[row, c] > likeliest:
                    likeliest = proba[row, c]
                    truth = c
        else:
            truth = labels[row]
            mean = 0.0
            for c in range(k):
                mean += shifted[c * m + t]
            target_term = (1.0 - eps) * shifted[truth * m + t] + eps * mean / k
        losses[t] = np.log(total[t]) - target_term
        total[t] = 1.0 / total[t]  # from here on, the row's 1 / sum
        n_right += 1 if best[t] == truth else 0
    for t in range(m):
        row = first + t
        for c in range(k):
            r[t, c] = exps[c * m + t] * total[t] - (proba[row, c] if soft else eps / k)
        if not soft:
            r[t, labels[row]] -= 1.0 - eps
    return n_right


@inline
def weighed(loss, r, t, weight):
    """A row's loss times its weight, its residual r[t] multiplied by it in place."""
    for c in range(r.shape[1]):
        r[t, c] *= weight
    return weight * loss


#: rows a kernel takes at a time: their logits, then their links, then their part of the
#: gradient, so each loop is a tight one and the rows are still in cache (32 dense rows of
#: 100 float64 features are 25 KB) when the gradient reads them again
BLOCK_ROWS = 32

#: the rows of a dense X larger than this (about this CPU's L2 cache) come from memory: they
#: are asked for ``PREFETCH_ROWS`` rows ahead of use (``block_logits``). The hardware's
#: own prefetching left the reads and the arithmetic almost unoverlapped (one evaluation from
#: memory cost the arithmetic in cache plus one read of the rows); asking ahead took 200,000
#: rows from 208 to 194 ns a row (A, ten classes) and from 41.5 to 35.3 (B, sigmoid), but
#: cost 5-12% on rows already in cache, so small X do without
PREFETCH_MIN_BYTES = 4 << 20
PREFETCH_ROWS = 64


@inline
def block_logits(X, first, m, coef_t, intercept, z, ahead):
    """z[t] = X[first + t] W + b for the block's m rows: four rows at a time with four, two or
    one classes (register blocking, as a matrix product's kernel does: each load of a row of X
    serves four classes and each load of W four rows): fewer loads for each multiply-add.
    Four classes a tile rather than two, with ``block_gradient``'s eight rows, took a dense
    evaluation of ten classes from 184 to 157 ns a row in cache (measured alternately).
    With ``ahead`` > 0 each tile first asks for its rows' successors ``ahead`` rows on, a
    cache line at a time."""
    k, d = coef_t.shape
    line = 64 // X.itemsize
    t = 0
    while t + 4 <= m:
        later = first + t + ahead
        if ahead > 0 and later + 4 <= X.shape[0]:
            for s in range(4):
                for j in range(0, d, line):
                    _prefetch(X, later + s, j)
        c = 0
        while c + 4 <= k:
            logits_4x4(X, first + t, coef_t, c, intercept, z, t)
            c += 4
        if c + 2 <= k:
            logits_4x2(X, first + t, coef_t, c, intercept, z, t)
            c += 2
        if c < k:  # an odd class left
            logits_4x1(X, first + t, coef_t[c], intercept[c], z[:, c], t)
        t += 4
    while t < m:
        row = X[first + t]
        for c in range(k):
            w_c = coef_t[c]
            acc = 0.0
            for j in range(d):
                acc += row[j] * w_c[j]
            z[t, c] = acc + intercept[c]
        t += 1


@inline
def logits_4x4(X, i, coef_t, c, intercept, z, t):
    """z[t + s, c + u] = X[i + s] . coef_t[c + u] + intercept[c + u], s and u in 0..3."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    w_a, w_b, w_c, w_d = coef_t[c], coef_t[c + 1], coef_t[c + 2], coef_t[c + 3]
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = 0.0
    c0 = c1 = c2 = c3 = e0 = e1 = e2 = e3 = 0.0
    for j in range(coef_t.shape[1]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        wa, wb, wc, wd = w_a[j], w_b[j], w_c[j], w_d[j]
        a0 += v0 * wa
        a1 += v1 * wa
        a2 += v2 * wa
        a3 += v3 * wa
        b0 += v0 * wb
        b1 += v1 * wb
        b2 += v2 * wb
        b3 += v3 * wb
        c0 += v0 * wc
        c1 += v1 * wc
        c2 += v2 * wc
        c3 += v3 * wc
        e0 += v0 * wd
        e1 += v1 * wd
        e2 += v2 * wd
        e3 += v3 * wd
    b_a, b_b, b_c, b_d = intercept[c], intercept[c + 1], intercept[c + 2], intercept[c + 3]
    z[t, c], z[t, c + 1], z[t, c + 2], z[t, c + 3] = a0 + b_a, b0 + b_b, c0 + b_c, e0 + b_d
    z[t + 1, c], z[t + 1, c + 1] = a1 + b_a, b1 + b_b
    z[t + 1, c + 2], z[t + 1, c + 3] = c1 + b_c, e1 + b_d
    z[t + 2, c], z[t + 2, c + 1] = a2 + b_a, b2 + b_b
    z[t + 2, c + 2], z[t + 2, c + 3] = c2 + b_c, e2 + b_d
    z[t + 3, c], z[t + 3, c + 1] = a3 + b_a, b3 + b_b
    z[t + 3, c + 2], z[t + 3, c + 3] = c3 + b_c, e3 + b_d


@inline
def logits_4x2(X, i, coef_t, c, intercept, z, t):
    """z[t + s, c + u] = X[i + s] . coef_t[c + u] + intercept[c + u], s in 0..3, u in 0..1."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    w_a, w_b = coef_t[c], coef_t[c + 1]
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = 0.0
    for j in range(coef_t.shape[1]):
        wa, wb = w_a[j], w_b[j]
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        a0 += v0 * wa
        a1 += v1 * wa
        a2 += v2 * wa
        a3 += v3 * wa
        b0 += v0 * wb
        b1 += v1 * wb
        b2 += v2 * wb
        b3 += v3 * wb
    z[t, c], z[t + 1, c] = a0 + intercept[c], a1 + intercept[c]
    z[t + 2, c], z[t + 3, c] = a2 + intercept[c], a3 + intercept[c]
    z[t, c + 1], z[t + 1, c + 1] = b0 + intercept[c + 1], b1 + intercept[c + 1]
    z[t + 2, c + 1], z[t + 3, c + 1] = b2 + intercept[c + 1], b3 + intercept[c + 1]


@inline
def logits_4x1(X, i, w, b, z_c, t):
    """z_c[t + s] = X[i + s] . w + b, s in 0..3 (one class's column of logits)."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    a0 = a1 = a2 = a3 = 0.0
    for j in range(w.shape[0]):
        wj = w[j]
        a0 += x0[j] * wj
        a1 += x1[j] * wj
        a2 += x2[j] * wj
        a3 += x3[j] * wj
    z_c[t], z_c[t + 1], z_c[t + 2], z_c[t + 3] = a0 + b, a1 + b, a2 + b, a3 + b


@inline
def block_gradient(X, first, m, r, grad_t):
    """grad_t[c] += sum_t r[t, c] X[first + t] over the block's m rows: eight (then four)
    rows and two classes at once, so each load of a row of X serves two classes and each load
    and store of the gradient eight rows (a tile of four rows and four classes was no faster:
    the gradient's loads and stores are the limit, not those of X)."""
    k = grad_t.shape[0]
    t = 0
    while t + 8 <= m:
        c = 0
        while c + 2 <= k:
            gradient_8x2(X, first + t, r, t, c, grad_t)
            c += 2
        if c < k:  # an odd class left (the sigmoid's one)
            gradient_8x1(X, first + t, r, t, grad_t[c], c)
        t += 8
    while t + 4 <= m:
        for c in range(k):
            gradient_4x1(X, first + t, r, t, grad_t[c], c)
        t += 4
    while t < m:
        row = X[first + t]
        for c in range(k):
            rc = r[t, c]
            g_c = grad_t[c]
            for j in range(row.shape[0]):
                g_c[j] += rc * row[j]
        t += 1


@inline
def gradient_8x2(X, i, r, t, c, grad_t):
    """grad_t[c + u] += sum_s r[t + s, c + u] X[i + s], s in 0..7, u in 0..1."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    x4, x5, x6, x7 = X[i + 4], X[i + 5], X[i + 6], X[i + 7]
    ra0, ra1, ra2, ra3 = r[t, c], r[t + 1, c], r[t + 2, c], r[t + 3, c]
    ra4, ra5, ra6, ra7 = r[t + 4, c], r[t + 5, c], r[t + 6, c], r[t + 7, c]
    rb0, rb1, rb2, rb3 = r[t, c + 1], r[t + 1, c + 1], r[t + 2, c + 1], r[t + 3, c + 1]
    rb4, rb5, rb6, rb7 = r[t + 4, c + 1], r[t + 5, c + 1], r[t + 6, c + 1], r[t + 7, c + 1]
    g_a, g_b = grad_t[c], grad_t[c + 1]
    for j in range(g_a.shape[0]):
        v0, v1, v2, v3 = x0[j], x1[j], x2[j], x3[j]
        v4, v5, v6, v7 = x4[j], x5[j], x6[j], x7[j]
        g_a[j] += ((ra0 * v0 + ra1 * v1) + (ra2 * v2 + ra3 * v3)) \
            + ((ra4 * v4 + ra5 * v5) + (ra6 * v6 + ra7 * v7))
        g_b[j] += ((rb0 * v0 + rb1 * v1) + (rb2 * v2 + rb3 * v3)) \
            + ((rb4 * v4 + rb5 * v5) + (rb6 * v6 + rb7 * v7))


@inline
def gradient_8x1(X, i, r, t, g, c):
    """g += sum_s r[t + s, c] X[i + s], s in 0..7 (one class's row of the gradient)."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    x4, x5, x6, x7 = X[i + 4], X[i + 5], X[i + 6], X[i + 7]
    r0, r1, r2, r3 = r[t, c], r[t + 1, c], r[t + 2, c], r[t + 3, c]
    r4, r5, r6, r7 = r[t + 4, c], r[t + 5, c], r[t + 6, c], r[t + 7, c]
    for j in range(g.shape[0]):
        g[j] += ((r0 * x0[j] + r1 * x1[j]) + (r2 * x2[j] + r3 * x3[j])) \
            + ((r4 * x4[j] + r5 * x5[j]) + (r6 * x6[j] + r7 * x7[j]))


@inline
def gradient_4x1(X, i, r, t, g, c):
    """g += sum_s r[t + s, c] X[i + s], s in 0..3 (one class's row of the gradient)."""
    x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
    r0, r1, r2, r3 = r[t, c], r[t + 1, c], r[t + 2, c], r[t + 3, c]
    for j in range(g.shape[0]):
        g[j] += r0 * x0[j] + r1 * x1[j] + r2 * x2[j] + r3 * x3[j]


@inline
def links_of(space, m, first, target, softmax, soft):
    """The links of the m rows of a block from ``first`` (their logits in z[t] of ``space``,
    ``block_space``; their targets those of ``target``, ``RowTargets``): each row's loss in
    losses[t], q - p in r[t]; returns how many rows are right. ``softmax`` and ``soft`` (whether
    the targets are soft rows) are constants where the four functions below inline it: a
    sigmoid row testing them took half again as long (measured). The lazy steps inline it with
    run-time flags instead: their batches are mostly one row, for which a call costs more than
    the tests."""
    if softmax:
        return softmax_block(space, m, first, target, soft)
    z, r, losses = space[0], space[1], space[2]
    # the sigmoid's one logit a row: z and r seen as vectors (they are C-contiguous) make
    # this a loop that vectorises, 2.6 times as fast (``exp_of``, ``log1p_of``)
    logits, residuals = z.reshape(z.shape[0]), r.reshape(r.shape[0])
    n_right = 0
    for t in range(m):
        truth, p = sigmoid_target(target, first + t, soft)
        loss, residual, right = sigmoid_row(logits[t], truth, p)
        residuals[t] = residual
        losses[t] = loss
        n_right += right
    return n_right


# The sigmoid's link loops are inlined into each kernel that uses them: a call to a compiled
# link loop costs about 130 ns (it takes a reference to each of the block's eleven arrays and
# gives it back), 4 ns a row of a sigmoid's 20. The softmax's are compiled functions of their
# own, called once a block: inlined, the dense kernel of ten classes took 6-8 ns a row more
# (of 150), not less, and they are compiled once for dense and CSR data of any dtype.


@inline
def sigmoid_links(space, m, first, target):
    return links_of(space, m, first, target, False, False)


@inline
def soft_sigmoid_links(space, m, first, target):
    return links_of(space, m, first, target, False, True)


@jit
def softmax_links(space, m, first, target):
    return links_of(space, m, first, target, True, False)


@jit
def soft_softmax_links(space, m, first, target):
    return links_of(space, m, first, target, True, True)


@inline
def weighted_losses(space, m, first, weights):
    """The sum of the block's losses, each row's loss and residual r[t] multiplied by its
    weight weights[first + t] first (an empty ``weights``: weights of 1)."""
    r, losses = space[1], space[2]
    loss_sum = 0.0
    if weights.shape[0] == 0:
        for t in range(m):
            loss_sum += losses[t]
        return loss_sum
    for t in range(m):
        loss_sum += weighed(losses[t], r, t, weights[first + t])
    return loss_sum


@inline
def add_column_sums(r, m, out):
    """out[c] += sum_t r[t, c] over a block's m rows (its part of b's gradient), each column
    summed in a register first: added into out[c] row by row, each add waited on the store of
    the one before, 3 ns a row of a sigmoid's 20 (measured)."""
    for c in range(r.shape[1]):
        column_sum = 0.0
        for t in range(m):
            column_sum += r[t, c]
        out[c] += column_sum


@inline
def dense_rows(X, params, target, start, stop, grad, links):
    """Rows start..stop of dense X, ``BLOCK_ROWS`` at a time (their logits, their links, then
    their part of the gradient), at ``params`` (``Linear``: coef W^T (k, d), intercept (k,))
    against ``target`` (``RowTargets``); adds into ``grad`` (``Linear`` of the same shapes;
    empty: no gradient); returns (sum of weighted losses, rows right). ``links`` is the
    kind's link loop (``sigmoid_links`` ...): each kind has its own kernel (``KERNELS``)."""
    coef_t, intercept = params
    grad_t, grad_b = grad
    with_grad = grad_b.shape[0] > 0
    k = coef_t.shape[0]
    space = block_space(k, BLOCK_ROWS)
    from_memory = X.shape[0] * X.shape[1] * X.itemsize > PREFETCH_MIN_BYTES  # all of X: a
    # chunk of a large X comes from memory however small (the threads take several each)
    ahead = PREFETCH_ROWS if from_memory else 0
    z, r = space[0], space[1]
    loss_sum = 0.0
    n_right = 0
    for first in range(start, stop, BLOCK_ROWS):
        m = min(BLOCK_ROWS, stop - first)
        block_logits(X, first, m, coef_t, intercept, z, ahead)
        n_right += links(space, m, first, target)
        loss_sum += weighted_losses(space, m, first, target.weights)
        if not with_grad:
            continue
        add_column_sums(r, m, grad_b)
        block_gradient(X, first, m, r, grad_t)
    return loss_sum, n_right


@inline
def csr_logits(rows, i, params, scale, z, t):
    """z[t] = scale * (x_i W) + b for row i of ``rows`` (``CSRRows``), ``params`` a ``Linear``
    with coef W (d, k): a row of W per stored entry."""
    data, indices, indptr = rows
    coef, intercept = params
    k = coef.shape[1]
    for c in range(k):
        z[t, c] = 0.0
    for s in range(indptr[i], indptr[i + 1]):
        v = data[s]
        w_j = coef[indices[s]]
        for c in range(k):
            z[t, c] += v * w_j[c]
    for c in range(k):
        z[t, c] = scale * z[t, c] + intercept[c]


@inline
def csr_scatter(rows, i, factor, r, t, out):
    """out[j] += factor x_ij r[t] for the stored entries j of row i of ``rows``
    (``CSRRows``): the row's part of X^T R (or of a step on it)."""
    data, indices, indptr = rows
    k = out.shape[1]
    for s in range(indptr[i], indptr[i + 1]):
        v = data[s] * factor
        o_j = out[indices[s]]
        for c in range(k):
            o_j[c] += v * r[t, c]


@inline
def csr_rows(rows, params, target, start, stop, grad, R, links):
    """Rows start..stop of CSR ``rows`` (``CSRRows``), ``BLOCK_ROWS`` at a time, at
    ``params`` (``Linear``, coef W (d, k): a row of W per stored entry) against ``target``
    (``RowTargets``); adds into ``grad`` (``Linear``: coef (d, k), intercept (k,); an empty
    intercept: no gradient). With R (stop - start, k) not empty, row i's residual
    w_i (q_i - p_i) is stored in R[i - start] instead of scattered into grad.coef (which may
    then be empty): the first pass of an evaluation by columns (``csr_columns``). ``links``
    as for ``dense_rows``."""
    grad_coef, grad_b = grad
    with_grad = grad_b.shape[0] > 0
    k = params.coef.shape[1]
    space = block_space(k, BLOCK_ROWS)
    z, r = space[0], space[1]
    keep = R.shape[0] > 0
    loss_sum = 0.0
    n_right = 0
    for block in range(start, stop, BLOCK_ROWS):
        m = min(BLOCK_ROWS, stop - block)
        for t in range(m):
            csr_logits(rows, block + t, params, 1.0, z, t)
        n_right += links(space, m, block, target)
        loss_sum += weighted_losses(space, m, block, target.weights)
        if not with_grad:
            continue
        add_column_sums(r, m, grad_b)
        for t in range(m):
            if keep:
                for c in range(k):
                    R[block + t - start, c] = r[t, c]
            else:
                csr_scatter(rows, block + t, 1.0, r, t, grad_coef)
    return loss_sum, n_right


# One kernel for each kind of link and target, each calling only its own link loop: numba
# compiles what a kernel calls when it compiles the kernel, so a first evaluation compiles one
# link loop rather than all four (a dense kernel 6.9-7.1 s rather than 12.3-12.5 here).


@jit
def dense_sigmoid(X, params, target, start, stop, grad):
    return dense_rows(X, params, target, start, stop, grad, sigmoid_links)


@jit
def dense_soft_sigmoid(X, params, target, start, stop, grad):
    return dense_rows(X, params, target, start, stop, grad, soft_sigmoid_links)


@jit
def dense_softmax(X, params, target, start, stop, grad):
    return dense_rows(X, params, target, start, stop, grad, softmax_links)


@jit
def dense_soft_softmax(X, params, target, start, stop, grad):
    return dense_rows(X, params, target, start, stop, grad, soft_softmax_links)


@jit
def csr_sigmoid(rows, params, target, start, stop, grad, R):
    return csr_rows(rows, params, target, start, stop, grad, R, sigmoid_links)


@jit
def csr_soft_sigmoid(rows, params, target, start, stop, grad, R):
    return csr_rows(rows, params, target, start, stop, grad, R, soft_sigmoid_links)


@jit
def csr_softmax(rows, params, target, start, stop, grad, R):
    return csr_rows(rows, params, target, start, stop, grad, R, softmax_links)


@jit
def csr_soft_softmax(rows, params, target, start, stop, grad, R):
    return csr_rows(rows, params, target, start, stop, grad, R, soft_softmax_links)


#: (dense kernel, CSR kernel) by (softmax, soft targets)
KERNELS = {
    (False, False): (dense_sigmoid, csr_sigmoid),
    (False, True): (dense_soft_sigmoid, csr_soft_sigmoid),
    (True, False): (dense_softmax, csr_softmax),
    (True, True): (dense_soft_softmax, csr_soft_softmax),
}


@inline
def first_at_least(indices, start, end, low):
    """The first s in start..end with indices[s] >= low (end if none), indices[start:end]
    increasing: a binary search (written out: numba's ``np.searchsorted`` on the row's slice
    took 12-17% longer; one with conditional moves instead of branches, longer still)."""
    past = end
    while start < past:
        middle = (start + past) >> 1
        if indices[middle] < low:
            start = middle + 1
        else:
            past = middle
    return start


@jit
def csr_columns(rows, R, first, stop, low, high, grad, sorted_rows):
    """The second pass: grad[j] += sum_i x_ij R[i - first] over the rows first..stop of
    ``rows`` (``CSRRows``), for the columns low <= j < high, the rows read in order. A thread
    owns a range of columns, so the threads share one gradient and each of its rows is summed
    in the same order whatever the timing. With ``sorted_rows`` (each row's columns in
    increasing order, as scipy and the hashing make them) a row's entries in the range are one
    run, found by a binary search: a range then costs its own entries and a search a row, where
    reading every entry made each range cost the whole block (one thread, 65,536 rows of hashed
    text, 20 classes: 16 ranges took 158 ms reading every entry, 74 searching; 2 ranges 53
    and 50)."""
    data, indices, indptr = rows
    k = R.shape[1]
    for i in range(first, stop):
        start, end = indptr[i], indptr[i + 1]
        if sorted_rows:  # the row's first entry at or past column ``low``
            start = first_at_least(indices, start, end, low)
        for s in range(start, end):
            j = indices[s]
            if low <= j < high:
                v = data[s]
                g_j = grad[j]
                for c in range(k):
                    g_j[c] += v * R[i - first, c]
            elif sorted_rows and j >= high:
                break


@inline
def gathered(values, batch, out):
    """out[t] = values[batch[t]] for each t; nothing where ``values`` is empty (none given)."""
    if values.shape[0] == 0:
        return
    for t in range(batch.shape[0]):
        out[t] = values[batch[t]]


@inline
def batch_targets(target, size):
    """A ``RowTargets`` of ``size`` rows for a batch's targets, gathered from ``target``'s
    (``gathered``) so that the batch's rows are a block; empty where ``target``'s are."""
    labels, proba, weights = target.labels, target.proba, target.weights
    return RowTargets(np.empty(size if labels.shape[0] > 0 else 0, np.int64),
                      np.empty((size if proba.shape[0] > 0 else 0, proba.shape[1])),
                      target.eps, np.empty(size if weights.shape[0] > 0 else 0))


@inline
def batch_weight_inverse(weights, m):
    """1 / (the total weight of a batch of m rows), their ``weights`` (empty: 1 each); 1
    where the total is 0."""
    total = 0.0
    for t in range(m):
        total += weights[t] if weights.shape[0] > 0 else 1.0
    return 1.0 / total if total > 0.0 else 1.0


@inline
def touched_gradient(rows, batch, r, inverse, work, mark):
    """grad += X_B^T R_B * inverse for the CSR ``rows`` (``CSRRows``) of ``batch`` (their
    residuals r[t]), into ``work`` = (grad (d, k), stamp (d,), touched (d,)); lists the rows
    of grad it touches in touched, stamping them with ``mark`` (each batch's own) so each is
    listed once; returns how many."""
    grad, stamp, touched = work
    indices, indptr = rows.indices, rows.indptr
    n_touched = 0
    for t in range(batch.shape[0]):
        i = batch[t]
        for s in range(indptr[i], indptr[i + 1]):
            j = indices[s]
            if stamp[j] != mark:
                stamp[j] = mark
                touched[n_touched] = j
                n_touched += 1
        csr_scatter(rows, i, inverse, r, t, grad)
    return n_touched


@inline
def adaptive_move(step, state, j, c, g, corrections):
    """How far coordinate (j, c) of W stacked over b (j = d: b) moves down for its gradient
    g, ``state``'s moments updated: AdaGrad (step.method 1) A += g^2, lr g / (sqrt(A) + tiny);
    Adam (2) m and v, lr m_hat / (sqrt(v_hat) + tiny), ``corrections`` = (1 - b1^t,
    1 - b2^t)."""
    slow, fast = state.slow, state.fast
    if step.method == 1:
        slow[j, c] += g * g
        return step.lr * g / (np.sqrt(slow[j, c]) + step.tiny)
    slow[j, c] = step.b1 * slow[j, c] + (1.0 - step.b1) * g
    fast[j, c] = step.b2 * fast[j, c] + (1.0 - step.b2) * g * g
    return step.lr * (slow[j, c] / corrections[0]) / (
        np.sqrt(fast[j, c] / corrections[1]) + step.tiny)


@inline
def adaptive_step(step, state, grad, touched, grad_b, scale, params):
    """AdaGrad's or Adam's step (``adaptive_move``) on the ``touched`` rows of W (held as
    scale * coef, ``params`` a ``Linear``), zeroing their rows of ``grad``, and on b for its
    gradient grad_b; counts the step in state.count."""
    coef, intercept = params
    d, k = coef.shape
    state.count[0] += 1
    corrections = (1.0 - step.b1 ** state.count[0], 1.0 - step.b2 ** state.count[0])
    for j in touched:
        for c in range(k):
            g = grad[j, c]
            grad[j, c] = 0.0
            coef[j, c] -= adaptive_move(step, state, j, c, g, corrections) / scale
    for c in range(k):
        intercept[c] -= adaptive_move(step, state, d, c, grad_b[c], corrections)


@jit
def lazy_epoch(rows, order, batch_size, params, target, softmax, step, state):
    """Mini-batch steps over the CSR ``rows`` (``CSRRows``) ``order``, ``batch_size`` at a
    time (each batch's rows already in increasing order: ``sources.sorted_batches``, which the
    caller applies), updating only the rows of W (params.coef, (d, k)) of the features
    present in the batch. W is held as scale * coef, so the L2
    shrinkage W <- (1 - lr l2) W of every step is one multiplication of ``scale``; coef is
    scaled back before returning. Per batch, with g = X_B^T R_B / (total weight of B):

        method 0 (SGD):     W <- (1 - lr l2) W - lr g            (exactly the dense step)
        method 1 (AdaGrad): A += g^2; W <- (1 - lr l2) W - lr g / (sqrt(A) + tiny)
        method 2 (Adam):    m, v of the touched rows as Adam's; W <- (1 - lr l2) W
                            - lr m_hat / (sqrt(v_hat) + tiny), the bias correction by
                            the global step state.count (PyTorch's SparseAdam)

    ``step`` (``lazy.LazyStep``): the method, lr, l2, fit_intercept, Adam's b1 and b2, tiny;
    ``state`` (``lazy.LazyState``): AdaGrad's A or Adam's m (slow) and v (fast), (d + 1, k)
    with b's row last, and the step count. The bias gets the dense rule of its method and no
    decay. ``target``: ``RowTargets``. Returns the number of steps."""
    coef, intercept = params
    d, k = coef.shape
    n = order.shape[0]
    space = block_space(k, batch_size)
    r = space[1]
    batch_target = batch_targets(target, batch_size)
    soft = target.proba.shape[0] > 0
    grad_b = np.empty(k)
    # the adaptive methods' gradient of the touched rows of W, and which those are
    work = (np.zeros((d, k) if step.method else (0, k)), np.full(d, -1, np.int64),
            np.empty(d, np.int64))
    scale = 1.0
    n_steps = 0
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        batch = order[start:start + m]
        gathered(target.labels, batch, batch_target.labels)
        gathered(target.proba, batch, batch_target.proba)
        gathered(target.weights, batch, batch_target.weights)
        for t in range(m):
            csr_logits(rows, batch[t], params, scale, space[0], t)
        # the links inlined with the kinds as run-time flags: the four compiled link loops
        # cost a call each, about 110 ns, a tenth of a one-row batch's step (measured)
        links_of(space, m, 0, batch_target, softmax, soft)
        weighted_losses(space, m, 0, batch_target.weights)
        inverse = batch_weight_inverse(batch_target.weights, m)
        grad_b[:] = 0.0
        add_column_sums(r, m, grad_b)
        for c in range(k):
            grad_b[c] *= inverse if step.fit_intercept else 0.0  # b fixed: its gradient is 0
        scale *= 1.0 - step.lr * step.l2
        if step.method == 0:
            for t in range(m):  # W -= lr g, written into V = W / scale
                csr_scatter(rows, batch[t], -step.lr * inverse / scale, r, t, coef)
            for c in range(k):
                intercept[c] -= step.lr * grad_b[c]
        else:
            n_touched = touched_gradient(rows, batch, r, inverse, work, start)
            adaptive_step(step, state, work[0], work[2][:n_touched], grad_b, scale, params)
        n_steps += 1
        if scale < 1e-12:  # fold the scale in before it underflows
            coef *= scale
            scale = 1.0
    if scale != 1.0:
        coef *= scale
    return n_steps


# ---- hashing text ---------------------------------------------------------------------------

_U = np.uint64  # murmur3's arithmetic is on 32-bit words, kept in uint64 and masked
_MASK = _U(0xFFFFFFFF)
_C1, _C2 = _U(0xCC9E2D51), _U(0x1B873593)


@numba.njit(nogil=True, cache=True, inline="always")
def _rotl(x, r):
    return ((x << _U(r)) | (x >> _U(32 - r))) & _MASK


@numba.njit(nogil=True, cache=True, inline="always")
def _mix(k):
    return (_rotl((k * _C1) & _MASK, 15) * _C2) & _MASK


@numba.njit(nogil=True, cache=True)
def murmur3_32(buf, start, length):
    """MurmurHash3 (x86, 32 bits, seed 0) of buf[start:start + length] as a signed 32-bit
    integer: scikit-learn's ``murmurhash3_32``, so the buckets are ``HashingVectorizer``'s."""
    h = _U(0)
    n_blocks = length // 4
    for b in range(n_blocks):
        i = start + 4 * b
        k = (_U(buf[i]) | (_U(buf[i + 1]) << _U(8)) | (_U(buf[i + 2]) << _U(16))
             | (_U(buf[i + 3]) << _U(24)))
        h = _rotl(h ^ _mix(k), 13)
        h = (h * _U(5) + _U(0xE6546B64)) & _MASK
    tail = start + 4 * n_blocks
    rest = length & 3
    k = _U(0)
    if rest == 3:
        k ^= _U(buf[tail + 2]) << _U(16)
    if rest >= 2:
        k ^= _U(buf[tail + 1]) << _U(8)
    if rest >= 1:
        k ^= _U(buf[tail])
        h ^= _mix(k)
    h ^= _U(length)
    h ^= h >> _U(16)
    h = (h * _U(0x85EBCA6B)) & _MASK
    h ^= h >> _U(13)
    h = (h * _U(0xC2B2AE35)) & _MASK
    h ^= h >> _U(16)
    value = np.int64(h)
    return value - (np.int64(1) << 32) if value >= (np.int64(1) << 31) else value


@numba.njit(nogil=True, cache=True, inline="always")
def _is_word(c):
    """[0-9A-Za-z_]: the ASCII characters of a regular expression's \\w."""
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@numba.njit(nogil=True, cache=True)
def _token_spans(buf, start, stop, starts, ends):
    """The tokens (runs of two or more \\w characters) of buf[start:stop] into starts/ends;
    returns how many (``starts`` None-sized 0: only count them)."""
    n_tokens = 0
    i = start
    while i < stop:
        if _is_word(buf[i]):
            j = i
            while j < stop and _is_word(buf[j]):
                j += 1
            if j - i >= 2:
                if starts.shape[0] > 0:
                    starts[n_tokens] = i
                    ends[n_tokens] = j
                n_tokens += 1
            i = j
        else:
            i += 1
    return n_tokens


@numba.njit(nogil=True, cache=True)
def hash_ascii(buf, offsets, n_min, n_max, buckets):
    """The word n-grams of ASCII documents counted in hash buckets, as HashingVectorizer
    counts them: tokens are runs of two or more \\w characters, an n-gram is its tokens
    joined by one space, its bucket |murmur3_32| mod buckets. Document i is
    buf[offsets[i]:offsets[i + 1]] (already lower-cased). Returns CSR (indptr, indices,
    counts), each row's buckets in increasing order. A first pass counts the tokens, so the
    work space is sized by them, not by the text."""
    n_docs = offsets.shape[0] - 1
    none = np.empty(0, np.int64)
    total, longest = 0, 0
    for doc in range(n_docs):
        n_tokens = _token_spans(buf, offsets[doc], offsets[doc + 1], none, none)
        total += n_tokens
        longest = max(longest, n_tokens)
    n_orders = n_max - n_min + 1
    indices = np.empty(total * n_orders, np.int32)
    counts = np.empty(total * n_orders, np.float64)
    indptr = np.zeros(n_docs + 1, np.int64)
    starts = np.empty(max(longest, 1), np.int64)
    ends = np.empty(max(longest, 1), np.int64)
    row = np.empty(max(longest, 1) * n_orders, np.int64)
    scratch = np.empty(0, np.uint8)
    nnz = 0
    for doc in range(n_docs):
        n_tokens = _token_spans(buf, offsets[doc], offsets[doc + 1], starts, ends)
        m = 0
        for n in range(n_min, n_max + 1):
            for t in range(n_tokens - n + 1):
                if n == 1:
                    h = murmur3_32(buf, starts[t], ends[t] - starts[t])
                else:
                    size = ends[t + n - 1] - starts[t]
                    if scratch.shape[0] < size:
                        scratch = np.empty(2 * size, np.uint8)
                    length = 0
                    for u in range(t, t + n):
                        if u > t:
                            scratch[length] = 32
                            length += 1
                        for c in range(starts[u], ends[u]):
                            scratch[length] = buf[c]
                            length += 1
                    h = murmur3_32(scratch, 0, length)
                if h == -2147483648:  # |h| overflows 32 bits; scikit-learn's rule
                    row[m] = (2147483647 - (buckets - 1)) % buckets
                else:
                    row[m] = abs(h) % buckets
                m += 1
        part = np.sort(row[:m])
        q = 0
        while q < m:
            r = q
            while r < m and part[r] == part[q]:
                r += 1
            indices[nnz] = part[q]
            counts[nnz] = r - q
            nnz += 1
            q = r
        indptr[doc + 1] = nnz
    return indptr, indices[:nnz], counts[:nnz]  # views: a copy would double the peak
