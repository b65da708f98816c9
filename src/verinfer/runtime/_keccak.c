/*
 * _keccak.c - Keccak-256 (Ethereum's keccak256) and batched Merkle hashing for
 * verinfer.runtime.commit.
 *
 * Why hand-written: a trace commitment hashes about a million 64-byte nodes, and every
 * Python keccak binding (pycryptodome, eth-hash) costs microseconds per call in call overhead
 * alone. This module hashes a whole tree level per call, and several nodes at once with
 * SIMD lanes where the CPU has them, so committing a 64x64 tensor stays in the tens of
 * microseconds.
 *
 * Written for verinfer from the Keccak specification: the permutation Keccak-f[1600] is the
 * one of FIPS 202 section 3 (theta, rho, pi, chi, iota; 24 rounds), its constants derived
 * from the definitions there. The sponge uses rate 136 bytes, capacity 512 bits and the
 * ORIGINAL Keccak padding (first pad byte 0x01, last 0x80) that Ethereum's keccak256 uses -
 * not SHA3-256's 0x06.
 *
 * Python API (see _keccak.pyi):
 *   keccak256(data) -> bytes        32-byte digest of any bytes-like object
 *   hash_pairs(buf) -> bytes        keccak256 of each consecutive 64-byte chunk, concatenated
 *   merkle_root(words) -> bytes     root of the zero-padded tree over 32-byte words
 *   impls(), get_impl(), set_impl(name)   which lane width hash_pairs uses (tests, benchmarks)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define RATE_BYTES 136     /* 1600 - 2 * 256 bits */
#define MAX_LEVELS 64      /* zero-subtree hashes Z[0..63] cover any tree that fits in memory */
#define GIL_FREE_BYTES 4096 /* release the GIL for inputs at least this large */

