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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>

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

/* ------------------------------------------------------------------------------------- */

typedef struct {
    const void *acc;
    char acc_kind;
    const int64_t *bias; /* NULL or n_bias values, broadcast over the last axis */
    Py_ssize_t n_bias;
    int bias_shift, shift;
    int64_t limit;
    int64_t *dst;
    Py_ssize_t n;
} requant_args;

VECTOR_CLONES static Py_ssize_t
requantize_loop(const requant_args *a)
{
    Py_ssize_t over = 0;
    const int shift = a->shift;
    const int64_t limit = a->limit;
    int64_t *dst = a->dst;
    if (a->bias == NULL) {
        if (a->acc_kind == 'd') {
            const double *acc = a->acc;
            for (Py_ssize_t i = 0; i < a->n; i++) {
                dst[i] = clamp(shr_round((int64_t)acc[i], shift), limit, &over);
            }
        } else {
            const int64_t *acc = a->acc;
            for (Py_ssize_t i = 0; i < a->n; i++) {
                dst[i] = clamp(shr_round(acc[i], shift), limit, &over);
            }
        }
        return over;
    }
    const Py_ssize_t m = a->n_bias;
    const int bias_shift = a->bias_shift;
    if (a->acc_kind == 'd') {
        const double *acc = a->acc;
        for (Py_ssize_t row = 0; row < a->n; row += m) {
            for (Py_ssize_t j = 0; j < m; j++) {
                int64_t x = wrap_add((int64_t)acc[row + j], wrap_shl(a->bias[j], bias_shift));
                dst[row + j] = clamp(shr_round(x, shift), limit, &over);
            }
        }
    } else {
        const int64_t *acc = a->acc;
        for (Py_ssize_t row = 0; row < a->n; row += m) {
            for (Py_ssize_t j = 0; j < m; j++) {
                int64_t x = wrap_add(acc[row + j], wrap_shl(a->bias[j], bias_shift));
                dst[row + j] = clamp(shr_round(x, shift), limit, &over);
            }
        }
    }
    return over;
}

static PyObject *
py_requantize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "requantize(acc, bias, bias_shift, shift, limit, dst)");
        return NULL;
    }
    long long bias_shift, shift, limit;
    if (parse_int(args[2], 0, 63, &bias_shift, "bias_shift") < 0 ||
        parse_int(args[3], -63, 63, &shift, "shift") < 0 ||
        parse_int(args[4], 0, INT64_MAX, &limit, "limit") < 0) {
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

static PyMethodDef methods[] = {
    {"quantize", (PyCFunction)(void (*)(void))py_quantize, METH_FASTCALL,
     "quantize(src, dst, scale, limit) -> clamped count, or -1 if src holds NaN/inf."},
    {"requantize", (PyCFunction)(void (*)(void))py_requantize, METH_FASTCALL,
     "requantize(acc, bias, bias_shift, shift, limit, dst) -> clamped count."},
    {"relu_saturate", (PyCFunction)(void (*)(void))py_relu_saturate, METH_FASTCALL,
     "relu_saturate(src, dst, limit) -> clamped count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fixed",
    "Fused fixed-point kernels (quantize, requantize, relu) for verinfer.runtime.fused.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fixed(void)
{
    return PyModule_Create(&module);
}
