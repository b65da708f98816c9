/*
 * _fixed.c - fused fixed-point kernels for verinfer.runtime.fused.
 *
 * Why hand-written: on small models every numpy call costs ~1-5 us, and requantizing one
 * dense layer's accumulator took six of them (astype, bias shift, add, shr_round, the
 * saturation compare/count, clip). Each function here does the same integer arithmetic in
 * one pass. The semantics are exactly those of verinfer.runtime.fixed (docs/runtime-spec.md,
 * "Primitives"); fused.py holds the numpy reference each function must match bit for bit,
 * and tests/unit/runtime/test_fused.py checks that they do.
 *
 * Signed overflow is undefined in C, so sums and left shifts are done on uint64_t and cast
 * back: two's-complement wrap-around, which is what numpy's int64 arithmetic does. Right
 * shifts of negative int64 are arithmetic on every compiler this builds with (gcc, clang).
 *
 * Python API (see _fixed.pyi); every array is a C-contiguous buffer, dst int64 and writable:
 *   quantize(src_f64_or_f32, dst, scale, limit) -> clamped count, or -1 if src holds NaN/inf
 *   requantize(acc_f64_or_i64, bias_i64_or_None, bias_shift, shift, limit, dst) -> clamped
 *   relu_saturate(src_i64, dst, limit) -> clamped count
 *   dense(x, w, bias_or_None, bias_shift, shift, limit, relu, dst) -> clamped count, or -2 if
 *          the float64 sums might not be exact; x (..., k) int64, w (k, n padded to 16)
 *          float64, dst (..., n)
 *   conv2d(x, w, bias_or_None, dst, sh, sw, dh, dw, pt, pl, pb, pr, group, bias_shift, shift,
 *          limit) -> clamped count; x (N, C, H, W), w (M, C/group, kh, kw), dst (N, M, OH, OW)
 *   pool2d(x, dst, mode, fill, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, limit) -> clamped count
 *   elementwise(op, limit, shift_a, shift_b, sign, geometry, dst, [cond,] a, b) -> clamped
 *          count; op 0 add, 1 mul, 2 where; geometry int64 [12] (see fused.py)
 *   layernorm(x, gamma, beta, eps, beta_shift, shift, limit, dst) -> clamped count, or -1
 *          where a row's variance is outside the exact range (numpy then); x, dst (rows, n)
 *   lut(x, table, lo, shift, intervals, limit, dst) -> clamped count; table int64 [intervals+1]
 *   softmax(x, table, lo, shift, intervals, out_scale, limit, dst) -> clamped count, or -1 if
 *          an entry read is outside [0, 2**31); x, dst (rows, n), the softmax of each row
 * conv2d and pool2d are checked against the numpy op kernels by test_conv_kernel.py, dense
 * by test_dense_kernel.py,
 * elementwise by test_elementwise_kernel.py, lut, softmax and layernorm by
 * test_nonlinear_kernels.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GIL_FREE_VALUES 16384 /* release the GIL for tensors at least this large */

/* The loops vectorize well only with 64-bit integer compares and float64<->int64 conversions
 * (x86-64-v4: AVX-512 F/DQ/VL); baseline x86-64 has neither, so gcc builds v4 and v3 variants
 * too and picks one at load time (the same integers whichever runs). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    __GNUC__ >= 12
#define VECTOR_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        return -1;
    }
    if (view->itemsize != 8 && !(view->itemsize == 4 && !writable)) {
        PyErr_Format(PyExc_TypeError, "%s must hold 8-byte items", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* 'd' float64, 'f' float32, 'i' int64 ('l'/'q' with 8-byte items), 0 anything else. */
static char
kind_of(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') {
        f++;
    }
    if (f[1] != '\0') {
        return 0;
    }
    if (*f == 'd' && view->itemsize == 8) {
        return 'd';
    }
    if (*f == 'f' && view->itemsize == 4) {
        return 'f';
    }
    if ((*f == 'l' || *f == 'q') && view->itemsize == 8) {
        return 'i';
    }
    return 0;
}

static int
parse_int(PyObject *obj, long long lo, long long hi, long long *out, const char *what)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s=%lld is outside [%lld, %lld]", what, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static inline int64_t
wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static inline int64_t
wrap_shl(int64_t a, int k)
{
    return (int64_t)((uint64_t)a << k);
}

/* fixed.shr_round: (x + 2**(k-1)) >> k for k > 0, x << -k for k < 0. |k| <= 63. */
static inline int64_t
shr_round(int64_t x, int k)
{
    if (k > 0) {
        return wrap_add(x, (int64_t)1 << (k - 1)) >> k;
    }
    if (k < 0) {
        return wrap_shl(x, -k);
    }
    return x;
}

static inline int64_t
clamp(int64_t x, int64_t limit, Py_ssize_t *over)
{
    *over += (x > limit) | (x < -limit); /* branch-free: the common case is no clamping */
    x = x > limit ? limit : x;
    return x < -limit ? -limit : x;
}

/* ------------------------------------------------------------------------------------- */

/*
 * floor(ldexp(v, scale) + 0.5), saturated to [-limit, limit], limit < 2**31.
 * v * 2**scale (2**scale a normal double) is the correctly rounded exact product: the same
 * double ldexp returns, without a libm call. Comparing y itself against the limits is the
 * same as comparing floor(y) (the limits are integers); once clamped, |y| < 2**31 and floor
 * is truncation through int32 plus a correction. NaN fails every comparison and is clamped
 * like the rest (the caller discards the result), so nothing undefined is ever cast.
 * Written branch-free so that it vectorizes.
 */
#define QUANTIZE_LOOP(T)                                                                  \
    for (Py_ssize_t i = 0; i < n; i++) {                                                   \
        double v = (double)((const T *)src)[i];                                            \
        bad |= v - v != 0.0; /* NaN or infinity */                                         \
        double y = v * factor + 0.5;                                                       \
        over += (y >= hi_excl) | (y < lo);                                                 \
        y = y > hi ? hi : y;                                                               \
        y = y >= lo ? y : lo;                                                              \
        int32_t t = (int32_t)y; /* toward zero */                                          \
        dst[i] = t - ((double)t > y);                                                      \
    }

VECTOR_CLONES static Py_ssize_t
quantize_loop(const void *src, char kind, int64_t *dst, Py_ssize_t n, int scale, int64_t limit)
{
    const double factor = ldexp(1.0, scale);
    const double hi = (double)limit, hi_excl = (double)limit + 1.0, lo = -(double)limit;
    Py_ssize_t over = 0;
    int bad = 0;
    if (kind == 'd') {
        QUANTIZE_LOOP(double)
    } else {
        QUANTIZE_LOOP(float)
    }
    return bad ? -1 : over;
}

static PyObject *
py_quantize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "quantize(src, dst, scale, limit)");
        return NULL;
    }
    long long scale, limit;
    if (parse_int(args[2], -1000, 1000, &scale, "scale") < 0 ||
        parse_int(args[3], 0, INT32_MAX, &limit, "limit") < 0) {
        return NULL;
    }
    Py_buffer src, dst;
    if (get_buffer(args[0], &src, 0, "src") < 0) {
        return NULL;
    }
    if (get_buffer(args[1], &dst, 1, "dst") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    char kind = kind_of(&src);
    if ((kind != 'd' && kind != 'f') || kind_of(&dst) != 'i' ||
        src.len / src.itemsize != dst.len / 8) {
        PyErr_SetString(PyExc_TypeError,
                        "quantize needs float64/float32 src and int64 dst of one size");
    } else {
        Py_ssize_t n = dst.len / 8, over;
        if (n >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = quantize_loop(src.buf, kind, dst.buf, n, (int)scale, limit);
            Py_END_ALLOW_THREADS
        } else {
            over = quantize_loop(src.buf, kind, dst.buf, n, (int)scale, limit);
        }
        result = PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* clamp, then max(floor, .): floor is -limit (plain saturation) or 0 (a fused Relu, which
 * counts what it clamps as saturate-then-Relu does). */
static inline int64_t
clamp_floor(int64_t x, int64_t floor, int64_t limit, Py_ssize_t *over)
{
    x = clamp(x, limit, over);
    return x < floor ? floor : x;
}

/* ------------------------------------------------------------------------------------- */

typedef struct {
    const void *acc;
    char acc_kind;
    const int64_t *bias; /* NULL or n_bias values, broadcast over the last axis */
    Py_ssize_t n_bias;
    int bias_shift, shift;
    int64_t limit, floor; /* floor: -limit, or 0 with a fused Relu */
    int64_t *dst;
    Py_ssize_t n;
} requant_args;

VECTOR_CLONES static Py_ssize_t
requantize_loop(const requant_args *a)
{
    Py_ssize_t over = 0;
    const Py_ssize_t n = a->n; /* a local: read through `a` it could alias dst, and the loop
                                  count would be unknown to the vectorizer */
    const int shift = a->shift;
    const int64_t limit = a->limit, floor = a->floor;
    int64_t *dst = a->dst;
    if (a->bias == NULL) {
        if (a->acc_kind == 'd') {
            const double *acc = a->acc;
            for (Py_ssize_t i = 0; i < n; i++) {
                dst[i] = clamp_floor(shr_round((int64_t)acc[i], shift), floor, limit, &over);
            }
        } else {
            const int64_t *acc = a->acc;
            for (Py_ssize_t i = 0; i < n; i++) {
                dst[i] = clamp_floor(shr_round(acc[i], shift), floor, limit, &over);
            }
        }
        return over;
    }
    const Py_ssize_t m = a->n_bias;
    const int bias_shift = a->bias_shift;
    if (a->acc_kind == 'd') {
        const double *acc = a->acc;
        for (Py_ssize_t row = 0; row < n; row += m) {
            for (Py_ssize_t j = 0; j < m; j++) {
                int64_t x = wrap_add((int64_t)acc[row + j], wrap_shl(a->bias[j], bias_shift));
                dst[row + j] = clamp_floor(shr_round(x, shift), floor, limit, &over);
            }
        }
    } else {
        const int64_t *acc = a->acc;
        for (Py_ssize_t row = 0; row < n; row += m) {
            for (Py_ssize_t j = 0; j < m; j++) {
                int64_t x = wrap_add(acc[row + j], wrap_shl(a->bias[j], bias_shift));
                dst[row + j] = clamp_floor(shr_round(x, shift), floor, limit, &over);
            }
        }
    }
    return over;
}

static PyObject *
py_requantize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "requantize(acc, bias, bias_shift, shift, limit, dst, relu)");
        return NULL;
    }
    long long bias_shift, shift, limit, relu;
    if (parse_int(args[2], 0, 63, &bias_shift, "bias_shift") < 0 ||
        parse_int(args[3], -63, 63, &shift, "shift") < 0 ||
        parse_int(args[4], 0, INT64_MAX, &limit, "limit") < 0 ||
        parse_int(args[6], 0, 1, &relu, "relu") < 0) {
        return NULL;
    }
    Py_buffer acc, bias, dst;
    int have_bias = args[1] != Py_None;
    if (get_buffer(args[0], &acc, 0, "acc") < 0) {
        return NULL;
    }
    if (have_bias && get_buffer(args[1], &bias, 0, "bias") < 0) {
        PyBuffer_Release(&acc);
        return NULL;
    }
    if (get_buffer(args[5], &dst, 1, "dst") < 0) {
        PyBuffer_Release(&acc);
        if (have_bias) {
            PyBuffer_Release(&bias);
        }
        return NULL;
    }
    PyObject *result = NULL;
    requant_args a = {
        .acc = acc.buf,
        .acc_kind = kind_of(&acc),
        .bias = have_bias ? bias.buf : NULL,
        .n_bias = have_bias ? bias.len / 8 : 0,
        .bias_shift = (int)bias_shift,
        .shift = (int)shift,
        .limit = (int64_t)limit,
        .floor = relu ? 0 : -(int64_t)limit,
        .dst = dst.buf,
        .n = acc.len / 8,
    };
    if ((a.acc_kind != 'd' && a.acc_kind != 'i') || kind_of(&dst) != 'i' ||
        acc.len != dst.len) {
        PyErr_SetString(PyExc_TypeError,
                        "requantize needs a float64 or int64 acc and an int64 dst of one size");
    } else if (have_bias && (kind_of(&bias) != 'i' || a.n_bias == 0 || a.n % a.n_bias != 0)) {
        PyErr_SetString(PyExc_ValueError, "bias must be int64 and divide acc's size");
    } else {
        Py_ssize_t over;
        if (a.n >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = requantize_loop(&a);
            Py_END_ALLOW_THREADS
        } else {
            over = requantize_loop(&a);
        }
        result = PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&acc);
    if (have_bias) {
        PyBuffer_Release(&bias);
    }
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------------------- */