/* iota round constants: RC[i] has bit 2^j - 1 set iff rc(j + 7i) = 1 (FIPS 202, 3.2.5). */
static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* Lanes are little-endian 64-bit words of the state (FIPS 202, 3.1.2), on any host. */
static inline uint64_t
load64(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

static inline void
store64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* Rotation by a constant 1..63; works for uint64_t and for GCC/Clang vectors of them. */
#define ROL(v, n) (((v) << (n)) | ((v) >> (64 - (n))))

/*
 * One round function for every lane type T. State index i = x + 5*y. For T a vector of k
 * lanes, element j of every state word belongs to permutation j: k independent states
 * are permuted at once, with no shuffles between elements.
 *
 * rho and pi are fused: B[y + 5*((2x + 3y) mod 5)] = ROL(A[x + 5y], r[x][y]), and the
 * offsets r[x][y] = (t+1)(t+2)/2 mod 64 walk (x, y) -> (y, 2x + 3y) from (1, 0).
 */
#define DEFINE_KECCAK_F(NAME, T, ATTR)                                                    \
    ATTR static inline void NAME(T *A)                                                    \
    {                                                                                     \
        T C[5], D[5], B[25];                                                              \
        for (int round = 0; round < 24; round++) {                                        \
            for (int x = 0; x < 5; x++) {                                                 \
                C[x] = A[x] ^ A[x + 5] ^ A[x + 10] ^ A[x + 15] ^ A[x + 20];               \
            }                                                                             \
            D[0] = C[4] ^ ROL(C[1], 1);                                                   \
            D[1] = C[0] ^ ROL(C[2], 1);                                                   \
            D[2] = C[1] ^ ROL(C[3], 1);                                                   \
            D[3] = C[2] ^ ROL(C[4], 1);                                                   \
            D[4] = C[3] ^ ROL(C[0], 1);                                                   \
            for (int y = 0; y < 25; y += 5) {                                             \
                for (int x = 0; x < 5; x++) {                                             \
                    A[y + x] ^= D[x];                                                     \
                }                                                                         \
            }                                                                             \
            B[0] = A[0];                                                                  \
            B[1] = ROL(A[6], 44);                                                         \
            B[2] = ROL(A[12], 43);                                                        \
            B[3] = ROL(A[18], 21);                                                        \
            B[4] = ROL(A[24], 14);                                                        \
            B[5] = ROL(A[3], 28);                                                         \
            B[6] = ROL(A[9], 20);                                                         \
            B[7] = ROL(A[10], 3);                                                         \
            B[8] = ROL(A[16], 45);                                                        \
            B[9] = ROL(A[22], 61);                                                        \
            B[10] = ROL(A[1], 1);                                                         \
            B[11] = ROL(A[7], 6);                                                         \
            B[12] = ROL(A[13], 25);                                                       \
            B[13] = ROL(A[19], 8);                                                        \
            B[14] = ROL(A[20], 18);                                                       \
            B[15] = ROL(A[4], 27);                                                        \
            B[16] = ROL(A[5], 36);                                                        \
            B[17] = ROL(A[11], 10);                                                       \
            B[18] = ROL(A[17], 15);                                                       \
            B[19] = ROL(A[23], 56);                                                       \
            B[20] = ROL(A[2], 62);                                                        \
            B[21] = ROL(A[8], 55);                                                        \
            B[22] = ROL(A[14], 39);                                                       \
            B[23] = ROL(A[15], 41);                                                       \
            B[24] = ROL(A[21], 2);                                                        \
            for (int y = 0; y < 25; y += 5) {                                             \
                for (int x = 0; x < 5; x++) {                                             \
                    A[y + x] = B[y + x] ^ (~B[y + (x + 1) % 5] & B[y + (x + 2) % 5]);     \
                }                                                                         \
            }                                                                             \
            A[0] ^= RC[round];                                                            \
        }                                                                                 \
    }

DEFINE_KECCAK_F(keccak_f, uint64_t, )

/* ---- keccak256 of arbitrary bytes (scalar sponge) ---------------------------------- */

static void
keccak256_bytes(const uint8_t *data, size_t len, uint8_t out[32])
{
    uint64_t A[25] = {0};
    while (len >= RATE_BYTES) {
        for (int i = 0; i < RATE_BYTES / 8; i++) {
            A[i] ^= load64(data + 8 * i);
        }
        keccak_f(A);
        data += RATE_BYTES;
        len -= RATE_BYTES;
    }
    uint8_t last[RATE_BYTES] = {0};
    memcpy(last, data, len);
    last[len] ^= 0x01;            /* Keccak padding pad10*1, with Keccak's (not SHA3's) 0x01 */
    last[RATE_BYTES - 1] ^= 0x80;
    for (int i = 0; i < RATE_BYTES / 8; i++) {
        A[i] ^= load64(last + 8 * i);
    }
    keccak_f(A);
    for (int i = 0; i < 4; i++) {
        store64(out + 8 * i, A[i]);
    }
}

/* ---- hash_pairs: keccak256 of n 64-byte inputs --------------------------------------
 * A 64-byte message fits one block: lanes 0..7 are the message, the pad byte 0x01 sits at
 * byte 64 (lane 8, low byte) and 0x80 at byte 135 (lane 16, high byte). out may equal in:
 * output i is written only after input i is read, and 32*i <= 64*i. */

#define PAD_LANE_8 0x0000000000000001ULL
#define PAD_LANE_16 0x8000000000000000ULL

static void
pairs_scalar(const uint8_t *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t A[25] = {0};
        for (int k = 0; k < 8; k++) {
            A[k] = load64(in + 64 * i + 8 * k);
        }
        A[8] = PAD_LANE_8;
        A[16] = PAD_LANE_16;
        keccak_f(A);
        for (int k = 0; k < 4; k++) {
            store64(out + 32 * i + 8 * k, A[k]);
        }
    }
}

typedef void (*pairs_fn)(const uint8_t *in, uint8_t *out, size_t n);

