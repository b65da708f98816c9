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
 *   chunk_leaves(words), words_root(words), values_root(array)   tensor trees (16-word chunks)
 *   Committer: add(array) per tensor, hashed on a worker thread; roots(); trace(order, sfx)
 *   trace_batched(arrays, order, sfx) -> Committer.trace's result, all on the calling thread
 *   impls(), get_impl(), set_impl(name)   the widest lanes hashing uses (tests, benchmarks)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RATE_BYTES 136     /* 1600 - 2 * 256 bits */
#define MAX_LEVELS 64      /* zero-subtree hashes Z[0..63] cover any tree that fits in memory */
#define GIL_FREE_BYTES 4096 /* release the GIL for inputs at least this large */
#define MAX_SUFFIX 2048     /* a tensor leaf's shape-and-scale suffix: 1 + 4 * 255 + 4 bytes */

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

/* ---- many equal-length messages at once -------------------------------------------
 * hash_pairs hashes 64-byte messages (tree nodes), hash_chunks 512-byte ones (the leaves of a
 * tensor tree: 16 packed words). Both are "many": K messages of the same length, stored back
 * to back, each hashed into 32 bytes. out may equal in for 64-byte messages: output i is
 * written only after input i is read, and 32*i <= 64*i. */

#define CHUNK_BYTES 512 /* 16 words, 128 int32 values: one tensor-tree leaf */

static void
many_scalar(const uint8_t *in, size_t len, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        keccak256_bytes(in + len * i, len, out + 32 * i);
    }
}

typedef void (*many_fn)(const uint8_t *in, size_t len, uint8_t *out, size_t n);