VECTOR_CLONES static Py_ssize_t
relu_loop(const int64_t *src, int64_t *dst, Py_ssize_t n, int64_t limit)
{
    Py_ssize_t over = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x = src[i] > 0 ? src[i] : 0;
        over += x > limit;
        dst[i] = x > limit ? limit : x;
    }
    return over;
}

static PyObject *
py_relu_saturate(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "relu_saturate(src, dst, limit)");
        return NULL;
    }
    long long limit;
    if (parse_int(args[2], 0, INT64_MAX, &limit, "limit") < 0) {
        return NULL;
    }
    Py_buffer src, dst;
    if (get_buffer(args[0], &src, 0, "src") < 0) {
        return NULL;
    }
    if (get_buffer(args[1], &dst, 1, "dst") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    PyObject *result = NULL;
    if (kind_of(&src) != 'i' || kind_of(&dst) != 'i' || src.len != dst.len) {
        PyErr_SetString(PyExc_TypeError, "relu_saturate needs int64 src and dst of one size");
    } else {
        result = PyLong_FromSsize_t(relu_loop(src.buf, dst.buf, src.len / 8, limit));
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------------------- */

/*
 * conv2d: the Conv step (ops/linear.py) fused with bias, shr_round and saturation.
 *
 * Why: the numpy path builds im2col through np.pad, a sliding-window view and two transposes,
 * copies that cost far more than the few thousand products of a small CNN layer. Here a block
 * of images is zero-padded once, unrolled into a column buffer col[k][q] (k = (c, i, j) tap,
 * q = (image, oh, ow)), and CONV_ROWS output channels at a time get acc[r][q] = sum_k w[r][k] *
 * col[k][q] in loops that gcc vectorizes.
 *
 * Exactness does not rest on the compiler's proof: the kernel bounds the sums itself. If
 * K * max|x| * max|w| < 2**52 every product and partial sum is an integer below 2**53, so
 * float64 multiply-adds (fused or not, in any order) are exact; that is the fast path, with
 * the accumulators held in registers. Otherwise the sums are int64, wrapping like numpy's.
 * Either way the integers are those of conv2d_reference whenever that is exact.
 */
#define CONV_BLOCK_Q 256 /* columns per block (a multiple of CONV_LANES): col stays in L2 */
#define CONV_ROWS 4      /* output channels per pass over the col buffer */
#define CONV_LANES 16    /* q_len is a multiple of this: 2 vectors of the widest kernel */

typedef struct {
    const int64_t *x, *w, *bias;
    int64_t *dst;
    Py_ssize_t n, c, h, wd, m, cg, kh, kw, oh, ow, group;
    Py_ssize_t sh, sw, dh, dw, pt, pl, pb, pr;
    int bias_shift, shift;
    int64_t limit, floor; /* floor: -limit, or 0 with a fused Relu */
} conv_args;

/* dst = `planes` (h, w) planes of src, each padded with `fill` to (hp, wp) at offset (pt, pl).
 * Written as plain loops: the rows are short, memcpy calls would cost more than the copy. */
static void
pad_planes(const int64_t *src, Py_ssize_t planes, Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt,
           Py_ssize_t pl, Py_ssize_t hp, Py_ssize_t wp, int64_t fill, int64_t *dst)
{
    for (Py_ssize_t i = 0; i < planes * hp * wp; i++) {
        dst[i] = fill;
    }
    for (Py_ssize_t p = 0; p < planes; p++) {
        const int64_t *s = src + p * h * w;
        int64_t *d = dst + (p * hp + pt) * wp + pl;
        for (Py_ssize_t y = 0; y < h; y++) {
            for (Py_ssize_t x = 0; x < w; x++) {
                d[y * wp + x] = s[y * w + x];
            }
        }
    }
}

/* out[q] = (b * cg * hp + y * sh) * wp + x * sw for q = (b, y, x): where output q's window
 * starts in a block of padded (cg, hp, wp) images; tap offsets are added to it. */
static void
window_starts(Py_ssize_t nb, Py_ssize_t cg, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t oh,
              Py_ssize_t ow, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t *out)
{
    for (Py_ssize_t q = 0, b = 0; b < nb; b++) {
        for (Py_ssize_t y = 0; y < oh; y++) {
            for (Py_ssize_t x = 0; x < ow; x++) {
                out[q++] = (b * cg * hp + y * sh) * wp + x * sw;
            }
        }
    }
}

/* col[k][q] = xp[base[k] + idx[q]]: tap k = (c, i, j) at output position q = (b, oh, ow),
 * as int64 or (fp) as float64. */
VECTOR_CLONES static void
conv_im2col(const int64_t *restrict xp, const Py_ssize_t *restrict idx, Py_ssize_t q_len,
            const Py_ssize_t *restrict base, Py_ssize_t k_len, int fp, void *restrict col)
{
    for (Py_ssize_t k = 0; k < k_len; k++) {
        const int64_t *restrict src = xp + base[k];
        if (fp) {
            double *restrict row = (double *)col + k * q_len;
            for (Py_ssize_t q = 0; q < q_len; q++) {
                row[q] = (double)src[idx[q]];
            }
        } else {
            int64_t *restrict row = (int64_t *)col + k * q_len;
            for (Py_ssize_t q = 0; q < q_len; q++) {
                row[q] = src[idx[q]];
            }
        }
    }
}

/* conv_im2col for a unit horizontal stride: the ow outputs of a row read ow consecutive
 * values, converted as runs of whole vectors instead of gathered index by index (written
 * with explicit vectors: left to itself gcc vectorizes across runs, with a load per value).
 * Columns past the n_runs * ow real ones are set to 0. */
typedef int64_t i64x4 __attribute__((vector_size(32), aligned(8), may_alias));
typedef double f64x4 __attribute__((vector_size(32), aligned(8), may_alias));
typedef int64_t i64x8 __attribute__((vector_size(64), aligned(8), may_alias));
typedef double f64x8 __attribute__((vector_size(64), aligned(8), may_alias));

static inline void
to_double_run(const int64_t *restrict src, Py_ssize_t n, double *restrict dst)
{
    Py_ssize_t x = 0;
    for (; x + 8 <= n; x += 8) {
        *(f64x8 *)(dst + x) = __builtin_convertvector(*(const i64x8 *)(src + x), f64x8);
    }
    if (x + 4 <= n) {
        *(f64x4 *)(dst + x) = __builtin_convertvector(*(const i64x4 *)(src + x), f64x4);
        x += 4;
    }
    for (; x < n; x++) {
        dst[x] = (double)src[x];
    }
}

static inline void
im2col_runs(const int64_t *restrict xp, const Py_ssize_t *restrict idx, Py_ssize_t n_runs,
            Py_ssize_t ow, Py_ssize_t q_len, const Py_ssize_t *restrict base, Py_ssize_t k_len,
            double *restrict col)
{
    for (Py_ssize_t k = 0; k < k_len; k++) {
        double *restrict row = col + k * q_len;
        for (Py_ssize_t r = 0; r < n_runs; r++) {
            to_double_run(xp + base[k] + idx[r * ow], ow, row + r * ow);
        }
        for (Py_ssize_t q = n_runs * ow; q < q_len; q++) {
            row[q] = 0.0;
        }
    }
}

VECTOR_CLONES static void
conv_im2col_runs(const int64_t *restrict xp, const Py_ssize_t *restrict idx, Py_ssize_t n_runs,
                 Py_ssize_t ow, Py_ssize_t q_len, const Py_ssize_t *restrict base,
                 Py_ssize_t k_len, double *restrict col)
{
    /* narrow rows with a constant width: no per-run loop overhead */
    ow == 4   ? im2col_runs(xp, idx, n_runs, 4, q_len, base, k_len, col)
    : ow == 8 ? im2col_runs(xp, idx, n_runs, 8, q_len, base, k_len, col)
              : im2col_runs(xp, idx, n_runs, ow, q_len, base, k_len, col);
}

/* acc[r][q] = sum_k wt[blk][k][r'] * col[k][q] for the rows r = blk * CONV_ROWS + r' of
 * `blocks` row blocks; q_len a multiple of CONV_LANES. For each 2 vectors of columns (kept in
 * L1) every row block runs with its CONV_ROWS x 2 vector sums in registers: 8 independent
 * multiply-add chains, enough to hide their latency. Exact: see above. Defined for vectors of
 * 2 doubles (any target), and on x86-64 for 4 (AVX2 + FMA) and 8 (AVX-512) doubles with
 * target attributes, chosen at import by CPUID as in _keccak.c: the same integers whichever
 * runs. */
#define DEFINE_CONV_ROWS_F64(NAME, WIDTH, ATTR)                                         \
    typedef double NAME##_vec __attribute__((vector_size(8 * WIDTH), aligned(8), may_alias)); \
    ATTR static void NAME(const double *restrict wt, Py_ssize_t blocks, Py_ssize_t k_len,   \
                          const double *restrict col, Py_ssize_t q_len, double *restrict acc) \
    {                                                                                       \
        for (Py_ssize_t q0 = 0; q0 < q_len; q0 += 2 * WIDTH) {                              \
            for (Py_ssize_t blk = 0; blk < blocks; blk++) {                                 \
                const double *restrict w = wt + blk * k_len * CONV_ROWS;                    \
                NAME##_vec s[CONV_ROWS][2] = {{{0}}};                                       \
                for (Py_ssize_t k = 0; k < k_len; k++) {                                    \
                    const NAME##_vec lo = *(const NAME##_vec *)(col + k * q_len + q0);      \
                    const NAME##_vec hi = *(const NAME##_vec *)(col + k * q_len + q0 + WIDTH); \
                    for (int r = 0; r < CONV_ROWS; r++) {                                   \
                        s[r][0] += w[k * CONV_ROWS + r] * lo;                               \
                        s[r][1] += w[k * CONV_ROWS + r] * hi;                               \
                    }                                                                       \
                }                                                                           \
                double *out = acc + blk * CONV_ROWS * q_len + q0;                           \
                for (int r = 0; r < CONV_ROWS; r++) {                                       \
                    *(NAME##_vec *)(out + r * q_len) = s[r][0];                             \
                    *(NAME##_vec *)(out + r * q_len + WIDTH) = s[r][1];                     \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

typedef void (*conv_rows_fn)(const double *, Py_ssize_t, Py_ssize_t, const double *,
                             Py_ssize_t, double *);

DEFINE_CONV_ROWS_F64(conv_rows_f64x2, 2, )
static conv_rows_fn conv_rows_f64 = conv_rows_f64x2; /* set by select_conv_rows at import */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
DEFINE_CONV_ROWS_F64(conv_rows_f64x4, 4, __attribute__((target("avx2,fma"))))
DEFINE_CONV_ROWS_F64(conv_rows_f64x8, 8, __attribute__((target("avx512f"))))
#endif

/* A batch of images in SIMD lanes: with x stored as xt[c][y][x][image] (float64), output
 * channel m at (oy, ox) is the sum over its taps of w * (the vector of that input position),
 * for LANE_VECS vectors of images at once: independent multiply-add chains in registers, no
 * im2col and no gathers, and taps that fall in the padding are skipped rather than multiplied
 * by zeros. ot[m][oy][ox][image] receives the sums. Exact for the same reason as
 * conv_rows_f64 (the caller checked the bound). */
#define LANE_VECS 8
#define DEFINE_CONV_LANES(NAME, WIDTH, ATTR)                                                 \
    typedef double NAME##_vec __attribute__((vector_size(8 * WIDTH), aligned(8), may_alias)); \
    ATTR static void NAME(const conv_args *a, const double *restrict xt, Py_ssize_t nl,      \
                          const double *restrict w, double *restrict ot)                    \
    {                                                                                       \
        const Py_ssize_t mg = a->m / a->group, khw = a->kh * a->kw;                         \
        for (Py_ssize_t l0 = 0; l0 < nl; l0 += LANE_VECS * WIDTH) {                         \
            for (Py_ssize_t m = 0; m < a->m; m++) {                                         \
                const Py_ssize_t g = m / mg;                                                \
                for (Py_ssize_t oy = 0; oy < a->oh; oy++) {                                 \
                    for (Py_ssize_t ox = 0; ox < a->ow; ox++) {                             \
                        NAME##_vec sum[LANE_VECS] = {{0}};                                  \
                        for (Py_ssize_t ci = 0; ci < a->cg; ci++) {                         \
                            const Py_ssize_t c = g * a->cg + ci;                            \
                            for (Py_ssize_t i = 0; i < a->kh; i++) {                        \
                                const Py_ssize_t iy = oy * a->sh - a->pt + i * a->dh;       \
                                if (iy < 0 || iy >= a->h) {                                 \
                                    continue;                                               \
                                }                                                           \
                                for (Py_ssize_t j = 0; j < a->kw; j++) {                    \
                                    const Py_ssize_t ix = ox * a->sw - a->pl + j * a->dw;   \
                                    if (ix < 0 || ix >= a->wd) {                            \
                                        continue;                                           \
                                    }                                                       \
                                    const double wv = w[(m * a->cg + ci) * khw + i * a->kw + j]; \
                                    const double *xv =                                      \
                                        xt + ((c * a->h + iy) * a->wd + ix) * nl + l0;      \
                                    for (int v = 0; v < LANE_VECS; v++) {                   \
                                        sum[v] += wv * *(const NAME##_vec *)(xv + v * WIDTH); \
                                    }                                                       \
                                }                                                           \
                            }                                                               \
                        }                                                                   \
                        double *out = ot + ((m * a->oh + oy) * a->ow + ox) * nl + l0;       \
                        for (int v = 0; v < LANE_VECS; v++) {                               \
                            *(NAME##_vec *)(out + v * WIDTH) = sum[v];                      \
                        }                                                                   \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }

typedef void (*conv_lanes_fn)(const conv_args *, const double *, Py_ssize_t, const double *,
                              double *);
static conv_lanes_fn conv_lanes = NULL; /* set by select_conv_rows where the CPU has it */
static Py_ssize_t conv_lanes_width = 0; /* images per pass: LANE_VECS vectors */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
DEFINE_CONV_LANES(conv_lanes_f64x4, 4, __attribute__((target("avx2,fma"))))
DEFINE_CONV_LANES(conv_lanes_f64x8, 8, __attribute__((target("avx512f"))))
#endif

/* The conv product variants: (name, blocked product, batch-in-lanes product, images per
 * lanes pass); the best usable one is chosen at import by CPUID, set_conv_impl picks another
 * (tests: every variant must give the same integers). */
static struct {
    const char *name;
    conv_rows_fn rows;
    conv_lanes_fn lanes;
    Py_ssize_t lanes_width;
    int usable;
} CONV_IMPLS[] = {
    {"f64x2", conv_rows_f64x2, NULL, 0, 1},
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    {"avx2", conv_rows_f64x4, conv_lanes_f64x4, LANE_VECS * 4, 0},
    {"avx512", conv_rows_f64x8, conv_lanes_f64x8, LANE_VECS * 8, 0},
#endif
};
#define N_CONV_IMPLS ((int)(sizeof(CONV_IMPLS) / sizeof(CONV_IMPLS[0])))
static int conv_impl = 0;

static void
use_conv_impl(int i)
{
    conv_impl = i;
    conv_rows_f64 = CONV_IMPLS[i].rows;
    conv_lanes = CONV_IMPLS[i].lanes;
    conv_lanes_width = CONV_IMPLS[i].lanes_width;
}

static void
select_conv_rows(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    CONV_IMPLS[1].usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    CONV_IMPLS[2].usable = __builtin_cpu_supports("avx512f");
#endif
    for (int i = 0; i < N_CONV_IMPLS; i++) {
        if (CONV_IMPLS[i].usable) {
            use_conv_impl(i);
        }
    }
}

static PyObject *
py_conv_impls(PyObject *self, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    for (int i = 0; names != NULL && i < N_CONV_IMPLS; i++) {
        PyObject *name = CONV_IMPLS[i].usable ? PyUnicode_FromString(CONV_IMPLS[i].name) : NULL;
        if (CONV_IMPLS[i].usable && (name == NULL || PyList_Append(names, name) < 0)) {
            Py_CLEAR(names);
        }
        Py_XDECREF(name);
    }
    if (names == NULL) {
        return NULL;
    }
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

static PyObject *
py_get_conv_impl(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(CONV_IMPLS[conv_impl].name);
}

static PyObject *
py_set_conv_impl(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_CONV_IMPLS; i++) {
        if (CONV_IMPLS[i].usable && strcmp(CONV_IMPLS[i].name, name) == 0) {
            use_conv_impl(i);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "no usable conv implementation named %R", arg);
    return NULL;
}

/* The conv with the batch in lanes (see conv_lanes): transposes x in, sums, requantizes the
 * sums out in the layout of dst. Returns the clamped count, or -1 when out of memory. */
static Py_ssize_t
conv_batch_lanes(const conv_args *a)
{
    const Py_ssize_t width = conv_lanes_width;
    const Py_ssize_t nl = (a->n + width - 1) / width * width, chw = a->c * a->h * a->wd;
    const Py_ssize_t p_len = a->oh * a->ow, n_w = a->m * a->cg * a->kh * a->kw;
    double *xt = PyMem_RawMalloc((size_t)(chw * nl + a->m * p_len * nl + n_w) * sizeof(double));
    if (xt == NULL) {
        return -1;
    }
    double *ot = xt + chw * nl, *w = ot + a->m * p_len * nl;
    for (Py_ssize_t e = 0; e < chw; e++) {
        double *row = xt + e * nl;
        for (Py_ssize_t b = 0; b < a->n; b++) {
            row[b] = (double)a->x[b * chw + e];
        }
        for (Py_ssize_t b = a->n; b < nl; b++) {
            row[b] = 0.0; /* lanes past the batch: computed, never read */
        }
    }
    for (Py_ssize_t k = 0; k < n_w; k++) {
        w[k] = (double)a->w[k];
    }
    conv_lanes(a, xt, nl, w, ot);
    Py_ssize_t over = 0;
    for (Py_ssize_t m = 0; m < a->m; m++) {
        const int64_t add = a->bias ? wrap_shl(a->bias[m], a->bias_shift) : 0;
        for (Py_ssize_t p = 0; p < p_len; p++) {
            const double *sums = ot + (m * p_len + p) * nl;
            int64_t *out = a->dst + m * p_len + p;
            for (Py_ssize_t b = 0; b < a->n; b++) {
                const int64_t v = wrap_add((int64_t)sums[b], add);
                const int64_t q = shr_round(v, a->shift);
                out[b * a->m * p_len] = clamp_floor(q, a->floor, a->limit, &over);
            }
        }
    }
    PyMem_RawFree(xt);
    return over;
}

/* The same in int64 (wrapping), for sums that may not fit float64. */
VECTOR_CLONES static void
conv_rows_i64(const int64_t *restrict wt, Py_ssize_t blocks, Py_ssize_t k_len,
              const int64_t *restrict col, Py_ssize_t q_len, uint64_t *restrict acc)
{
    memset(acc, 0, (size_t)(blocks * CONV_ROWS * q_len) * sizeof(uint64_t));
    for (Py_ssize_t blk = 0; blk < blocks; blk++) {
        for (Py_ssize_t k = 0; k < k_len; k++) {
            const int64_t *restrict cr = col + k * q_len;
            for (int r = 0; r < CONV_ROWS; r++) {
                const uint64_t wv = (uint64_t)wt[(blk * k_len + k) * CONV_ROWS + r];
                uint64_t *restrict ar = acc + (blk * CONV_ROWS + r) * q_len;
                for (Py_ssize_t q = 0; q < q_len; q++) {
                    ar[q] += wv * (uint64_t)cr[q];
                }
            }
        }
    }
}

/* dst[b * stride + p] = saturate(shr_round(acc[b * p_len + p] + add)), then max(floor, .)
 * (a fused Relu's 0, else -limit: no change): acc as float64 (holding exact integers, fp) or
 * int64. */
VECTOR_CLONES static Py_ssize_t
conv_requantize(const void *acc, int fp, int64_t add, int shift, int64_t floor, int64_t limit,
                int64_t *dst, Py_ssize_t nb, Py_ssize_t p_len, Py_ssize_t stride)
{
    Py_ssize_t over = 0;
    for (Py_ssize_t b = 0; b < nb; b++) {
        for (Py_ssize_t p = 0, i = b * p_len; p < p_len; p++, i++) {
            int64_t v = fp ? (int64_t)((const double *)acc)[i] : ((const int64_t *)acc)[i];
            const int64_t q = shr_round(wrap_add(v, add), shift);
            dst[b * stride + p] = clamp_floor(q, floor, limit, &over);
        }
    }
    return over;
}

/* max |v| over n int64 values, saturating at INT64_MAX (|INT64_MIN| does not fit). */
VECTOR_CLONES static int64_t
max_abs(const int64_t *v, Py_ssize_t n)
{
    int64_t hi = 0, lo = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        hi = v[i] > hi ? v[i] : hi;
        lo = v[i] < lo ? v[i] : lo;
    }
    return lo < -INT64_MAX ? INT64_MAX : (hi > -lo ? hi : -lo);
}

/* Returns the clamped count, or -1 if the scratch buffers cannot be allocated. */
static Py_ssize_t
conv_loop(const conv_args *a)
{
    const Py_ssize_t p_len = a->oh * a->ow, mg = a->m / a->group;
    const Py_ssize_t k_len = a->cg * a->kh * a->kw, blocks = (mg + CONV_ROWS - 1) / CONV_ROWS;
    const Py_ssize_t hp = a->h + a->pt + a->pb, wp = a->wd + a->pl + a->pr;
    Py_ssize_t nb = CONV_BLOCK_Q / p_len;
    nb = nb < 1 ? 1 : (nb > a->n ? a->n : nb);
    const Py_ssize_t q_max = (nb * p_len + CONV_LANES - 1) / CONV_LANES * CONV_LANES;
    const double bound = (double)k_len * (double)max_abs(a->x, a->n * a->c * a->h * a->wd) *
                         (double)max_abs(a->w, a->m * k_len);
    const int fp = bound < 4503599627370496.0; /* 2**52 */
    /* A depthwise conv (one output channel per group) over a batch that fills at least half
     * the lanes of a pass, in scratch of at most 128 MB: the images in SIMD lanes. Blocked
     * by CONV_ROWS output channels, it would compute 4 rows to keep 1, and gather a column
     * buffer per group; with more channels per group the blocked product is as fast and its
     * scratch is smaller. */
    const double lanes_scratch = (double)(a->c * a->h * a->wd + a->m * p_len) *
                                 (double)(a->n + conv_lanes_width);
    if (fp && conv_lanes != NULL && mg == 1 && 2 * a->n >= conv_lanes_width &&
        lanes_scratch < (double)(1LL << 24)) {
        return conv_batch_lanes(a);
    }
    if ((double)nb * (double)a->cg * (double)hp * (double)wp > (double)(1LL << 40)) {
        return -1;
    }
    /* 8-byte scratch: col, acc, xp, weights as [group][block][k][CONV_ROWS], idx, base */
    const Py_ssize_t n_col = k_len * q_max, n_acc = blocks * CONV_ROWS * q_max;
    const Py_ssize_t n_xp = nb * a->cg * hp * wp, n_wt = a->group * blocks * k_len * CONV_ROWS;
    int64_t *buf = PyMem_RawMalloc(
        (size_t)(n_col + n_acc + n_xp + n_wt + q_max + k_len) * sizeof(int64_t));
    if (buf == NULL) {
        return -1;
    }
    void *col = buf, *acc = buf + n_col, *wt = buf + n_col + n_acc;
    int64_t *xp = buf + n_col + n_acc + n_wt;
    Py_ssize_t *idx = (Py_ssize_t *)(xp + n_xp), *base = idx + q_max;
    for (Py_ssize_t i = 0, g = 0; g < a->group; g++) {
        for (Py_ssize_t blk = 0; blk < blocks; blk++) {
            for (Py_ssize_t k = 0; k < k_len; k++) {
                for (Py_ssize_t r = 0; r < CONV_ROWS; r++, i++) {
                    const Py_ssize_t row = blk * CONV_ROWS + r;
                    const int64_t v = row < mg ? a->w[(g * mg + row) * k_len + k] : 0;
                    if (fp) {
                        ((double *)wt)[i] = (double)v;
                    } else {
                        ((int64_t *)wt)[i] = v;
                    }
                }
            }
        }
    }
    window_starts(nb, a->cg, hp, wp, a->oh, a->ow, a->sh, a->sw, idx);
    for (Py_ssize_t k = 0, c = 0; c < a->cg; c++) {
        for (Py_ssize_t i = 0; i < a->kh; i++) {
            for (Py_ssize_t j = 0; j < a->kw; j++) {
                base[k++] = (c * hp + i * a->dh) * wp + j * a->dw;
            }
        }
    }
    Py_ssize_t over = 0;
    for (Py_ssize_t n0 = 0; n0 < a->n; n0 += nb) {
        const Py_ssize_t nbk = a->n - n0 < nb ? a->n - n0 : nb;
        const Py_ssize_t q_len = (nbk * p_len + CONV_LANES - 1) / CONV_LANES * CONV_LANES;
        for (Py_ssize_t q = nbk * p_len; q < q_len; q++) {
            idx[q] = 0; /* padding columns: computed, never stored */
        }
        for (Py_ssize_t g = 0; g < a->group; g++) {
            for (Py_ssize_t b = 0; b < nbk; b++) {
                const int64_t *src = a->x + ((n0 + b) * a->c + g * a->cg) * a->h * a->wd;
                pad_planes(src, a->cg, a->h, a->wd, a->pt, a->pl, hp, wp, 0,
                           xp + b * a->cg * hp * wp);
            }
            if (fp && a->sw == 1) {
                conv_im2col_runs(xp, idx, nbk * a->oh, a->ow, q_len, base, k_len, col);
            } else {
                conv_im2col(xp, idx, q_len, base, k_len, fp, col);
            }
            const Py_ssize_t w_off = g * blocks * k_len * CONV_ROWS;
            if (fp) {
                conv_rows_f64((const double *)wt + w_off, blocks, k_len, col, q_len, acc);
            } else {
                conv_rows_i64((const int64_t *)wt + w_off, blocks, k_len, col, q_len, acc);
            }
            for (Py_ssize_t r = 0; r < mg; r++) {
                const Py_ssize_t m = g * mg + r;
                const int64_t add = a->bias ? wrap_shl(a->bias[m], a->bias_shift) : 0;
                over += conv_requantize((const int64_t *)acc + r * q_len, fp, add, a->shift,
                                        a->floor, a->limit, a->dst + (n0 * a->m + m) * p_len,
                                        nbk, p_len, a->m * p_len);
            }
        }
    }
    PyMem_RawFree(buf);
    return over;
}

/* Parses args[first..first+count) as ints within [lo[i], hi[i]]. */
static int
parse_ints(PyObject *const *args, Py_ssize_t first, Py_ssize_t count, const char *const *names,
           const long long *lo, const long long *hi, long long *out)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_int(args[first + i], lo[i], hi[i], &out[i], names[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A C-contiguous int64 buffer of `ndim` dimensions, or of at least one with ANY_NDIM; on
 * error sets an exception. */
#define ANY_NDIM 0
static int
get_int64(PyObject *obj, Py_buffer *view, int writable, int ndim, const char *what)
{
    if (get_buffer(obj, view, writable, what) < 0) {
        return -1;
    }
    if (kind_of(view) != 'i' || (ndim == ANY_NDIM ? view->ndim < 1 : view->ndim != ndim)) {
        PyErr_Format(PyExc_TypeError, ndim == ANY_NDIM ? "%s must be an int64 array" :
                     "%s must be a %d-D int64 array", what, ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/*
 * dense: a Gemm/MatMul step with constant weights (ops/linear.py) fused with bias, shr_round
 * and saturation, for small layers: there BLAS's dispatch, numpy's int64 -> float64 pass over
 * x and a separate requantize call cost more than the products (the digits MLP at batch 64:
 * 8.3 us a layer, 3 of them products).
 *
 * x (m, k) int64 times w (k, n_pad) float64, whose columns past n are zeros. The product is
 * conv2d's blocked one (conv_rows_f64) with the roles swapped: x's rows, as float64 in blocks
 * of CONV_ROWS, are its weights, and w is its column buffer. Exactness: the kernel checks
 * k * max|x| * max|w| < 2**52, so that every product and partial sum is an integer below
 * 2**53 and float64 multiply-adds (fused or not, in any order) are exact; otherwise it returns
 * -2 and the caller runs the step through numpy, whose int64 chunks are exact.
 */
typedef struct {
    const int64_t *x;
    const double *w;
    Py_ssize_t m, k, n, n_pad;
    const int64_t *bias; /* NULL or n values */
    int bias_shift, shift;
    int64_t limit, floor;
    int64_t *dst;
} dense_args;

/* max |v| over n doubles, or infinity if one is infinite or NaN (which fails any bound
 * test). Compared as bit patterns with the sign cleared, which order like the magnitudes of
 * finite doubles: an integer max, which vectorizes where a float one with NaN rules does not. */
VECTOR_CLONES static double
max_abs_f64(const double *v, Py_ssize_t n)
{
    uint64_t top = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, v + i, 8);
        bits &= 0x7fffffffffffffffULL;
        top = bits > top ? bits : top;
    }
    if (top >= 0x7ff0000000000000ULL) {
        return INFINITY;
    }
    double magnitude;
    memcpy(&magnitude, &top, 8);
    return magnitude;
}

/* xb[blk][kk][r] = x[blk * CONV_ROWS + r][kk] as float64, rows past m zero; returns max|x|
 * (as conv's max_abs: INT64_MAX for INT64_MIN), found in the same pass. */
VECTOR_CLONES static int64_t
dense_blocks(const int64_t *restrict x, Py_ssize_t m, Py_ssize_t k, Py_ssize_t blocks,
             const int64_t *restrict zeros, double *restrict xb)
{
    int64_t hi = 0, lo = 0;
    for (Py_ssize_t blk = 0; blk < blocks; blk++) {
        const int64_t *restrict row[CONV_ROWS];
        for (int r = 0; r < CONV_ROWS; r++) {
            const Py_ssize_t i = blk * CONV_ROWS + r;
            row[r] = i < m ? x + i * k : zeros;
        }
        double *restrict out = xb + blk * k * CONV_ROWS;
        for (Py_ssize_t kk = 0; kk < k; kk++) {
            for (int r = 0; r < CONV_ROWS; r++) {
                const int64_t v = row[r][kk];
                hi = v > hi ? v : hi;
                lo = v < lo ? v : lo;
                out[kk * CONV_ROWS + r] = (double)v;
            }
        }
    }
    return lo < -INT64_MAX ? INT64_MAX : (hi > -lo ? hi : -lo);
}

/* dst[i][j] = clamp(shr_round(acc[i][j] + (bias[j] << bias_shift))) for the m x n real
 * entries of acc (rows of n_pad). */
VECTOR_CLONES static Py_ssize_t
dense_requantize(const dense_args *a, const double *restrict acc)
{
    Py_ssize_t over = 0;
    const Py_ssize_t m = a->m, n = a->n, n_pad = a->n_pad;
    const int bias_shift = a->bias_shift, shift = a->shift;
    const int64_t limit = a->limit, floor = a->floor, *bias = a->bias;
    for (Py_ssize_t i = 0; i < m; i++) {
        const double *restrict row = acc + i * n_pad;
        int64_t *restrict out = a->dst + i * n;
        if (bias == NULL) {
            for (Py_ssize_t j = 0; j < n; j++) {
                out[j] = clamp_floor(shr_round((int64_t)row[j], shift), floor, limit, &over);
            }
            continue;
        }
        for (Py_ssize_t j = 0; j < n; j++) {
            const int64_t v = wrap_add((int64_t)row[j], wrap_shl(bias[j], bias_shift));
            out[j] = clamp_floor(shr_round(v, shift), floor, limit, &over);
        }
    }
    return over;
}

/* The clamped count, -2 if the sums might not be exact in float64, -1 if out of memory. */
static Py_ssize_t
dense_loop(const dense_args *a)
{
    const Py_ssize_t blocks = (a->m + CONV_ROWS - 1) / CONV_ROWS;
    /* xb (blocks * CONV_ROWS rows of k), acc (as many rows of n_pad), a zero row of k */
    double *xb = malloc(sizeof(double) * (size_t)((blocks * CONV_ROWS + 1) * a->k +
                                                  blocks * CONV_ROWS * a->n_pad));
    if (xb == NULL) {
        return -1;
    }
    double *acc = xb + blocks * CONV_ROWS * a->k;
    int64_t *zeros = (int64_t *)(acc + blocks * CONV_ROWS * a->n_pad);
    memset(zeros, 0, sizeof(int64_t) * (size_t)a->k);
    const double bound = (double)a->k * (double)dense_blocks(a->x, a->m, a->k, blocks, zeros, xb) *
                         max_abs_f64(a->w, a->k * a->n_pad);
    Py_ssize_t over = -2;
    if (bound < 0x1p52) {
        conv_rows_f64(xb, blocks, a->k, a->w, a->n_pad, acc);
        over = dense_requantize(a, acc);
    }
    free(xb);
    return over;
}

static PyObject *
py_dense(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "dense(x, w, bias, bias_shift, shift, limit, relu, dst)");
        return NULL;
    }
    long long bias_shift, shift, limit, relu;
    if (parse_int(args[3], 0, 63, &bias_shift, "bias_shift") < 0 ||
        parse_int(args[4], -63, 63, &shift, "shift") < 0 ||
        parse_int(args[5], 0, INT64_MAX, &limit, "limit") < 0 ||
        parse_int(args[6], 0, 1, &relu, "relu") < 0) {
        return NULL;
    }
    Py_buffer x, w, bias, dst;
    const int have_bias = args[2] != Py_None;
    PyObject *result = NULL;
    if (get_int64(args[0], &x, 0, ANY_NDIM, "x") < 0) {
        return NULL;
    }
    if (get_buffer(args[1], &w, 0, "w") < 0) {
        goto release_x;
    }
    if (have_bias && get_int64(args[2], &bias, 0, 1, "bias") < 0) {
        goto release_w;
    }
    if (get_int64(args[7], &dst, 1, ANY_NDIM, "dst") < 0) {
        goto release_bias;
    }
    const Py_ssize_t k = x.shape[x.ndim - 1], n = dst.shape[dst.ndim - 1];
    const Py_ssize_t m = k > 0 ? x.len / 8 / k : 0;
    if (kind_of(&w) != 'd' || w.ndim != 2) {
        PyErr_SetString(PyExc_TypeError, "w must be a 2-D float64 array");
    }
    else if (k < 1 || n < 1 || w.shape[0] != k || dst.len / 8 != m * n ||
             w.shape[1] % CONV_LANES != 0 || w.shape[1] < n || w.shape[1] - n >= CONV_LANES ||
             (have_bias && bias.shape[0] != n)) {
        PyErr_Format(PyExc_ValueError,
                     "dense needs x (..., k), w (k, n padded to a multiple of %d), bias (n) and "
                     "dst (..., n) with as many rows as x", CONV_LANES);
    }
    else {
        const dense_args a = {
            .x = x.buf, .w = w.buf, .m = m, .k = k, .n = n, .n_pad = w.shape[1],
            .bias = have_bias ? bias.buf : NULL, .bias_shift = (int)bias_shift,
            .shift = (int)shift, .limit = (int64_t)limit, .floor = relu ? 0 : -(int64_t)limit,
            .dst = dst.buf,
        };
        Py_ssize_t over;
        if ((double)m * (double)k * (double)n >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = dense_loop(&a);
            Py_END_ALLOW_THREADS
        }
        else {
            over = dense_loop(&a);
        }
        result = over == -1 ? PyErr_NoMemory() : PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&dst);
release_bias:
    if (have_bias) {
        PyBuffer_Release(&bias);
    }
release_w:
    PyBuffer_Release(&w);
release_x:
    PyBuffer_Release(&x);
    return result;
}

/* Output extent of one axis, or -1 if the window does not fit. */
static Py_ssize_t
out_size(Py_ssize_t size, Py_ssize_t k, Py_ssize_t s, Py_ssize_t d, Py_ssize_t p0,
         Py_ssize_t p1)
{
    Py_ssize_t span = (k - 1) * d + 1, padded = size + p0 + p1;
    return padded < span ? -1 : (padded - span) / s + 1;
}

#define GEOM_MAX (1LL << 16) /* strides, dilations, pads, groups, pool kernels */

static PyObject *
py_conv2d(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"sh", "sw", "dh", "dw", "pt", "pl", "pb", "pr",
                                        "group", "bias_shift", "shift", "limit", "relu"};
    static const long long lo[] = {1, 1, 1, 1, 0, 0, 0, 0, 1, 0, -63, 0, 0};
    static const long long hi[] = {GEOM_MAX, GEOM_MAX, GEOM_MAX, GEOM_MAX, GEOM_MAX, GEOM_MAX,
                                   GEOM_MAX, GEOM_MAX, GEOM_MAX, 63, 63, INT64_MAX, 1};
    long long v[13];
    if (nargs != 17) {
        PyErr_SetString(PyExc_TypeError, "conv2d(x, w, bias, dst, sh, sw, dh, dw, pt, pl, pb, "
                                         "pr, group, bias_shift, shift, limit, relu)");
        return NULL;
    }
    if (parse_ints(args, 4, 13, names, lo, hi, v) < 0) {
        return NULL;
    }
    Py_buffer x, w, bias, dst;
    int have_bias = args[2] != Py_None;
    if (get_int64(args[0], &x, 0, 4, "x") < 0) {
        return NULL;
    }
    if (get_int64(args[1], &w, 0, 4, "w") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (have_bias && get_int64(args[2], &bias, 0, 1, "bias") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&w);
        return NULL;
    }
    if (get_int64(args[3], &dst, 1, 4, "dst") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&w);
        if (have_bias) {
            PyBuffer_Release(&bias);
        }
        return NULL;
    }
    PyObject *result = NULL;
    conv_args a = {
        .x = x.buf, .w = w.buf, .bias = have_bias ? bias.buf : NULL, .dst = dst.buf,
        .n = x.shape[0], .c = x.shape[1], .h = x.shape[2], .wd = x.shape[3],
        .m = w.shape[0], .cg = w.shape[1], .kh = w.shape[2], .kw = w.shape[3],
        .group = (Py_ssize_t)v[8], .sh = (Py_ssize_t)v[0], .sw = (Py_ssize_t)v[1],
        .dh = (Py_ssize_t)v[2], .dw = (Py_ssize_t)v[3], .pt = (Py_ssize_t)v[4],
        .pl = (Py_ssize_t)v[5], .pb = (Py_ssize_t)v[6], .pr = (Py_ssize_t)v[7],
        .bias_shift = (int)v[9], .shift = (int)v[10],
        .limit = (int64_t)v[11], .floor = v[12] ? 0 : -(int64_t)v[11],
    };
    a.oh = out_size(a.h, a.kh, a.sh, a.dh, a.pt, a.pb);
    a.ow = out_size(a.wd, a.kw, a.sw, a.dw, a.pl, a.pr);
    if (a.cg * a.group != a.c || a.m % a.group != 0 || a.kh < 1 || a.kw < 1 || a.m < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "conv2d: x has C channels and w (M, C/group, kh, kw) with M % group == 0");
    } else if (have_bias && bias.shape[0] != a.m) {
        PyErr_SetString(PyExc_ValueError, "conv2d: bias must have one value per output channel");
    } else if (a.oh < 1 || a.ow < 1 || dst.shape[0] != a.n || dst.shape[1] != a.m ||
               dst.shape[2] != a.oh || dst.shape[3] != a.ow) {
        PyErr_SetString(PyExc_ValueError, "conv2d: dst shape does not match the convolution");
    } else if (a.n > 0) {
        Py_ssize_t over;
        if (dst.len / 8 >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = conv_loop(&a);
            Py_END_ALLOW_THREADS
        } else {
            over = conv_loop(&a);
        }
        result = over < 0 ? PyErr_NoMemory() : PyLong_FromSsize_t(over);
    } else {
        result = PyLong_FromSsize_t(0);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&w);
    if (have_bias) {
        PyBuffer_Release(&bias);
    }
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------------------- */

/*
 * pool2d: MaxPool / AveragePool (ops/pooling.py) fused with saturation, one pass per output
 * instead of numpy's padded copy plus one pass per kernel tap. mode 0: max, padding reads as
 * `fill`; mode 1: div_round(sum, valid positions); mode 2: div_round(sum, kh*kw). Padding adds
 * 0 to sums. div_round is floor((sum + count/2) / count), a count of 0 gives 0 (as numpy).
 */
typedef struct {
    const int64_t *x;
    int64_t *dst;
    Py_ssize_t planes, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int mode;
    int64_t fill, limit;
} pool_args;

/* fixed.div_round: floor((num + floor(den/2)) / den) for den > 0; 0 for den <= 0 (numpy's
 * integer division by 0). */
static inline int64_t
div_round(int64_t num, int64_t den)
{
    if (den <= 0) {
        return 0;
    }
    const int64_t v = wrap_add(num, den / 2), q = v / den;
    return q - (v % den != 0 && v < 0);
}

/* The same for 0 < den and |num| + den < 2**50, given inv = 1.0 / den, without idiv: the
 * float64 quotient is then within 1/2 of the true one, so its truncation is floor(v / den)
 * or one off, and the remainder says which. */
static inline int64_t
div_round_small(int64_t num, int64_t den, double inv)
{
    const int64_t v = num + den / 2;
    const int64_t q = (int64_t)((double)v * inv), r = v - q * den;
    return q + (r >= den) - (r < 0);
}

/* dst[q] = saturate(div_round(acc[q], count[q])) (small: div_round_small with inv). */
VECTOR_CLONES static Py_ssize_t
pool_average(const int64_t *acc, const int64_t *count, const double *inv, int small,
             Py_ssize_t n, int64_t limit, int64_t *dst)
{
    Py_ssize_t over = 0;
    if (small) {
        for (Py_ssize_t q = 0; q < n; q++) {
            dst[q] = clamp(div_round_small(acc[q], count[q], inv[q]), limit, &over);
        }
    } else {
        for (Py_ssize_t q = 0; q < n; q++) {
            dst[q] = clamp(div_round(acc[q], count[q]), limit, &over);
        }
    }
    return over;
}

VECTOR_CLONES static Py_ssize_t
saturate_loop(const int64_t *src, Py_ssize_t n, int64_t limit, int64_t *dst)
{
    Py_ssize_t over = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        dst[i] = clamp(src[i], limit, &over);
    }
    return over;
}

/* acc[q] = max or sum over the taps t of src[start[q] + tap[t]]: one gather pass per tap. */
VECTOR_CLONES static void
pool_taps(const int64_t *restrict src, const Py_ssize_t *restrict start, Py_ssize_t q_len,
          const Py_ssize_t *restrict tap, Py_ssize_t taps, int max, int64_t *restrict acc)
{
    for (Py_ssize_t q = 0; q < q_len; q++) {
        acc[q] = src[start[q] + tap[0]];
    }
    for (Py_ssize_t t = 1; t < taps; t++) {
        const int64_t *restrict s = src + tap[t];
        if (max) {
            for (Py_ssize_t q = 0; q < q_len; q++) {
                acc[q] = s[start[q]] > acc[q] ? s[start[q]] : acc[q];
            }
        } else {
            for (Py_ssize_t q = 0; q < q_len; q++) {
                acc[q] = wrap_add(acc[q], s[start[q]]);
            }
        }
    }
}

/* Valid window positions along one axis for each of `out` outputs (as axis_counts in
 * ops/pooling.py). */
static void
axis_counts(Py_ssize_t size, Py_ssize_t k, Py_ssize_t s, Py_ssize_t d, Py_ssize_t pad,
            Py_ssize_t out, int64_t *counts)
{
    for (Py_ssize_t o = 0; o < out; o++) {
        counts[o] = 0;
        for (Py_ssize_t j = 0; j < k; j++) {
            const Py_ssize_t pos = o * s - pad + j * d;
            counts[o] += pos >= 0 && pos < size;
        }
    }
}

/* Windows that tile each plane exactly (no padding, no overlap, no gaps): the common
 * MaxPool/AveragePool with stride = kernel, and a mean over whole planes. Output row r then
 * reduces the kh input rows r*kh.. (consecutive in memory, across planes too) and, in them,
 * each kw adjacent values; contiguous loads instead of pool_taps's gathers (4x-5x faster on
 * the test CNN). */
static int
pool_is_tiled(const pool_args *a)
{
    return a->pt == 0 && a->pl == 0 && a->pb == 0 && a->pr == 0 && a->h == a->oh * a->kh &&
           a->wd == a->ow * a->kw && (a->oh == 1 || a->sh == a->kh) &&
           (a->ow == 1 || a->sw == a->kw) && (a->kh == 1 || a->dh == 1) &&
           (a->kw == 1 || a->dw == 1);
}

#define TILE_VALUES 2048 /* input values per block of rows: line and acc stay in L1 */

/* acc[t] = max or wrapped sum of line[t * kw + j], j < kw, for t < n. */
static inline void
pool_row_windows(const int64_t *restrict line, Py_ssize_t n, Py_ssize_t kw, const int max,
                 int64_t *restrict acc)
{
    if (kw == 2) { /* a constant stride: the loads vectorize */
        for (Py_ssize_t t = 0; t < n; t++) {
            const int64_t u = line[2 * t], v = line[2 * t + 1];
            acc[t] = max ? (u > v ? u : v) : wrap_add(u, v);
        }
        return;
    }
    for (Py_ssize_t t = 0; t < n; t++) {
        int64_t v = line[t * kw];
        for (Py_ssize_t j = 1; j < kw; j++) {
            const int64_t u = line[t * kw + j];
            v = max ? (u > v ? u : v) : wrap_add(v, u);
        }
        acc[t] = v;
    }
}

/* line[b][w] = max or wrapped sum over i < kh of src[(b * kh + i) * wd + w], b < nb; kh > 1.
 * The first two rows are combined in one pass: a plain copy first becomes a memmove call per
 * row, and reading back what it stored stalls (measured: 3x slower on 8-value rows). */
static inline void
pool_rows(const int64_t *restrict src, Py_ssize_t nb, Py_ssize_t kh, Py_ssize_t wd,
          const int max, int64_t *restrict line)
{
    for (Py_ssize_t b = 0; b < nb; b++) {
        const int64_t *restrict s = src + b * kh * wd;
        int64_t *restrict l = line + b * wd;
        for (Py_ssize_t w = 0; w < wd; w++) {
            const int64_t u = s[w], v = s[wd + w];
            l[w] = max ? (u > v ? u : v) : wrap_add(u, v);
        }
        for (Py_ssize_t i = 2; i < kh; i++) {
            for (Py_ssize_t w = 0; w < wd; w++) {
                const int64_t u = s[i * wd + w];
                l[w] = max ? (u > l[w] ? u : l[w]) : wrap_add(l[w], u);
            }
        }
    }
}

/* Output rows per block of pool_tiled: at most TILE_VALUES input values, at least one row. */
static Py_ssize_t
tile_rows(const pool_args *a)
{
    const Py_ssize_t per_block = TILE_VALUES / (a->kh * a->wd);
    return per_block < 1 ? 1 : per_block;
}

/* count and inv (averages only): kh * kw and its inverse for each output of a block, as
 * pool_average takes them. */
VECTOR_CLONES static Py_ssize_t
pool_tiled(const pool_args *a, int64_t *line, int64_t *acc, const int64_t *count,
           const double *inv)
{
    const Py_ssize_t rows = a->planes * a->oh, in_row = a->kh * a->wd, per_block = tile_rows(a);
    const int max = a->mode == 0;
    Py_ssize_t over = 0;
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += per_block) {
        const Py_ssize_t nb = rows - r0 < per_block ? rows - r0 : per_block;
        const int64_t *src = a->x + r0 * in_row;
        if (a->kh > 1) { /* narrow rows with a constant width: no per-row loop overhead */
            const Py_ssize_t wd = a->wd;
            if (max) {
                wd == 4   ? pool_rows(src, nb, a->kh, 4, 1, line)
                : wd == 8 ? pool_rows(src, nb, a->kh, 8, 1, line)
                          : pool_rows(src, nb, a->kh, wd, 1, line);
            } else {
                wd == 4   ? pool_rows(src, nb, a->kh, 4, 0, line)
                : wd == 8 ? pool_rows(src, nb, a->kh, 8, 0, line)
                          : pool_rows(src, nb, a->kh, wd, 0, line);
            }
            src = line;
        }
        const Py_ssize_t n = nb * a->ow;
        int64_t *out = a->dst + r0 * a->ow;
        if (max) {
            pool_row_windows(src, n, a->kw, 1, acc);
            over += saturate_loop(acc, n, a->limit, out);
        } else {
            pool_row_windows(src, n, a->kw, 0, acc);
            const int small = max_abs(acc, n) < (1LL << 49);
            over += pool_average(acc, count, inv, small, n, a->limit, out);
        }
    }
    return over;
}

/* Planes are pooled in blocks: padded with fill (max) or 0 (sums) into a scratch buffer,
 * then reduced tap by tap over the whole block, so the loops are long even when the planes
 * are small. Returns the clamped count, or -1 if the scratch cannot be allocated. */
static Py_ssize_t
pool_loop(const pool_args *a)
{
    if (pool_is_tiled(a)) {
        const Py_ssize_t in_row = a->kh * a->wd;
        const Py_ssize_t line_len = in_row > TILE_VALUES ? in_row : TILE_VALUES;
        int64_t *scratch = PyMem_RawMalloc((size_t)(4 * line_len) * sizeof(int64_t));
        if (scratch == NULL) {
            return -1;
        }
        int64_t *count = scratch + 2 * line_len;
        double *inv = (double *)(count + line_len);
        const Py_ssize_t rows = a->planes * a->oh, per_block = tile_rows(a);
        const Py_ssize_t outs = (rows < per_block ? rows : per_block) * a->ow;
        const double taps_inv = 1.0 / (double)(a->kh * a->kw);
        for (Py_ssize_t q = 0; a->mode != 0 && q < outs; q++) { /* a block's outputs */
            count[q] = a->kh * a->kw;
            inv[q] = taps_inv;
        }
        const Py_ssize_t over = pool_tiled(a, scratch, scratch + line_len, count, inv);
        PyMem_RawFree(scratch);
        return over;
    }
    const Py_ssize_t p_len = a->oh * a->ow, taps = a->kh * a->kw;
    const Py_ssize_t hp = a->h + a->pt + a->pb, wp = a->wd + a->pl + a->pr;
    Py_ssize_t nb = CONV_BLOCK_Q / p_len;
    nb = nb < 1 ? 1 : (nb > a->planes ? a->planes : nb);
    if ((double)nb * (double)hp * (double)wp > (double)(1LL << 40)) {
        return -1;
    }
    const Py_ssize_t q_max = nb * p_len, n_xp = nb * hp * wp;
    int64_t *buf = PyMem_RawMalloc(
        (size_t)(n_xp + 4 * q_max + taps + a->oh + a->ow) * sizeof(int64_t));
    if (buf == NULL) {
        return -1;
    }
    int64_t *xp = buf, *acc = buf + n_xp, *count = acc + q_max, *cy = count + q_max;
    int64_t *cx = cy + a->oh;
    Py_ssize_t *start = (Py_ssize_t *)(cx + a->ow), *tap = start + q_max;
    double *inv = (double *)(tap + taps);
    window_starts(nb, 1, hp, wp, a->oh, a->ow, a->sh, a->sw, start);
    for (Py_ssize_t t = 0, i = 0; i < a->kh; i++) {
        for (Py_ssize_t j = 0; j < a->kw; j++) {
            tap[t++] = i * a->dh * wp + j * a->dw;
        }
    }
    axis_counts(a->h, a->kh, a->sh, a->dh, a->pt, a->oh, cy);
    axis_counts(a->wd, a->kw, a->sw, a->dw, a->pl, a->ow, cx);
    int64_t min_count = taps; /* count and inv per position of a block, as acc */
    for (Py_ssize_t q = 0; q < q_max; q++) {
        const Py_ssize_t p = q % p_len;
        count[q] = a->mode == 2 ? taps : cy[p / a->ow] * cx[p % a->ow];
        inv[q] = 1.0 / (double)count[q];
        min_count = count[q] < min_count ? count[q] : min_count;
    }
    const int padded = hp != a->h || wp != a->wd;
    Py_ssize_t over = 0;
    for (Py_ssize_t p0 = 0; p0 < a->planes; p0 += nb) {
        const Py_ssize_t nbk = a->planes - p0 < nb ? a->planes - p0 : nb;
        const int64_t *src = a->x + p0 * a->h * a->wd;
        if (padded) {
            pad_planes(src, nbk, a->h, a->wd, a->pt, a->pl, hp, wp, a->mode ? 0 : a->fill, xp);
            src = xp;
        }
        pool_taps(src, start, nbk * p_len, tap, taps, a->mode == 0, acc);
        int64_t *out = a->dst + p0 * p_len;
        if (a->mode == 0) {
            over += saturate_loop(acc, nbk * p_len, a->limit, out);
        } else {
            const int small = min_count > 0 && max_abs(acc, nbk * p_len) < (1LL << 49);
            over += pool_average(acc, count, inv, small, nbk * p_len, a->limit, out);
        }
    }
    PyMem_RawFree(buf);
    return over;
}

static PyObject *
py_pool2d(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"mode", "fill", "kh", "kw", "sh", "sw", "dh",
                                        "dw",   "pt",   "pl", "pb", "pr", "limit"};
    static const long long lo[] = {0, INT64_MIN, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    static const long long hi[] = {2,        INT64_MAX, GEOM_MAX, GEOM_MAX, GEOM_MAX,
                                   GEOM_MAX, GEOM_MAX,  GEOM_MAX, GEOM_MAX, GEOM_MAX,
                                   GEOM_MAX, GEOM_MAX,  INT64_MAX};
    long long v[13];
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError,
                        "pool2d(x, dst, mode, fill, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, "
                        "limit)");
        return NULL;
    }
    if (parse_ints(args, 2, 13, names, lo, hi, v) < 0) {
        return NULL;
    }
    Py_buffer x, dst;
    if (get_int64(args[0], &x, 0, 4, "x") < 0) {
        return NULL;
    }
    if (get_int64(args[1], &dst, 1, 4, "dst") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    PyObject *result = NULL;
    pool_args a = {
        .x = x.buf, .dst = dst.buf, .planes = x.shape[0] * x.shape[1], .h = x.shape[2],
        .wd = x.shape[3], .mode = (int)v[0], .fill = (int64_t)v[1], .kh = (Py_ssize_t)v[2],
        .kw = (Py_ssize_t)v[3], .sh = (Py_ssize_t)v[4], .sw = (Py_ssize_t)v[5],
        .dh = (Py_ssize_t)v[6], .dw = (Py_ssize_t)v[7], .pt = (Py_ssize_t)v[8],
        .pl = (Py_ssize_t)v[9], .pb = (Py_ssize_t)v[10], .pr = (Py_ssize_t)v[11],
        .limit = (int64_t)v[12],
    };
    a.oh = out_size(a.h, a.kh, a.sh, a.dh, a.pt, a.pb);
    a.ow = out_size(a.wd, a.kw, a.sw, a.dw, a.pl, a.pr);
    if (a.oh < 1 || a.ow < 1 || dst.shape[0] != x.shape[0] || dst.shape[1] != x.shape[1] ||
        dst.shape[2] != a.oh || dst.shape[3] != a.ow) {
        PyErr_SetString(PyExc_ValueError, "pool2d: dst shape does not match the pooling");
    } else {
        Py_ssize_t over;
        if (dst.len / 8 >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = pool_loop(&a);
            Py_END_ALLOW_THREADS
        } else {
            over = pool_loop(&a);
        }
        result = over < 0 ? PyErr_NoMemory() : PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------------------- */

/*
 * lut and softmax: the table steps (ops/nonlinear.py, tables.lookup) and their saturation.
 *
 * Why: numpy's lookup takes a dozen passes over the tensor (clip, shifts, two gathers,
 * two where), about 14 ns a value; MiniLM runs 1.2 million values through GELU's table and
 * as many through softmax. One pass here. The table has intervals + 1 entries, 0 <= shift
 * <= 62 and intervals << shift < 2**61 (checked by parse_lut), so every index is in range.
 */
typedef struct {
    const int64_t *table;
    int64_t lo, last, half; /* half 2**(shift-1) or 0: shr_round is (x + half) >> shift */
    int64_t below, above;   /* T[0] and T[intervals] */
    int shift;
} lut_args;

/* tables.lookup of one value: T[i] + shr_round((T[i+1] - T[i]) * frac, shift) inside the
 * grid, T[0] below it, T[intervals] above it (int64 wrap-around as numpy's). Branch-free, so
 * that loops over it vectorize (the two table reads become gathers). */
static inline __attribute__((always_inline)) int64_t
lut_value(const lut_args *t, int64_t x)
{
    const int64_t u = (int64_t)((uint64_t)x - (uint64_t)t->lo);
    const int64_t inside = u < 0 ? 0 : (u >= t->last ? t->last - 1 : u);
    const int64_t i = inside >> t->shift, frac = inside - (i << t->shift);
    const int64_t left = t->table[i];
    const int64_t step = (int64_t)(((uint64_t)t->table[i + 1] - (uint64_t)left) * (uint64_t)frac);
    const int64_t y = wrap_add(left, wrap_add(step, t->half) >> t->shift);
    return u < 0 ? t->below : (u >= t->last ? t->above : y);
}

VECTOR_CLONES static Py_ssize_t
lut_loop(const lut_args *args, const int64_t *restrict x, Py_ssize_t n, int64_t limit,
         int64_t *restrict dst)
{
    const lut_args t = *args; /* a local copy: dst cannot alias it, its fields stay in registers */
    Py_ssize_t over = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        dst[i] = clamp(lut_value(&t, x[i]), limit, &over);
    }
    return over;
}

/* Softmax of `rows` rows of n values (ops/nonlinear.run_softmax): e = T(x - max), S = sum e,
 * y = div_round(e << out_scale, S), saturated; -1 if an entry it reads is outside
 * [0, 2**31) (fused.prepare_table refuses such tables: checking them here would cost a scan
 * of the whole table per call). With out_scale <= 30 then 0 <= e <= S, every quotient is at
 * most 2**out_scale + 1/2 and div_round_small is exact (its float64 quotient is within 2**-20
 * of the true one). S = 0 gives 0, as numpy's integer division by zero. dst holds e until the
 * row is divided. */
VECTOR_CLONES static Py_ssize_t
softmax_loop(const lut_args *args, const int64_t *restrict x, Py_ssize_t rows, Py_ssize_t n,
             int out_scale, int64_t limit, int64_t *restrict dst)
{
    const lut_args t = *args;
    Py_ssize_t over = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const int64_t *row = x + r * n;
        int64_t *e = dst + r * n;
        int64_t m = row[0], total = 0;
        uint64_t outside = 0;
        for (Py_ssize_t i = 1; i < n; i++) {
            m = row[i] > m ? row[i] : m;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            e[i] = lut_value(&t, (int64_t)((uint64_t)row[i] - (uint64_t)m));
            outside |= (uint64_t)e[i] >> 31;
            total = wrap_add(total, e[i]);
        }
        if (outside) {
            return -1;
        }
        const double inv = total > 0 ? 1.0 / (double)total : 0.0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t y = total > 0 ? div_round_small(e[i] << out_scale, total, inv) : 0;
            e[i] = clamp(y, limit, &over);
        }
    }
    return over;
}

/* The lut_args of (table, lo, shift, intervals) args; -1 with an exception if they are not
 * what lut_value may index. */
static int
parse_lut(PyObject *const *args, Py_buffer *table, lut_args *t)
{
    static const char *const names[] = {"lo", "shift", "intervals"};
    static const long long lo[] = {INT64_MIN / 4, 0, 1};
    static const long long hi[] = {INT64_MAX / 4, 62, INT64_MAX / 4};
    long long v[3];
    if (parse_ints(args, 1, 3, names, lo, hi, v) < 0 ||
        get_int64(args[0], table, 0, 1, "table") < 0) {
        return -1;
    }
    if (v[2] > (INT64_MAX / 4) >> v[1] || table->shape[0] != v[2] + 1) {
        PyErr_SetString(PyExc_ValueError, "lut: the table must have intervals + 1 entries, "
                                          "and intervals << shift < 2**61");
        PyBuffer_Release(table);
        return -1;
    }
    const int64_t *entries = table->buf;
    *t = (lut_args){.table = entries, .lo = (int64_t)v[0], .last = (int64_t)v[2] << v[1],
                    .half = v[1] > 0 ? (int64_t)1 << (v[1] - 1) : 0, .below = entries[0],
                    .above = entries[v[2]], .shift = (int)v[1]};
    return 0;
}

static PyObject *
py_lut(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "lut(x, table, lo, shift, intervals, limit, dst)");
        return NULL;
    }
    long long limit;
    if (parse_int(args[5], 0, INT64_MAX, &limit, "limit") < 0) {
        return NULL;
    }
    Py_buffer table, x, dst;
    lut_args t;
    if (parse_lut(args + 1, &table, &t) < 0) {
        return NULL;
    }
    if (get_buffer(args[0], &x, 0, "x") < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    if (get_buffer(args[6], &dst, 1, "dst") < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&x);
        return NULL;
    }
    PyObject *result = NULL;
    if (kind_of(&x) != 'i' || kind_of(&dst) != 'i' || x.len != dst.len) {
        PyErr_SetString(PyExc_TypeError, "lut needs int64 x and dst of one size");
    } else {
        Py_ssize_t n = x.len / 8, over;
        if (n >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = lut_loop(&t, x.buf, n, limit, dst.buf);
            Py_END_ALLOW_THREADS
        } else {
            over = lut_loop(&t, x.buf, n, limit, dst.buf);
        }
        result = PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&x);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *
py_softmax(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "softmax(x, table, lo, shift, intervals, out_scale, limit, dst)");
        return NULL;
    }
    long long out_scale, limit;
    if (parse_int(args[5], 0, 30, &out_scale, "out_scale") < 0 ||
        parse_int(args[6], 0, INT64_MAX, &limit, "limit") < 0) {
        return NULL;
    }
    Py_buffer table, x, dst;
    lut_args t;
    if (parse_lut(args + 1, &table, &t) < 0) {
        return NULL;
    }
    if (get_int64(args[0], &x, 0, 2, "x") < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    if (get_int64(args[7], &dst, 1, 2, "dst") < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&x);
        return NULL;
    }
    PyObject *result = NULL;
    if (x.shape[0] != dst.shape[0] || x.shape[1] != dst.shape[1] || x.shape[1] < 1) {
        PyErr_SetString(PyExc_ValueError, "softmax needs (rows, n >= 1) x and dst");
    } else {
        Py_ssize_t over;
        if (x.len / 8 >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = softmax_loop(&t, x.buf, x.shape[0], x.shape[1], (int)out_scale, limit, dst.buf);
            Py_END_ALLOW_THREADS
        } else {
            over = softmax_loop(&t, x.buf, x.shape[0], x.shape[1], (int)out_scale, limit, dst.buf);
        }
        result = PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&x);
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------------------- */

/*
 * elementwise: add/sub, mul and where (ops/elementwise.py) with numpy broadcasting, and the
 * saturation, in one pass.
 *
 * Why: each is 3-6 numpy passes (two shr_rounds, the operation, the saturation's compare,
 * count and clip); a transformer runs dozens of them on every activation. The caller merges
 * the broadcast into at most 3 dims (fused.prepare_elementwise): operand k's element at
 * (i0, i1, i2) is x_k[i0 * s_k0 + i1 * s_k1 + i2 * s_k2], its innermost stride 0 or 1, so
 * that each row is a vector loop specialized for the operands that broadcast along it.
 */
enum { EW_ADD, EW_MUL, EW_WHERE };

/* shr_round by shift_a and shift_b as branch-free ((x + half) >> right) << left, which
 * vectorizes; neg is -1 for sub (b is negated as (b ^ -1) + 1, wrapping), 0 for add. */
typedef struct {
    int64_t half_a, half_b, neg, limit;
    int right_a, left_a, right_b, left_b;
} ew_args;

static inline ew_args
ew_setup(int shift_a, int shift_b, int sign, int64_t limit)
{
    return (ew_args){
        .half_a = shift_a > 0 ? (int64_t)1 << (shift_a - 1) : 0,
        .half_b = shift_b > 0 ? (int64_t)1 << (shift_b - 1) : 0,
        .neg = sign > 0 ? 0 : -1, /* as run_add: a + b if sign > 0 else a - b */
        .limit = limit,
        .right_a = shift_a > 0 ? shift_a : 0,
        .left_a = shift_a < 0 ? -shift_a : 0,
        .right_b = shift_b > 0 ? shift_b : 0,
        .left_b = shift_b < 0 ? -shift_b : 0,
    };
}

#define EW_SHR_A(x) wrap_shl(wrap_add((x), e->half_a) >> e->right_a, e->left_a)
#define EW_SHR_B(x) wrap_shl(wrap_add((x), e->half_b) >> e->right_b, e->left_b)

/* One output row of n values; c/a/b advance by sc/sa/sb (0 or 1, constants once inlined). */
#define EW_ROW(NAME, EXPR)                                                                  \
    static inline __attribute__((always_inline)) Py_ssize_t NAME(                          \
        const ew_args *e, const int64_t *restrict pc, const int64_t *restrict pa,          \
        const int64_t *restrict pb, Py_ssize_t n, const int sc, const int sa, const int sb, \
        int64_t *restrict d)                                                               \
    {                                                                                      \
        Py_ssize_t over = 0;                                                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            const int64_t c = pc[i * sc], a = pa[i * sa], b = pb[i * sb];                  \
            (void)c;                                                                       \
            d[i] = clamp((EXPR), e->limit, &over);                                         \
        }                                                                                  \
        return over;                                                                       \
    }

/* run_add: shr_round(a, shift_a) +/- shr_round(b, shift_b), wrapping as numpy's int64 */
EW_ROW(ew_add_row, wrap_add(EW_SHR_A(a), (int64_t)(((uint64_t)EW_SHR_B(b) ^ (uint64_t)e->neg) -
                                                   (uint64_t)e->neg)))
/* run_mul: shr_round(a * b, shift_a) */
EW_ROW(ew_mul_row, EW_SHR_A((int64_t)((uint64_t)a * (uint64_t)b)))
/* run_where: c != 0 ? shr_round(a, shift_a) : shr_round(b, shift_b) */
EW_ROW(ew_where_row, c != 0 ? EW_SHR_A(a) : EW_SHR_B(b))

#define EW_CASES(ROW)                                                                       \
    switch (key) {                                                                          \
    case 0: return ROW(e, pc, pa, pb, n, 0, 0, 0, d);                                       \
    case 1: return ROW(e, pc, pa, pb, n, 0, 0, 1, d);                                       \
    case 2: return ROW(e, pc, pa, pb, n, 0, 1, 0, d);                                       \
    case 3: return ROW(e, pc, pa, pb, n, 0, 1, 1, d);                                       \
    case 4: return ROW(e, pc, pa, pb, n, 1, 0, 0, d);                                       \
    case 5: return ROW(e, pc, pa, pb, n, 1, 0, 1, d);                                       \
    case 6: return ROW(e, pc, pa, pb, n, 1, 1, 0, d);                                       \
    default: return ROW(e, pc, pa, pb, n, 1, 1, 1, d);                                      \
    }

/* key: the inner strides of c, a and b as bits 2, 1, 0 */
static inline __attribute__((always_inline)) Py_ssize_t
ew_row(int op, int key, const ew_args *e, const int64_t *pc, const int64_t *pa,
       const int64_t *pb, Py_ssize_t n, int64_t *d)
{
    if (op == EW_ADD) {
        EW_CASES(ew_add_row)
    }
    if (op == EW_MUL) {
        EW_CASES(ew_mul_row)
    }
    EW_CASES(ew_where_row)
}

/* g: dims n0, n1, n2, then (s0, s1, s2) for c, a and b (c: all 0 unless op is where). */
VECTOR_CLONES static Py_ssize_t
ew_loop(int op, const int64_t *g, const ew_args *e, const int64_t *c, const int64_t *a,
        const int64_t *b, int64_t *dst)
{
    const int key = (int)(g[5] << 2 | g[8] << 1 | g[11]);
    Py_ssize_t over = 0;
    for (int64_t i0 = 0; i0 < g[0]; i0++) {
        for (int64_t i1 = 0; i1 < g[1]; i1++) {
            over += ew_row(op, key, e, c + i0 * g[3] + i1 * g[4], a + i0 * g[6] + i1 * g[7],
                           b + i0 * g[9] + i1 * g[10], g[2], dst + (i0 * g[1] + i1) * g[2]);
        }
    }
    return over;
}

/* Whether an operand of len bytes holds every element the geometry reads (strides >= 0,
 * innermost stride 0 or 1). */
static int
ew_operand_fits(const int64_t *g, const int64_t *s, Py_ssize_t len)
{
    if (s[0] < 0 || s[1] < 0 || (s[2] != 0 && s[2] != 1)) {
        return 0;
    }
    int64_t last = 0, step; /* (g0 - 1) s0 + (g1 - 1) s1 + (g2 - 1) s2, if no overflow */
    for (int k = 0; k < 3; k++) {
        if (__builtin_mul_overflow(g[k] - 1, s[k], &step) ||
            __builtin_add_overflow(last, step, &last)) {
            return 0;
        }
    }
    return last < len / 8;
}

static PyObject *
py_elementwise(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"op", "limit", "shift_a", "shift_b", "sign"};
    static const long long lo[] = {EW_ADD, 0, -63, -63, -1};
    static const long long hi[] = {EW_WHERE, INT64_MAX, 63, 63, 1};
    long long v[5];
    if (nargs < 9 || nargs > 10) {
        PyErr_SetString(PyExc_TypeError, "elementwise(op, limit, shift_a, shift_b, sign, "
                                         "geometry, dst, a, b) or (..., dst, cond, a, b)");
        return NULL;
    }
    if (parse_ints(args, 0, 5, names, lo, hi, v) < 0) {
        return NULL;
    }
    const int op = (int)v[0], n_in = op == EW_WHERE ? 3 : 2;
    if (nargs != 7 + n_in) {
        PyErr_SetString(PyExc_TypeError, "elementwise: add and mul take 2 operands, where 3");
        return NULL;
    }
    Py_buffer g, dst, in[3];
    int got = 0;
    PyObject *result = NULL;
    if (get_int64(args[5], &g, 0, 1, "geometry") < 0) {
        return NULL;
    }
    if (get_buffer(args[6], &dst, 1, "dst") < 0) {
        goto release_g;
    }
    for (; got < n_in; got++) {
        if (get_buffer(args[7 + got], &in[got], 0, "operand") < 0) {
            goto release;
        }
    }
    const int64_t *geo = g.buf;
    int64_t size;
    int ok = g.shape[0] == 12 && geo[0] >= 1 && geo[1] >= 1 && geo[2] >= 1 &&
             !__builtin_mul_overflow(geo[0], geo[1], &size) &&
             !__builtin_mul_overflow(size, geo[2], &size) && kind_of(&dst) == 'i' &&
             dst.len / 8 == size;
    for (int k = 0; ok && k < 3; k++) {
        const int64_t *s = geo + 3 + 3 * k; /* c, a, b */
        const Py_buffer *x = k + n_in - 3 >= 0 ? &in[k + n_in - 3] : NULL;
        ok = x == NULL ? (s[0] | s[1] | s[2]) == 0
                       : kind_of(x) == 'i' && ew_operand_fits(geo, s, x->len);
    }
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "elementwise: the geometry does not match the "
                                          "int64 operands and dst");
        goto release;
    }
    const ew_args e = ew_setup((int)v[2], (int)v[3], (int)v[4], (int64_t)v[1]);
    const int64_t *c = in[0].buf; /* for add and mul: a, read at stride 0 and unused */
    const int64_t *a = in[n_in - 2].buf, *b = in[n_in - 1].buf;
    Py_ssize_t over;
    if (dst.len / 8 >= GIL_FREE_VALUES) {
        Py_BEGIN_ALLOW_THREADS
        over = ew_loop(op, geo, &e, c, a, b, dst.buf);
        Py_END_ALLOW_THREADS
    } else {
        over = ew_loop(op, geo, &e, c, a, b, dst.buf);
    }
    result = PyLong_FromSsize_t(over);
release:
    for (int k = 0; k < got; k++) {
        PyBuffer_Release(&in[k]);
    }
    PyBuffer_Release(&dst);
release_g:
    PyBuffer_Release(&g);
    return result;
}

/* ------------------------------------------------------------------------------------- */

/*
 * layernorm: the LayerNormalization step (ops/nonlinear.run_layernorm) and its saturation,
 * one row at a time: three passes over a row in cache instead of a dozen numpy passes over
 * the whole tensor (15 ns a value in numpy).
 *
 * The square root is fixed.isqrt's formula: the float64 square root, floored, then corrected
 * by one either way; done in C for var + eps in [0, 2**52), where every step is exact. Outside
 * that range (which the compiler's bounds rule out) the call returns -1 and the caller runs
 * numpy. Sums and products wrap as numpy's int64.
 */
#define ISQRT_EXACT ((int64_t)1 << 52)
#define NORM_SCALE 16 /* ops/nonlinear.NORM_SCALE */

typedef struct {
    const int64_t *gamma, *beta;
    int64_t eps, limit;
    int beta_shift, shift;
} ln_args;

/* One row of n values; -1 if its var + eps is outside [0, 2**52). */
static inline Py_ssize_t
layernorm_row(const ln_args *a, const int64_t *restrict x, Py_ssize_t n, int64_t *restrict out)
{
    uint64_t sum = 0, squares = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        sum += (uint64_t)x[i];
    }
    const int64_t mean = div_round((int64_t)sum, n);
    uint64_t wide = 0; /* set if some |d| >= 2**33: then d << 16 is not a "small" numerator */
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t d = (uint64_t)x[i] - (uint64_t)mean;
        squares += d * d;
        wide |= (d + ((uint64_t)1 << 33)) >> 34;
    }
    const int64_t v = wrap_add(div_round((int64_t)squares, n), a->eps);
    if (v < 0 || v >= ISQRT_EXACT) {
        return -1;
    }
    int64_t r = (int64_t)floor(sqrt((double)v));
    r -= r * r > v;
    r += (r + 1) * (r + 1) <= v;
    r = r > 1 ? r : 1;
    const double inv = 1.0 / (double)r;
    Py_ssize_t over = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t num = wrap_shl((int64_t)((uint64_t)x[i] - (uint64_t)mean), NORM_SCALE);
        const int64_t norm = wide ? div_round(num, r) : div_round_small(num, r, inv);
        const int64_t y = (int64_t)((uint64_t)norm * (uint64_t)a->gamma[i] +
                                    (uint64_t)wrap_shl(a->beta[i], a->beta_shift));
        out[i] = clamp(shr_round(y, a->shift), a->limit, &over);
    }
    return over;
}