/*
 * SIMD variants, x86-64 with GCC or Clang only: GCC vector extensions give 4 (AVX2) or
 * 8 (AVX-512) states per register, compiled for that ISA with a target attribute and
 * chosen at import time by CPUID, so the module still loads on any x86-64 CPU.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SIMD 1

#define DEFINE_PAIRS_SIMD(NAME, VT, K, TARGET)                                            \
    DEFINE_KECCAK_F(NAME##_f, VT, __attribute__((target(TARGET))))                        \
    __attribute__((target(TARGET))) static void NAME##_block(const uint8_t *in,           \
                                                             uint8_t *out)                \
    {                                                                                     \
        VT A[25];                                                                         \
        memset(A, 0, sizeof(A));                                                          \
        for (int k = 0; k < 8; k++) {                                                     \
            for (int j = 0; j < (K); j++) {                                               \
                A[k][j] = load64(in + 64 * j + 8 * k);                                    \
            }                                                                             \
        }                                                                                 \
        for (int j = 0; j < (K); j++) {                                                   \
            A[8][j] = PAD_LANE_8;                                                         \
            A[16][j] = PAD_LANE_16;                                                       \
        }                                                                                 \
        NAME##_f(A);                                                                      \
        for (int k = 0; k < 4; k++) {                                                     \
            for (int j = 0; j < (K); j++) {                                               \
                store64(out + 32 * j + 8 * k, A[k][j]);                                   \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    __attribute__((target(TARGET))) static void NAME(const uint8_t *in, uint8_t *out,     \
                                                     size_t n)                            \
    {                                                                                     \
        size_t i = 0;                                                                     \
        for (; i + (K) <= n; i += (K)) {                                                  \
            NAME##_block(in + 64 * i, out + 32 * i);                                      \
        }                                                                                 \
        size_t rest = n - i;                                                              \
        if (rest == 1) {                                                                  \
            pairs_scalar(in + 64 * i, out + 32 * i, 1);                                   \
        }                                                                                 \
        else if (rest > 1) {                                                              \
            uint8_t tin[64 * (K)], tout[32 * (K)];                                        \
            memset(tin, 0, sizeof(tin));                                                  \
            memcpy(tin, in + 64 * i, 64 * rest);                                          \
            NAME##_block(tin, tout);                                                      \
            memcpy(out + 32 * i, tout, 32 * rest);                                        \
        }                                                                                 \
    }

typedef uint64_t v4u64 __attribute__((vector_size(32)));
typedef uint64_t v8u64 __attribute__((vector_size(64)));

DEFINE_PAIRS_SIMD(pairs_avx2, v4u64, 4, "avx2")
DEFINE_PAIRS_SIMD(pairs_avx512, v8u64, 8, "avx512f")
#endif

static struct {
    const char *name;
    pairs_fn fn;
    int usable;
} IMPLS[] = {
    {"scalar", pairs_scalar, 1},
#ifdef HAVE_SIMD
    {"avx2", pairs_avx2, 0},
    {"avx512", pairs_avx512, 0},
#endif
};
#define N_IMPLS ((int)(sizeof(IMPLS) / sizeof(IMPLS[0])))

static int current_impl = 0;
static uint8_t ZERO_HASHES[MAX_LEVELS][32]; /* Z[0] = 0^32, Z[k+1] = keccak256(Z[k] || Z[k]) */

static void
select_best_impl(void)
{
#ifdef HAVE_SIMD
    __builtin_cpu_init();
    IMPLS[1].usable = __builtin_cpu_supports("avx2") ? 1 : 0;
    IMPLS[2].usable = __builtin_cpu_supports("avx512f") ? 1 : 0;
#endif
    for (int i = 0; i < N_IMPLS; i++) {
        if (IMPLS[i].usable) {
            current_impl = i;
        }
    }
}