/*
 * SIMD variants, x86-64 with GCC or Clang only: GCC vector extensions give 4 (AVX2) or
 * 8 (AVX-512) states per register, compiled for that ISA with a target attribute and
 * chosen at import time by CPUID, so the module still loads on any x86-64 CPU. Lane j of
 * every state word belongs to message j. len must be a multiple of 8.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SIMD 1

#define DEFINE_MANY_SIMD(NAME, VT, K, TARGET)                                             \
    DEFINE_KECCAK_F(NAME##_f, VT, __attribute__((target(TARGET))))                        \
    /* the 32-byte digest of each lane */                                                 \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_squeeze(     \
        const VT *A, uint8_t *out)                                                        \
    {                                                                                     \
        for (int k = 0; k < 4; k++) {                                                     \
            for (int j = 0; j < (K); j++) {                                               \
                store64(out + 32 * j + 8 * k, A[k][j]);                                   \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    __attribute__((target(TARGET), always_inline)) static inline void NAME##_block(       \
        const uint8_t *in, size_t len, uint8_t *out)                                      \
    {                                                                                     \
        VT A[25];                                                                         \
        memset(A, 0, sizeof(A));                                                          \
        size_t off = 0;                                                                   \
        for (; len - off >= RATE_BYTES; off += RATE_BYTES) {                              \
            for (int k = 0; k < RATE_BYTES / 8; k++) {                                    \
                for (int j = 0; j < (K); j++) {                                           \
                    A[k][j] ^= load64(in + len * j + off + 8 * k);                        \
                }                                                                         \
            }                                                                             \
            NAME##_f(A);                                                                  \
        }                                                                                 \
        int tail = (int)((len - off) / 8);                                                \
        for (int k = 0; k < tail; k++) {                                                  \
            for (int j = 0; j < (K); j++) {                                               \
                A[k][j] ^= load64(in + len * j + off + 8 * k);                            \
            }                                                                             \
        }                                                                                 \
        for (int j = 0; j < (K); j++) {                                                   \
            A[tail][j] ^= 0x01ULL;               /* first pad byte, after the message */  \
            A[RATE_BYTES / 8 - 1][j] ^= 0x8000000000000000ULL; /* last byte of block */   \
        }                                                                                 \
        NAME##_f(A);                                                                      \
        NAME##_squeeze(A, out);                                                           \
    }                                                                                     \
    __attribute__((target(TARGET))) static void NAME(const uint8_t *in, size_t len,       \
                                                     uint8_t *out, size_t n)              \
    {                                                                                     \
        size_t i = 0;                                                                     \
        /* constant lengths let the compiler unroll the loads of the common cases */      \
        if (len == 64) {                                                                  \
            for (; i + (K) <= n; i += (K)) {                                              \
                NAME##_block(in + 64 * i, 64, out + 32 * i);                              \
            }                                                                             \
        }                                                                                 \
        else if (len == CHUNK_BYTES) {                                                    \
            for (; i + (K) <= n; i += (K)) {                                              \
                NAME##_block(in + CHUNK_BYTES * i, CHUNK_BYTES, out + 32 * i);            \
            }                                                                             \
        }                                                                                 \
        for (; i + (K) <= n; i += (K)) {                                                  \
            NAME##_block(in + len * i, len, out + 32 * i);                                \
        }                                                                                 \
        size_t rest = n - i;                                                              \
        if (rest > 1 && len <= CHUNK_BYTES) { /* a partial group still goes in lanes */   \
            uint8_t tin[CHUNK_BYTES * (K)], tout[32 * (K)];                               \
            memset(tin, 0, len * (K));                                                    \
            memcpy(tin, in + len * i, len * rest);                                        \
            NAME##_block(tin, len, tout);                                                 \
            memcpy(out + 32 * i, tout, 32 * rest);                                        \
            return;                                                                       \
        }                                                                                 \
        many_scalar(in + len * i, len, out + 32 * i, rest);                               \
    }                                                                                     \
    /* K messages already padded to one RATE_BYTES block each: one permutation */         \
    __attribute__((target(TARGET))) static void NAME##_padded(const uint8_t *in,          \
                                                              uint8_t *out)               \
    {                                                                                     \
        VT A[25];                                                                         \
        memset(A, 0, sizeof(A));                                                          \
        for (int k = 0; k < RATE_BYTES / 8; k++) {                                        \
            for (int j = 0; j < (K); j++) {                                               \
                A[k][j] = load64(in + RATE_BYTES * j + 8 * k);                            \
            }                                                                             \
        }                                                                                 \
        NAME##_f(A);                                                                      \
        NAME##_squeeze(A, out);                                                           \
    }

typedef uint64_t v4u64 __attribute__((vector_size(32)));
typedef uint64_t v8u64 __attribute__((vector_size(64)));

DEFINE_MANY_SIMD(many_avx2, v4u64, 4, "avx2")
DEFINE_MANY_SIMD(many_avx512, v8u64, 8, "avx512f")
#endif

/* Each variant: its name, its sponge over many equal-length messages, and (SIMD only) its
 * permutation of `lanes` messages already padded to one block each. */
static struct {
    const char *name;
    many_fn fn;
    void (*padded)(const uint8_t *in, uint8_t *out);
    size_t lanes;
    int usable;
} IMPLS[] = {
    {"scalar", many_scalar, NULL, 1, 1},
#ifdef HAVE_SIMD
    {"avx2", many_avx2, many_avx2_padded, 4, 0},
    {"avx512", many_avx512, many_avx512_padded, 8, 0},
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

/* The variant for a batch of n messages: the chosen one, but 4 lanes (AVX2) in place of 8
 * (AVX-512) for at most 4 messages, which 4 lanes hold as well. Measured on a traced run of
 * the digits CNN at batch 1, whose tensors are all that small: 29.4 us against 33.4 us with 8
 * lanes (alone, 8 lanes hash 4 chunks faster: 1.6 us against 1.9; in a run they do not). */
static int
impl_for(size_t n)
{
#ifdef HAVE_SIMD
    if (n <= 4 && current_impl == 2 && IMPLS[1].usable) {
        return 1;
    }
#endif
    return current_impl;
}

static many_fn
many_for(size_t n)
{
    return IMPLS[impl_for(n)].fn;
}

static void
hash_pairs_n(const uint8_t *in, uint8_t *out, size_t n)
{
    many_for(n)(in, 64, out, n);
}

/* Root of the tree over n >= 1 nodes of `level` in buf, which has room for n + 1 of them;
 * buf is overwritten. A level with an odd count is padded with that level's zero subtree.
 * Returns the level of the root. */
static int
merkle_root_from(uint8_t *buf, size_t n, int level, uint8_t out[32])
{
    for (; n > 1; level++) {
        if (n & 1) {
            memcpy(buf + 32 * n, ZERO_HASHES[level], 32);
            n++;
        }
        hash_pairs_n(buf, buf, n / 2);
        n /= 2;
    }
    memcpy(out, buf, 32);
    return level;
}

/* Root of the tree over n >= 1 words (leaves) in buf, as merkle_root_from. */
static void
merkle_root_inplace(uint8_t *buf, size_t n, uint8_t out[32])
{
    merkle_root_from(buf, n, 0, out);
}

/* ---- tensor roots ----------------------------------------------------------------------
 * A tensor's m packed words are cut in chunks of 16 (the last may be shorter); each chunk's
 * keccak256 is a leaf of the Merkle tree above. */

static size_t
n_chunks(size_t m)
{
    return (m + CHUNK_BYTES / 32 - 1) / (CHUNK_BYTES / 32);
}

/* The leaf hashes of m >= 1 words into leaves (32 * n_chunks(m) bytes). */
static void
chunk_leaves(const uint8_t *words, size_t m, uint8_t *leaves)
{
    size_t full = (32 * m) / CHUNK_BYTES;
    many_for(full)(words, CHUNK_BYTES, leaves, full);
    size_t rest = 32 * m - CHUNK_BYTES * full;
    if (rest) {
        keccak256_bytes(words + CHUNK_BYTES * full, rest, leaves + 32 * full);
    }
}

/* The tensor root of m >= 1 packed words; returns -1 when out of memory. */
static int
words_root(const uint8_t *words, size_t m, uint8_t out[32])
{
    size_t c = n_chunks(m);
    if (c == 1) {
        keccak256_bytes(words, 32 * m, out);
        return 0;
    }
    uint8_t *leaves = malloc(32 * (c + 1));
    if (leaves == NULL) {
        return -1;
    }
    chunk_leaves(words, m, leaves);
    merkle_root_inplace(leaves, c, out);
    free(leaves);
    return 0;
}

/* A tensor of more than PIECE_CHUNKS chunks is hashed in pieces of PIECE_CHUNKS chunks (the
 * aligned subtrees of level PIECE_LEVEL), which two threads can share; the tensor root is the
 * tree over the pieces' roots from that level up. The same root as words_root's. */
#define PIECE_LEVEL 6
#define PIECE_CHUNKS ((size_t)1 << PIECE_LEVEL)
#define PIECE_VALUES (PIECE_CHUNKS * CHUNK_BYTES / 4) /* 8,192 */

/* The root of one piece: m >= 1 packed words, at most PIECE_CHUNKS chunks. A tensor's last
 * piece may have fewer: its tree is completed with zero subtrees up to PIECE_LEVEL, which
 * is what the whole tensor's tree does at the end of each level. -1 when out of memory. */
static int
piece_root(const uint8_t *words, size_t m, uint8_t out[32])
{
    size_t c = n_chunks(m);
    uint8_t *leaves = malloc(32 * (c + 1));
    if (leaves == NULL) {
        return -1;
    }
    chunk_leaves(words, m, leaves);
    int level = merkle_root_from(leaves, c, 0, out);
    free(leaves);
    for (; level < PIECE_LEVEL; level++) {
        uint8_t pair[64];
        memcpy(pair, out, 32);
        memcpy(pair + 32, ZERO_HASHES[level], 32);
        keccak256_bytes(pair, 64, out);
    }
    return 0;
}

/* Pack n int32 or int64 values (itemsize 4 or 8) as big-endian int32, 8 per word, the last
 * word zero-padded. Returns -2 if a value does not fit in int32. One loop per item size, with
 * the range checked after it, so that the compiler vectorizes them (with AVX2 where the CPU
 * has it: small tensors are packed on the executor's thread, see Committer.add). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PACK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PACK_CLONES
#endif

PACK_CLONES static int
pack_int64(const int64_t *src, size_t n, uint8_t *words)
{
    uint64_t outside = 0; /* v fits in int32 iff v + 2**31 fits in 32 unsigned bits */
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)src[i];
        outside |= (v + 0x80000000u) >> 32;
        uint32_t u = __builtin_bswap32((uint32_t)v);
        memcpy(words + 4 * i, &u, 4);
    }
    return outside ? -2 : 0;
}

PACK_CLONES static void
pack_int32(const int32_t *src, size_t n, uint8_t *words)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = __builtin_bswap32((uint32_t)src[i]);
        memcpy(words + 4 * i, &u, 4);
    }
}