VECTOR_CLONES static Py_ssize_t
layernorm_loop(const ln_args *a, const int64_t *x, Py_ssize_t rows, Py_ssize_t n,
               int64_t *dst)
{
    Py_ssize_t over = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        Py_ssize_t row = layernorm_row(a, x + r * n, n, dst + r * n);
        if (row < 0) {
            return -1;
        }
        over += row;
    }
    return over;
}

static PyObject *
py_layernorm(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"eps", "beta_shift", "shift", "limit"};
    static const long long lo[] = {INT64_MIN, 0, -63, 0};
    static const long long hi[] = {INT64_MAX, 63, 63, INT64_MAX};
    long long v[4];
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "layernorm(x, gamma, beta, eps, beta_shift, shift, limit, dst)");
        return NULL;
    }
    if (parse_ints(args, 3, 4, names, lo, hi, v) < 0) {
        return NULL;
    }
    Py_buffer x, gamma, beta, dst;
    PyObject *result = NULL;
    if (get_int64(args[0], &x, 0, 2, "x") < 0) {
        return NULL;
    }
    if (get_int64(args[1], &gamma, 0, 1, "gamma") < 0) {
        goto release_x;
    }
    if (get_int64(args[2], &beta, 0, 1, "beta") < 0) {
        goto release_gamma;
    }
    if (get_int64(args[7], &dst, 1, 2, "dst") < 0) {
        goto release_beta;
    }
    const Py_ssize_t rows = x.shape[0], n = x.shape[1];
    if (n < 1 || gamma.shape[0] != n || beta.shape[0] != n || dst.shape[0] != rows ||
        dst.shape[1] != n) {
        PyErr_SetString(PyExc_ValueError,
                        "layernorm needs (rows, n >= 1) x and dst, and n gammas and betas");
    } else {
        const ln_args a = {.gamma = gamma.buf, .beta = beta.buf, .eps = (int64_t)v[0],
                           .beta_shift = (int)v[1], .shift = (int)v[2], .limit = (int64_t)v[3]};
        Py_ssize_t over;
        if (x.len / 8 >= GIL_FREE_VALUES) {
            Py_BEGIN_ALLOW_THREADS
            over = layernorm_loop(&a, x.buf, rows, n, dst.buf);
            Py_END_ALLOW_THREADS
        } else {
            over = layernorm_loop(&a, x.buf, rows, n, dst.buf);
        }
        result = PyLong_FromSsize_t(over);
    }
    PyBuffer_Release(&dst);