/* Root of the tree over n >= 1 words in buf, which has room for n + 1 words; buf is
 * overwritten. A level with an odd count is padded with that level's zero subtree. */
static void
merkle_root_inplace(uint8_t *buf, size_t n, uint8_t out[32])
{
    pairs_fn fn = IMPLS[current_impl].fn;
    for (int level = 0; n > 1; level++) {
        if (n & 1) {
            memcpy(buf + 32 * n, ZERO_HASHES[level], 32);
            n++;
        }
        fn(buf, buf, n / 2);
        n /= 2;
    }
    memcpy(out, buf, 32);
}

/* ---- Python bindings ---------------------------------------------------------------- */

static PyObject *
py_keccak256(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint8_t digest[32];
    if (view.len >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        keccak256_bytes(view.buf, (size_t)view.len, digest);
        Py_END_ALLOW_THREADS
    }
    else {
        keccak256_bytes(view.buf, (size_t)view.len, digest);
    }
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

static PyObject *
py_hash_pairs(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len % 64 != 0) {
        PyErr_Format(PyExc_ValueError,
                     "hash_pairs needs a multiple of 64 bytes, got %zd", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t n = (size_t)view.len / 64;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * n));
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    pairs_fn fn = IMPLS[current_impl].fn;
    if (view.len >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        fn(view.buf, out, n);
        Py_END_ALLOW_THREADS
    }
    else {
        fn(view.buf, out, n);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
py_merkle_root(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len == 0 || view.len % 32 != 0) {
        PyErr_Format(PyExc_ValueError,
                     "merkle_root needs a non-zero multiple of 32 bytes, got %zd", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t n = (size_t)view.len / 32;
    uint8_t *buf = PyMem_RawMalloc(32 * (n + 1));
    if (buf == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    uint8_t root[32];
    Py_BEGIN_ALLOW_THREADS
    memcpy(buf, view.buf, 32 * n);
    merkle_root_inplace(buf, n, root);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(buf);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

static PyObject *
py_impls(PyObject *self, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_IMPLS; i++) {
        if (!IMPLS[i].usable) {
            continue;
        }
        PyObject *name = PyUnicode_FromString(IMPLS[i].name);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

static PyObject *
py_get_impl(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(IMPLS[current_impl].name);
}

static PyObject *
py_set_impl(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
    for (int i = 0; i < N_IMPLS; i++) {
        if (IMPLS[i].usable && strcmp(IMPLS[i].name, name) == 0) {
            current_impl = i;
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "no usable keccak implementation named %R", arg);
    return NULL;
}

static PyMethodDef methods[] = {
    {"keccak256", py_keccak256, METH_O, "keccak256(data) -> 32-byte digest (Ethereum's)."},
    {"hash_pairs", py_hash_pairs, METH_O,
     "hash_pairs(buf) -> keccak256 of each consecutive 64-byte chunk, concatenated."},
    {"merkle_root", py_merkle_root, METH_O,
     "merkle_root(words) -> root of the zero-subtree-padded keccak tree over 32-byte words."},
    {"impls", py_impls, METH_NOARGS, "impls() -> names of the usable hash_pairs variants."},
    {"get_impl", py_get_impl, METH_NOARGS, "get_impl() -> name of the variant in use."},
    {"set_impl", py_set_impl, METH_O, "set_impl(name) -> use that variant (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_keccak",
    "Keccak-256 (Ethereum) and batched Merkle hashing for verinfer.runtime.commit.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__keccak(void)
{
    select_best_impl();
    memset(ZERO_HASHES[0], 0, 32);
    for (int k = 0; k + 1 < MAX_LEVELS; k++) {
        uint8_t pair[64];
        memcpy(pair, ZERO_HASHES[k], 32);
        memcpy(pair + 32, ZERO_HASHES[k], 32);
        pairs_scalar(pair, ZERO_HASHES[k + 1], 1);
    }
    return PyModule_Create(&module);
}