static int
pack_values(const void *src, int itemsize, size_t n, uint8_t *words)
{
    int rc = 0;
    if (itemsize == 8) {
        rc = pack_int64(src, n, words);
    }
    else {
        pack_int32(src, n, words);
    }
    memset(words + 4 * n, 0, 32 * ((n + 7) / 8) - 4 * n);
    return rc;
}

/* The tensor root of n >= 1 values: 0, -1 (out of memory) or -2 (a value outside int32). */
static int
values_root(const void *src, int itemsize, size_t n, uint8_t out[32])
{
    size_t m = (n + 7) / 8;
    uint8_t *words = malloc(32 * m);
    if (words == NULL) {
        return -1;
    }
    int rc = pack_values(src, itemsize, n, words);
    if (rc == 0) {
        rc = words_root(words, m, out);
    }
    free(words);
    return rc;
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
    if (view.len >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        hash_pairs_n(view.buf, out, n);
        Py_END_ALLOW_THREADS
    }
    else {
        hash_pairs_n(view.buf, out, n);
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

/* A non-empty multiple of 32 bytes (packed words), or a ValueError naming the function. */
static int
get_words(PyObject *arg, Py_buffer *view, const char *fn)
{
    if (PyObject_GetBuffer(arg, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view->len == 0 || view->len % 32 != 0) {
        PyErr_Format(PyExc_ValueError, "%s needs a non-zero multiple of 32 bytes, got %zd", fn,
                     view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
py_chunk_leaves(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (get_words(arg, &view, "chunk_leaves") < 0) {
        return NULL;
    }
    size_t m = (size_t)view.len / 32;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * n_chunks(m)));
    if (result != NULL) {
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        chunk_leaves(view.buf, m, out);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
py_words_root(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (get_words(arg, &view, "words_root") < 0) {
        return NULL;
    }
    uint8_t root[32];
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = words_root(view.buf, (size_t)view.len / 32, root);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc < 0) {
        return PyErr_NoMemory();
    }
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

/* A C-contiguous, non-empty buffer of native int32 or int64 values; returns its item size. */
static int
get_values(PyObject *arg, Py_buffer *view)
{
    if (PyObject_GetBuffer(arg, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '=' || *f == '@') {
        f++;
    }
    int ok_int = f[1] == '\0' && (f[0] == 'i' || f[0] == 'l' || f[0] == 'q');
    if (!ok_int || (view->itemsize != 4 && view->itemsize != 8) || view->len == 0) {
        PyErr_Format(PyExc_ValueError,
                     "expected a non-empty C-contiguous int32 or int64 array, got format %s, "
                     "%zd bytes",
                     view->format ? view->format : "B", view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return (int)view->itemsize;
}

static PyObject *
root_result(int rc, const uint8_t root[32])
{
    if (rc == -1) {
        return PyErr_NoMemory();
    }
    if (rc == -2) {
        PyErr_SetString(PyExc_ValueError, "tensor values must fit in int32");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

static PyObject *
py_values_root(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    int itemsize = get_values(arg, &view);
    if (itemsize < 0) {
        return NULL;
    }
    uint8_t root[32];
    int rc;
    size_t n = (size_t)(view.len / itemsize);
    Py_BEGIN_ALLOW_THREADS
    rc = values_root(view.buf, itemsize, n, root);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return root_result(rc, root);
}

/* keccak256(root || suffix): a tensor's leaf in the trace (commit.tensor_leaf). */
static void
tensor_leaf(const uint8_t root[32], PyObject *suffix, uint8_t out[32])
{
    uint8_t buf[32 + MAX_SUFFIX];
    size_t len = (size_t)PyBytes_GET_SIZE(suffix);
    memcpy(buf, root, 32);
    memcpy(buf + 32, PyBytes_AS_STRING(suffix), len);
    keccak256_bytes(buf, 32 + len, out);
}

/* commit_list([keccak256(root_i || suffix_i) ...]): the trace root from each committed
 * tensor's root and its encoded shape and scale (Committer.trace). known_leaves, if given,
 * holds per item a leaf already made (NULL where not). */
static int
trace_root_of(PyObject *roots, PyObject *suffixes, const uint8_t *const *known_leaves,
              uint8_t out[32])
{
    if (!PyList_Check(roots) || !PyTuple_Check(suffixes)) {
        PyErr_SetString(PyExc_TypeError, "expected roots: list[bytes], suffixes: tuple[bytes]");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(roots);
    if (n == 0 || PyTuple_GET_SIZE(suffixes) != n) {
        PyErr_Format(PyExc_ValueError, "a trace root needs as many suffixes as roots (>= 1), "
                     "got %zd roots and %zd suffixes", n, PyTuple_GET_SIZE(suffixes));
        return -1;
    }
    uint8_t *leaves = PyMem_Malloc(32 * ((size_t)n + 1));
    if (leaves == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *root = PyList_GET_ITEM(roots, i), *sfx = PyTuple_GET_ITEM(suffixes, i);
        if (!PyBytes_Check(root) || PyBytes_GET_SIZE(root) != 32 || !PyBytes_Check(sfx) ||
            PyBytes_GET_SIZE(sfx) > MAX_SUFFIX) {
            PyMem_Free(leaves);
            PyErr_Format(PyExc_ValueError, "item %zd is not a 32-byte root with a bytes suffix "
                         "of at most %d bytes", i, MAX_SUFFIX);
            return -1;
        }
        const uint8_t *known = known_leaves ? known_leaves[i] : NULL;
        if (known != NULL) {
            memcpy(leaves + 32 * i, known, 32);
        }
        else {
            tensor_leaf((const uint8_t *)PyBytes_AS_STRING(root), sfx, leaves + 32 * i);
        }
    }
    merkle_root_inplace(leaves, (size_t)n, out);
    PyMem_Free(leaves);
    return 0;
}

/* ---- Committer: tensor roots on a native worker thread ---------------------------------
 * The executor hands each tensor to a Committer as soon as it is computed and asks for all
 * roots at the end. One process-wide worker thread (no GIL, no Python objects) hashes queued
 * tensors while the executor computes the next steps; at roots() the calling thread hashes
 * whatever of its own is still queued, then waits for the one the worker may be on. A large
 * tensor is queued as pieces (PIECE_VALUES), so that at roots() the two threads share what
 * is left of it instead of the caller waiting for the worker to hash all of it. Results
 * do not depend on which thread hashed what. The worker spins briefly after each job (the
 * next tensor usually follows within microseconds), then sleeps on a condition variable. */

#include <pthread.h>
#include <time.h>

typedef struct job {
    struct job *next; /* queue link */
    struct Committer *owner;
    Py_buffer view;   /* a large array, read by whoever hashes it; released by roots() */
    int itemsize;     /* of view's values; 0 once released, or for a packed job */
    uint8_t *words;   /* or a small array's values, packed by add(), until hashed */
    size_t m;         /* how many words */
    int rc;           /* pack_values's, values_root's or words_root's */
    PyObject *suffix; /* bytes or NULL: the tensor's shape and scale, for its trace leaf */
    int state;        /* QUEUED, RUNNING, DONE */
    uint8_t root[32];
    uint8_t leaf[32]; /* keccak256(root || suffix), made with the root when suffix is set */
    /* A tensor of more than PIECE_VALUES values is queued as pieces, not itself: */
    struct job *pieces; /* its pieces, or NULL */
    size_t n_pieces;
    struct job *parent; /* a piece's tensor (whose view it reads), or NULL */
    size_t first;       /* a piece's first value in its tensor */
    size_t n_values;    /* a piece's value count */
} job;

enum { QUEUED, RUNNING, DONE };

typedef struct Committer {
    PyObject_HEAD
    job **jobs;
    Py_ssize_t n_jobs, cap;
    Py_ssize_t unfinished; /* jobs not DONE; changed under q_lock, with atomics */
    PyObject *roots;        /* list, once joined */
} Committer;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_work = PTHREAD_COND_INITIALIZER; /* a job was queued */
static pthread_cond_t q_done = PTHREAD_COND_INITIALIZER; /* a job finished */
static job *q_head, *q_tail;
static int q_len;           /* read without the lock while spinning */
static int worker_started, worker_sleeping;
static job *worker_job; /* the job the worker is on, for fork */

/* After a job, the worker polls the queue for SPIN_NS before it sleeps, and roots() polls
 * for the worker's last jobs the same way: the executor's next tensor usually follows within
 * microseconds, and a thread that sleeps on a condition variable on a VM takes tens of
 * microseconds to wake. It polls without PAUSE: under KVM, PAUSE loops make the vCPU exit to
 * the host. */
#define SPIN_NS 200000L
#define PACK_HERE_VALUES 4096 /* tensors of at most this many values are packed by add() */
_Static_assert(PACK_HERE_VALUES < PIECE_VALUES, "a packed tensor is never split in pieces");

static int64_t
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

static void
spin_until_queued(void)
{
    int64_t deadline = now_ns() + SPIN_NS;
    for (unsigned i = 1; !__atomic_load_n(&q_len, __ATOMIC_RELAXED); i++) {
        if (i % 64 == 0 && now_ns() > deadline) {
            return;
        }
    }
}

/* A piece's root (piece_root) from its tensor's values: a split tensor is never one that
 * add() packed (PACK_HERE_VALUES < PIECE_VALUES). */
static void
run_piece(job *j)
{
    const job *t = j->parent;
    size_t m = (j->n_values + 7) / 8;
    uint8_t *words = malloc(32 * m);
    j->rc = words == NULL ? -1
                          : pack_values((const char *)t->view.buf + j->first * (size_t)t->itemsize,
                                        t->itemsize, j->n_values, words);
    if (j->rc == 0) {
        j->rc = piece_root(words, m, j->root);
    }
    free(words);
}

/* A split tensor's root from its pieces' (all done), and its leaf. Its rc: -2 if a piece
 * found a value outside int32, else -1 if one ran out of memory. */
static void
combine_pieces(job *t)
{
    t->rc = 0;
    for (size_t i = 0; i < t->n_pieces; i++) {
        int rc = t->pieces[i].rc;
        t->rc = rc == -2 || t->rc == -2 ? -2 : (rc != 0 ? rc : t->rc);
    }
    uint8_t *buf = t->rc == 0 ? malloc(32 * (t->n_pieces + 1)) : NULL;
    if (t->rc == 0 && buf == NULL) {
        t->rc = -1;
    }
    if (buf != NULL) {
        for (size_t i = 0; i < t->n_pieces; i++) {
            memcpy(buf + 32 * i, t->pieces[i].root, 32);
        }
        merkle_root_from(buf, t->n_pieces, PIECE_LEVEL, t->root);
        free(buf);
    }
    if (t->rc == 0 && t->suffix != NULL) {
        tensor_leaf(t->root, t->suffix, t->leaf);
    }
}

static void
run_job(job *j)
{
    if (j->parent != NULL) {
        run_piece(j);
        return;
    }
    if (j->words != NULL) {
        j->rc = words_root(j->words, j->m, j->root);
        PyMem_RawFree(j->words);
        j->words = NULL;
    }
    else {
        size_t n = (size_t)(j->view.len / j->itemsize);
        j->rc = values_root(j->view.buf, j->itemsize, n, j->root);
    }
    if (j->rc == 0 && j->suffix != NULL) { /* bytes are immutable: safe without the GIL */
        tensor_leaf(j->root, j->suffix, j->leaf);
    }
}

/* Called with q_lock held. A tensor is done when its job is, or, split, when its last piece
 * is (then its root is made here: a few hashes). Whether every piece is done is read from
 * their states, not counted down, so that a piece run again after fork() is harmless. */
static void
finish_job(job *j)
{
    j->state = DONE;
    job *t = j->parent != NULL ? j->parent : j;
    if (t != j) {
        if (t->state == DONE) {
            return;
        }
        for (size_t i = 0; i < t->n_pieces; i++) {
            if (t->pieces[i].state != DONE) {
                return;
            }
        }
        combine_pieces(t);
        t->state = DONE;
    }
    __atomic_fetch_sub(&t->owner->unfinished, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&q_done);
}

static job *
pop_front(void)
{
    job *j = q_head;
    if (j != NULL) {
        q_head = j->next;
        if (q_head == NULL) {
            q_tail = NULL;
        }
        __atomic_store_n(&q_len, q_len - 1, __ATOMIC_RELAXED);
        j->state = RUNNING;
    }
    return j;
}

static void *
worker_main(void *unused)
{
    pthread_mutex_lock(&q_lock);
    for (;;) {
        job *j = pop_front();
        if (j == NULL) {
            pthread_mutex_unlock(&q_lock);
            spin_until_queued();
            pthread_mutex_lock(&q_lock);
            if (q_head == NULL) { /* woken with nothing left (the caller took it): spin again */
                worker_sleeping = 1;
                pthread_cond_wait(&q_work, &q_lock);
                worker_sleeping = 0;
            }
            continue;
        }
        worker_job = j;
        pthread_mutex_unlock(&q_lock);
        run_job(j);
        pthread_mutex_lock(&q_lock);
        worker_job = NULL;
        finish_job(j);
    }
    return NULL;
}

/* In a forked child only the forking thread exists: start a new worker on first use, and put
 * back the job the parent's worker was on so that it is still done. */
static void
after_fork_child(void)
{
    pthread_mutex_init(&q_lock, NULL);
    pthread_cond_init(&q_work, NULL);
    pthread_cond_init(&q_done, NULL);
    worker_started = 0;
    worker_sleeping = 0;
    if (worker_job != NULL) {
        worker_job->state = QUEUED;
        worker_job->next = q_head;
        q_head = worker_job;
        if (q_tail == NULL) {
            q_tail = worker_job;
        }
        q_len++;
        worker_job = NULL;
    }
}

/* Called with q_lock held; 0 if the worker runs (or already did), -1 if it could not start
 * (the caller then hashes everything itself at roots()). */
static int
ensure_worker(void)
{
    if (worker_started) {
        return 0;
    }
    pthread_attr_t attr;
    pthread_t tid;
    if (pthread_attr_init(&attr) != 0) {
        return -1;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &attr, worker_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        return -1;
    }
    worker_started = 1;
    return 0;
}

/* add() and hash(): a new job for arg (with its leaf if a suffix is given); with here,
 * hashed now on the calling thread. */
static PyObject *
add_job(Committer *self, PyObject *const *args, Py_ssize_t nargs, int here)
{
    PyObject *arg = nargs >= 1 ? args[0] : NULL, *suffix = nargs == 2 ? args[1] : Py_None;
    if (arg == NULL || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "expected (array) or (array, suffix: bytes)");
        return NULL;
    }
    if (suffix != Py_None && (!PyBytes_Check(suffix) || PyBytes_GET_SIZE(suffix) > MAX_SUFFIX)) {
        PyErr_Format(PyExc_ValueError, "a suffix is bytes of at most %d bytes", MAX_SUFFIX);
        return NULL;
    }
    if (self->roots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "roots() was already called on this Committer");
        return NULL;
    }
    if (self->n_jobs == self->cap) {
        Py_ssize_t cap = self->cap ? 2 * self->cap : 16;
        job **grown = PyMem_Realloc(self->jobs, (size_t)cap * sizeof(job *));
        if (grown == NULL) {
            return PyErr_NoMemory();
        }
        self->jobs = grown;
        self->cap = cap;
    }
    job *j = PyMem_RawCalloc(1, sizeof(job));
    if (j == NULL) {
        return PyErr_NoMemory();
    }
    j->itemsize = get_values(arg, &j->view);
    if (j->itemsize < 0) {
        PyMem_RawFree(j);
        return NULL;
    }
    j->owner = self;
    j->suffix = suffix == Py_None ? NULL : Py_NewRef(suffix);
    self->jobs[self->n_jobs++] = j;
    size_t n = (size_t)(j->view.len / j->itemsize);
    /* A small tensor is packed here, on the caller's thread, so that the worker never reads
     * the caller's array: with the digits MLP, the worker reading the arrays the executor was
     * still working with slowed the executor's next steps by a third. A large one is packed
     * by whoever hashes it (packing it here would cost the caller more than that). */
    if (n <= PACK_HERE_VALUES || here) {
        uint8_t *words = PyMem_RawMalloc(32 * ((n + 7) / 8));
        j->rc = words == NULL ? -1 : pack_values(j->view.buf, j->itemsize, n, words);
        PyBuffer_Release(&j->view);
        j->itemsize = 0;
        j->words = words;
        j->m = (n + 7) / 8;
        if (j->rc != 0 || here) { /* an error is raised by roots() */
            if (j->rc == 0) {
                Py_BEGIN_ALLOW_THREADS
                run_job(j);
                Py_END_ALLOW_THREADS
            }
            PyMem_RawFree(j->words);
            j->words = NULL;
            j->state = DONE;
            return PyLong_FromSsize_t(self->n_jobs - 1);
        }
    }
    /* queued whole, or as pieces that the worker and roots() can share (if they fit) */
    job *first = j, *last = j;
    size_t queued = 1, n_pieces = (n + PIECE_VALUES - 1) / PIECE_VALUES;
    j->state = QUEUED;
    if (n_pieces > 1 && (j->pieces = PyMem_RawCalloc(n_pieces, sizeof(job))) != NULL) {
        j->n_pieces = queued = n_pieces;
        j->state = RUNNING; /* never in the queue itself */
        for (size_t i = 0; i < n_pieces; i++) {
            job *piece = &j->pieces[i];
            piece->owner = self;
            piece->parent = j;
            piece->first = i * PIECE_VALUES;
            piece->n_values = n - piece->first < PIECE_VALUES ? n - piece->first : PIECE_VALUES;
            piece->state = QUEUED;
            piece->next = i + 1 < n_pieces ? &j->pieces[i + 1] : NULL;
        }
        first = &j->pieces[0];
        last = &j->pieces[n_pieces - 1];
    }
    pthread_mutex_lock(&q_lock);
    __atomic_fetch_add(&self->unfinished, 1, __ATOMIC_RELAXED);
    if (q_tail != NULL) {
        q_tail->next = first;
    }
    else {
        q_head = first;
    }
    q_tail = last;
    __atomic_store_n(&q_len, q_len + (int)queued, __ATOMIC_RELAXED);
    ensure_worker();
    if (worker_sleeping) {
        pthread_cond_signal(&q_work);
    }
    pthread_mutex_unlock(&q_lock);
    return PyLong_FromSsize_t(self->n_jobs - 1);
}

static PyObject *
Committer_add(Committer *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_job(self, args, nargs, 0);
}

/* For the executor's last tensor: queued, the worker would take it just as the caller starts
 * to wait, and the caller would wait for the handover as well as the hashing. */
static PyObject *
Committer_hash(Committer *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_job(self, args, nargs, 1);
}

/* Hash this committer's queued jobs on the calling thread, then wait for the rest. Called
 * without the GIL. */
static void
join_jobs(Committer *self)
{
    if (__atomic_load_n(&self->unfinished, __ATOMIC_ACQUIRE) == 0) {
        return; /* all done (what the worker wrote is visible): no trip through the lock */
    }
    pthread_mutex_lock(&q_lock);
    while (self->unfinished > 0) {
        job *mine = NULL, *prev = NULL;
        for (job *j = q_head; j != NULL; prev = j, j = j->next) {
            if (j->owner == self) {
                mine = j;
                break;
            }
        }
        if (mine == NULL) { /* ours are all running: poll briefly, as the worker does */
            pthread_mutex_unlock(&q_lock);
            int64_t deadline = now_ns() + SPIN_NS;
            while (__atomic_load_n(&self->unfinished, __ATOMIC_ACQUIRE) > 0 &&
                   now_ns() < deadline) {
            }
            pthread_mutex_lock(&q_lock);
            if (self->unfinished > 0) {
                pthread_cond_wait(&q_done, &q_lock);
            }
            continue;
        }
        if (prev != NULL) {
            prev->next = mine->next;
        }
        else {
            q_head = mine->next;
        }
        if (q_tail == mine) {
            q_tail = prev;
        }
        __atomic_store_n(&q_len, q_len - 1, __ATOMIC_RELAXED);
        mine->state = RUNNING;
        pthread_mutex_unlock(&q_lock);
        run_job(mine);
        pthread_mutex_lock(&q_lock);
        finish_job(mine);
    }
    pthread_mutex_unlock(&q_lock);
}

static PyObject *
Committer_roots(Committer *self, PyObject *unused)
{
    if (self->roots != NULL) {
        return Py_NewRef(self->roots);
    }
    Py_BEGIN_ALLOW_THREADS
    join_jobs(self);
    Py_END_ALLOW_THREADS
    PyObject *roots = PyList_New(self->n_jobs);
    if (roots == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n_jobs; i++) {
        job *j = self->jobs[i];
        if (j->itemsize) {
            PyBuffer_Release(&j->view); /* the array may change from now on */
            j->itemsize = 0;
        }
        PyObject *root = j->rc == 0 ? PyBytes_FromStringAndSize((const char *)j->root, 32)
                                    : root_result(j->rc, j->root);
        if (root == NULL) {
            Py_DECREF(roots);
            return NULL; /* buffers released; roots() raises again (ValueError) if re-called */
        }
        PyList_SET_ITEM(roots, i, root);
    }
    self->roots = roots;
    return Py_NewRef(roots);
}

/* trace(order, suffixes) -> (roots, trace_root): roots()[order[i]] for each i, and the trace
 * root over them with their suffixes; one call at the end of a traced run. */
static PyObject *
Committer_trace(Committer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "trace(order: list[int], suffixes: tuple[bytes])");
        return NULL;
    }
    PyObject *all = Committer_roots(self, NULL);
    if (all == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(args[0]);
    PyObject *roots = PyList_New(n);
    const uint8_t **known = PyMem_Calloc((size_t)n + 1, sizeof(uint8_t *));
    if (roots == NULL || known == NULL) {
        Py_XDECREF(roots);
        PyMem_Free(known);
        Py_DECREF(all);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t j = PyLong_AsSsize_t(PyList_GET_ITEM(args[0], i));
        if (j < 0 || j >= PyList_GET_SIZE(all)) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_IndexError, "no tensor %zd in this Committer", j);
            }
            Py_DECREF(roots);
            Py_DECREF(all);
            PyMem_Free(known);
            return NULL;
        }
        PyList_SET_ITEM(roots, i, Py_NewRef(PyList_GET_ITEM(all, j)));
        /* the leaf the job made, if made with this position's suffix (a reshape shares its
         * input's root under another shape) */
        job *done = self->jobs[j];
        PyObject *sfx = PyTuple_Check(args[1]) && i < PyTuple_GET_SIZE(args[1])
                            ? PyTuple_GET_ITEM(args[1], i) : NULL;
        if (done->suffix != NULL && sfx != NULL &&
            (done->suffix == sfx || (PyBytes_Check(sfx) &&
                                     PyBytes_GET_SIZE(sfx) == PyBytes_GET_SIZE(done->suffix) &&
                                     memcmp(PyBytes_AS_STRING(sfx),
                                            PyBytes_AS_STRING(done->suffix),
                                            (size_t)PyBytes_GET_SIZE(sfx)) == 0))) {
            known[i] = done->leaf;
        }
    }
    Py_DECREF(all);
    uint8_t out[32];
    int rc = trace_root_of(roots, args[1], known, out);
    PyMem_Free(known);
    if (rc < 0) {
        Py_DECREF(roots);
        return NULL;
    }
    return Py_BuildValue("(Ny#)", roots, (const char *)out, (Py_ssize_t)32);
}

static void
Committer_dealloc(Committer *self)
{
    if (self->n_jobs > 0) {
        Py_BEGIN_ALLOW_THREADS
        join_jobs(self);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < self->n_jobs; i++) {
        if (self->jobs[i]->itemsize) {
            PyBuffer_Release(&self->jobs[i]->view);
        }
        PyMem_RawFree(self->jobs[i]->words); /* NULL once hashed */
        PyMem_RawFree(self->jobs[i]->pieces);
        Py_XDECREF(self->jobs[i]->suffix);
        PyMem_RawFree(self->jobs[i]);
    }
    PyMem_Free(self->jobs);
    Py_XDECREF(self->roots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Committer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Committer_add, METH_FASTCALL,
     "add(array, suffix=None) -> index: queue an int32/int64 array's tensor root (and its "
     "tensor leaf with that suffix). Do not modify the array until roots() returns."},
    {"hash", (PyCFunction)(void (*)(void))Committer_hash, METH_FASTCALL,
     "hash(array, suffix=None) -> index: as add(), computed now on the calling thread."},
    {"trace", (PyCFunction)(void (*)(void))Committer_trace, METH_FASTCALL,
     "trace(order, suffixes) -> (roots in that order, their trace root)."},
    {"roots", (PyCFunction)Committer_roots, METH_NOARGS,
     "roots() -> list of the tensor roots of the added arrays, in order (waits for them)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CommitterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "verinfer.runtime._keccak.Committer",
    .tp_basicsize = sizeof(Committer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Committer_dealloc,
    .tp_methods = Committer_methods,
    .tp_doc = "Tensor roots computed on a worker thread while the caller goes on.",
};

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

/* ---- a whole trace at once, on the calling thread ----------------------------------------
 * For a run whose tensors are all small, handing each to the worker costs more than hashing
 * it, and one tensor's few messages leave most SIMD lanes empty. trace_batched hashes every
 * tensor of the run together instead: messages of equal length from all tensors share the
 * lanes (the full 512-byte chunks; the one-chunk tensors and last partial chunks, by length;
 * each tree level across tensors; the tensor leaves, by length). Same roots as the Committer. */

/* keccak256 of n messages of len < RATE_BYTES bytes each, stored back to back: each is padded
 * into one block and the blocks go through the lanes of the variant many_for would pick, or
 * through the scalar sponge. */
static void
hash_short(const uint8_t *msgs, size_t len, uint8_t *out, size_t n)
{
    const int impl = n > 1 ? impl_for(n) : 0; /* one message: the scalar sponge is faster */
    const size_t lanes = IMPLS[impl].lanes;
    if (IMPLS[impl].padded == NULL) {
        many_scalar(msgs, len, out, n);
        return;
    }
    uint8_t blocks[RATE_BYTES * 8], digests[32 * 8];
    for (size_t i = 0; i < n; i += lanes) {
        size_t k = n - i < lanes ? n - i : lanes;
        memset(blocks, 0, RATE_BYTES * lanes);
        for (size_t j = 0; j < k; j++) {
            uint8_t *b = blocks + RATE_BYTES * j;
            memcpy(b, msgs + len * (i + j), len);
            b[len] ^= 0x01;
            b[RATE_BYTES - 1] ^= 0x80;
        }
        IMPLS[impl].padded(blocks, digests);
        memcpy(out + 32 * i, digests, 32 * k);
    }
}

/* Equal-length messages gathered from scattered places, hashed together, digests scattered. */
typedef struct {
    const uint8_t *src;
    uint8_t *dst;
} msg_ref;

/* Hashes the n messages of len bytes at refs[i].src into refs[i].dst; tmp holds n * (len +
 * 32) bytes. */
static void
hash_gathered(const msg_ref *refs, size_t n, size_t len, uint8_t *tmp)
{
    if (n == 0) {
        return;
    }
    uint8_t *digests = tmp + len * n;
    for (size_t i = 0; i < n; i++) {
        memcpy(tmp + len * i, refs[i].src, len);
    }
    if (len % 8 == 0) { /* what the lanes of many_for take */
        many_for(n)(tmp, len, digests, n);
    }
    else if (len < RATE_BYTES) {
        hash_short(tmp, len, digests, n);
    }
    else {
        many_scalar(tmp, len, digests, n);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(refs[i].dst, digests + 32 * i, 32);
    }
}

typedef struct {
    Py_buffer view;
    int itemsize;  /* 0 once released */
    size_t m;      /* packed words */
    size_t chunks; /* n_chunks(m) */
    size_t words;  /* offset of its words in the shared buffer, in words */
    size_t nodes;  /* offset of its tree nodes (chunks + 1 of them), in nodes */
    uint8_t root[32];
} batched_tensor;

/* The roots of the tensors (arrays all packed), each tree level of all tensors as one batch.
 * Returns 0 or -1 (out of memory). */
static int
batched_roots(batched_tensor *t, size_t n, const uint8_t *words, uint8_t *nodes)
{
    size_t n_refs = 0, tmp_len = 0, full = 0;
    for (size_t i = 0; i < n; i++) {
        n_refs += t[i].chunks + 1;
        tmp_len += 32 * t[i].m + 64 * t[i].chunks;
    }
    msg_ref *refs = malloc(sizeof(msg_ref) * n_refs);
    uint8_t *tmp = malloc(tmp_len + 64 * n + 64);
    if (refs == NULL || tmp == NULL) {
        free(refs);
        free(tmp);
        return -1;
    }
    /* every full chunk, all together (a one-chunk tensor's is its root) */
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < (32 * t[i].m) / CHUNK_BYTES; c++) {
            refs[full].src = words + 32 * t[i].words + CHUNK_BYTES * c;
            refs[full++].dst = t[i].chunks == 1 ? t[i].root : nodes + 32 * (t[i].nodes + c);
        }
    }
    hash_gathered(refs, full, CHUNK_BYTES, tmp);
    /* shorter one-chunk tensors and last partial chunks, by length (32 to 480 bytes) */
    for (size_t len = 32; len < CHUNK_BYTES; len += 32) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t rest = (32 * t[i].m) % CHUNK_BYTES;
            if (t[i].chunks == 1 && 32 * t[i].m == len) {
                refs[k].src = words + 32 * t[i].words;
                refs[k++].dst = t[i].root;
            }
            else if (t[i].chunks > 1 && rest == len) {
                refs[k].src = words + 32 * t[i].words + 32 * t[i].m - rest;
                refs[k++].dst = nodes + 32 * (t[i].nodes + t[i].chunks - 1);
            }
        }
        hash_gathered(refs, k, len, tmp);
    }
    /* tree levels: every tensor's pairs of one level in one batch */
    size_t *count = malloc(sizeof(size_t) * n);
    if (count == NULL) {
        free(refs);
        free(tmp);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        count[i] = t[i].chunks;
    }
    for (int level = 0;; level++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (count[i] < 2) {
                continue;
            }
            uint8_t *level_nodes = nodes + 32 * t[i].nodes;
            if (count[i] & 1) {
                memcpy(level_nodes + 32 * count[i], ZERO_HASHES[level], 32);
                count[i]++;
            }
            for (size_t p = 0; p < count[i] / 2; p++) {
                refs[k].src = level_nodes + 64 * p;
                refs[k++].dst = level_nodes + 32 * p; /* hash_gathered copies sources first */
            }
            count[i] /= 2;
        }
        if (k == 0) {
            break;
        }
        hash_gathered(refs, k, 64, tmp);
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].chunks > 1) {
            memcpy(t[i].root, nodes + 32 * t[i].nodes, 32);
        }
    }
    free(count);
    free(refs);
    free(tmp);
    return 0;
}

/* The tensor leaves keccak256(root_i || suffix_i) by message length, then their tree. */
static int
batched_trace_root(const uint8_t *const *roots, PyObject *suffixes, size_t n, uint8_t out[32])
{
    size_t most = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 32 + (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(suffixes, i));
        most = len > most ? len : most;
    }
    uint8_t *leaves = malloc(32 * (n + 1)), *msgs = malloc(most * n);
    uint8_t *tmp = malloc((most + 32) * n);
    msg_ref *refs = malloc(sizeof(msg_ref) * n);
    char *done = calloc(n, 1);
    int rc = leaves && msgs && tmp && refs && done ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        PyObject *sfx = PyTuple_GET_ITEM(suffixes, i);
        memcpy(msgs + most * i, roots[i], 32);
        memcpy(msgs + most * i + 32, PyBytes_AS_STRING(sfx), (size_t)PyBytes_GET_SIZE(sfx));
    }
    for (size_t i = 0; rc == 0 && i < n; i++) { /* each length not done yet, all at once */
        if (done[i]) {
            continue;
        }
        size_t len = 32 + (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(suffixes, i)), k = 0;
        for (size_t j = i; j < n; j++) {
            if (!done[j] && 32 + (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(suffixes, j)) == len) {
                refs[k].src = msgs + most * j;
                refs[k++].dst = leaves + 32 * j;
                done[j] = 1;
            }
        }
        hash_gathered(refs, k, len, tmp);
    }
    if (rc == 0) {
        merkle_root_inplace(leaves, n, out);
    }
    free(leaves);
    free(msgs);
    free(tmp);
    free(refs);
    free(done);
    return rc;
}