release_beta:
    PyBuffer_Release(&beta);
release_gamma:
    PyBuffer_Release(&gamma);
release_x:
    PyBuffer_Release(&x);
    return result;
}

static PyMethodDef methods[] = {
    {"conv_impls", py_conv_impls, METH_NOARGS, "conv_impls() -> names of the usable variants."},
    {"get_conv_impl", py_get_conv_impl, METH_NOARGS, "get_conv_impl() -> the variant in use."},
    {"set_conv_impl", py_set_conv_impl, METH_O, "set_conv_impl(name) -> use it (tests)."},
    {"quantize", (PyCFunction)(void (*)(void))py_quantize, METH_FASTCALL,
     "quantize(src, dst, scale, limit) -> clamped count, or -1 if src holds NaN/inf."},
    {"requantize", (PyCFunction)(void (*)(void))py_requantize, METH_FASTCALL,
     "requantize(acc, bias, bias_shift, shift, limit, dst, relu) -> clamped count."},
    {"relu_saturate", (PyCFunction)(void (*)(void))py_relu_saturate, METH_FASTCALL,
     "relu_saturate(src, dst, limit) -> clamped count."},
    {"dense", (PyCFunction)(void (*)(void))py_dense, METH_FASTCALL,
     "dense(x, w, bias, bias_shift, shift, limit, relu, dst) -> clamped count, or -2."},
    {"conv2d", (PyCFunction)(void (*)(void))py_conv2d, METH_FASTCALL,
     "conv2d(x, w, bias, dst, sh, sw, dh, dw, pt, pl, pb, pr, group, bias_shift, shift, limit,"
     " relu) -> clamped count."},
    {"pool2d", (PyCFunction)(void (*)(void))py_pool2d, METH_FASTCALL,
     "pool2d(x, dst, mode, fill, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, limit) -> clamped."},
    {"elementwise", (PyCFunction)(void (*)(void))py_elementwise, METH_FASTCALL,
     "elementwise(op, limit, shift_a, shift_b, sign, geometry, dst, [cond,] a, b) -> clamped."},
    {"layernorm", (PyCFunction)(void (*)(void))py_layernorm, METH_FASTCALL,
     "layernorm(x, gamma, beta, eps, beta_shift, shift, limit, dst) -> clamped count, or -1."},
    {"lut", (PyCFunction)(void (*)(void))py_lut, METH_FASTCALL,
     "lut(x, table, lo, shift, intervals, limit, dst) -> clamped count."},
    {"softmax", (PyCFunction)(void (*)(void))py_softmax, METH_FASTCALL,
     "softmax(x, table, lo, shift, intervals, out_scale, limit, dst) -> clamped count, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fixed",
    "Fused fixed-point kernels (quantize, requantize, relu, conv2d, pool2d, elementwise, "
    "layernorm, lut, softmax) for "
    "verinfer.runtime.fused.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fixed(void)
{
    select_conv_rows();
    return PyModule_Create(&module);
}