/* trace_batched(arrays, order, suffixes) -> (roots, trace_root): as Committer.trace after
 * add(arrays[j]) for each j: roots()[order[i]] per trace position i, and the trace root over
 * them with suffixes[i]. */
static PyObject *
py_trace_batched(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "trace_batched(arrays: list, order: list[int], suffixes: tuple[bytes])");
        return NULL;
    }
    PyObject *arrays = args[0], *order = args[1], *suffixes = args[2];
    Py_ssize_t n = PyList_GET_SIZE(arrays), n_pos = PyList_GET_SIZE(order);
    if (n_pos == 0 || PyTuple_GET_SIZE(suffixes) != n_pos) {
        PyErr_Format(PyExc_ValueError, "a trace root needs as many suffixes as positions (>= 1),"
                     " got %zd positions and %zd suffixes", n_pos, PyTuple_GET_SIZE(suffixes));
        return NULL;
    }
    Py_ssize_t *jobs = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)n_pos);
    batched_tensor *t = PyMem_Calloc((size_t)n + 1, sizeof(batched_tensor));
    PyObject *result = NULL;
    uint8_t *words = NULL, *nodes = NULL;
    const uint8_t **roots = NULL;
    Py_ssize_t got = 0; /* tensors whose buffers are held */
    if (jobs == NULL || t == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_pos; i++) {
        PyObject *sfx = PyTuple_GET_ITEM(suffixes, i);
        jobs[i] = PyLong_AsSsize_t(PyList_GET_ITEM(order, i));
        if (jobs[i] == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (jobs[i] < 0 || jobs[i] >= n) {
            PyErr_Format(PyExc_IndexError, "no tensor %zd among %zd", jobs[i], n);
            goto done;
        }
        if (!PyBytes_Check(sfx) || PyBytes_GET_SIZE(sfx) > MAX_SUFFIX) {
            PyErr_Format(PyExc_ValueError, "a suffix is bytes of at most %d bytes", MAX_SUFFIX);
            goto done;
        }
    }
    size_t total_words = 0, total_nodes = 0;
    for (; got < n; got++) {
        batched_tensor *ti = &t[got];
        ti->itemsize = get_values(PyList_GET_ITEM(arrays, got), &ti->view);
        if (ti->itemsize < 0) {
            ti->itemsize = 0;
            goto done;
        }
        ti->m = ((size_t)(ti->view.len / ti->itemsize) + 7) / 8;
        ti->chunks = n_chunks(ti->m);
        ti->words = total_words;
        ti->nodes = total_nodes;
        total_words += ti->m;
        total_nodes += ti->chunks + 1;
    }
    words = malloc(32 * total_words);
    nodes = malloc(32 * total_nodes);
    roots = PyMem_Malloc(sizeof(uint8_t *) * (size_t)n_pos);
    if (words == NULL || nodes == NULL || roots == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = pack_values(t[i].view.buf, t[i].itemsize,
                            (size_t)(t[i].view.len / t[i].itemsize), words + 32 * t[i].words);
        rc = r != 0 ? r : rc;
    }
    if (rc == 0) {
        rc = batched_roots(t, (size_t)n, words, nodes);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        root_result(rc, NULL);
        goto done;
    }
    PyObject *list = PyList_New(n_pos);
    if (list == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_pos; i++) {
        roots[i] = t[jobs[i]].root;
        PyObject *root = PyBytes_FromStringAndSize((const char *)roots[i], 32);
        if (root == NULL) {
            Py_DECREF(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, root);
    }
    uint8_t trace_root[32];
    if (batched_trace_root(roots, suffixes, (size_t)n_pos, trace_root) < 0) {
        Py_DECREF(list);
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(Ny#)", list, (const char *)trace_root, (Py_ssize_t)32);
done:
    for (Py_ssize_t i = 0; t != NULL && i < got; i++) {
        PyBuffer_Release(&t[i].view);
    }
    free(words);
    free(nodes);
    PyMem_Free(roots);
    PyMem_Free(jobs);
    PyMem_Free(t);
    return result;
}

static PyMethodDef methods[] = {
    {"keccak256", py_keccak256, METH_O, "keccak256(data) -> 32-byte digest (Ethereum's)."},
    {"hash_pairs", py_hash_pairs, METH_O,
     "hash_pairs(buf) -> keccak256 of each consecutive 64-byte chunk, concatenated."},
    {"merkle_root", py_merkle_root, METH_O,
     "merkle_root(words) -> root of the zero-subtree-padded keccak tree over 32-byte words."},
    {"chunk_leaves", py_chunk_leaves, METH_O,
     "chunk_leaves(words) -> keccak256 of each 16-word chunk of packed words, concatenated."},
    {"words_root", py_words_root, METH_O, "words_root(words) -> tensor root of packed words."},
    {"values_root", py_values_root, METH_O,
     "values_root(array) -> tensor root of an int32/int64 array (packed in C order)."},
    {"trace_batched", (PyCFunction)(void (*)(void))py_trace_batched, METH_FASTCALL,
     "trace_batched(arrays, order, suffixes) -> (roots in that order, their trace root): "
     "as a Committer would, all on this thread."},
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
        keccak256_bytes(pair, 64, ZERO_HASHES[k + 1]);
    }
    if (PyType_Ready(&CommitterType) < 0) {
        return NULL;
    }
    pthread_atfork(NULL, NULL, after_fork_child);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Committer", (PyObject *)&CommitterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
