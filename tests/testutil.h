/* Helpers shared by the cmocka tests. */
#ifndef QTL_TESTUTIL_H
#define QTL_TESTUTIL_H

#include "qtl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* A safetensors image: u64 LE N (or `n_override` when nonzero), the header
 * bytes, then `dlen` data bytes (zeros when data is NULL). Free with free(). */
unsigned char *tu_image(const char *header, size_t hlen, uint64_t n_override, const void *data, size_t dlen,
                        size_t *out_len);
/* Same with the header padded by spaces to a multiple of 8. */
unsigned char *tu_image_padded(const char *header, const void *data, size_t dlen, size_t *out_len);

/* xorshift32: deterministic test inputs. */
uint32_t tu_xorshift(uint32_t *state);

void tu_mkdir_p(const char *path);
/* Fixture schemes vLLM 0.32 refuses to load (CT actorder=group, "no longer supported"):
 * qtl refuses them too (config.unsupported); loops over loadable schemes skip them. */
int tu_vllm_refuses(const char *scheme);
void tu_rm_rf(const char *path);
void tu_write(const char *path, const void *buf, size_t n);
char *tu_path(const char *dir, const char *name); /* static buffer ring of 8 */

/* Counting allocator that fails the Nth allocation (fail_at = N, -1 never). */
struct tu_alloc {
    long fail_at;
    long calls;
    long live;
    int failed;
};
extern struct tu_alloc tu_counter;
extern const struct qtl_allocator tu_allocator; /* uses tu_counter */
void tu_counter_reset(long fail_at);
/* Route jansson's global hooks to the same counter (or back to malloc). */
void tu_json_hooks(int on);

/* Two loads hold the same parameters in the same order: names, dtypes, shapes, bytes
 * (parameters whose name contains `skip_bytes`, if not NULL, compare all but the bytes). */
void tu_expect_same_params(const qtl_load_t *a, const qtl_load_t *b, const char *skip_bytes, const char *what);

/* Expect status `want` from `got`, printing the message on mismatch. */
#define TU_EXPECT(got, want, msg)                                                                          \
    do {                                                                                                   \
        int g_ = (got), w_ = (want);                                                                       \
        if (g_ != w_)                                                                                      \
            fail_msg("%s:%d: got %s (%d), want %s (%d): %s", __FILE__, __LINE__, qtl_errname(g_), g_,      \
                     qtl_errname(w_), w_, (msg));                                                          \
    } while (0)

/* Typed equality asserts that print both sides (cmocka's assert_int_equal prints them as
 * unsigned long; these name the expression and show u64 / float bits / float values). */
#define TU_EQ_U64(got, want)                                                                               \
    do {                                                                                                   \
        uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);                                              \
        if (g_ != w_)                                                                                      \
            fail_msg("%s:%d: %s = %llu (0x%llx), want %s = %llu (0x%llx)", __FILE__, __LINE__, #got,        \
                     (unsigned long long)g_, (unsigned long long)g_, #want, (unsigned long long)w_,        \
                     (unsigned long long)w_);                                                              \
    } while (0)
/* Bit-exact float equality (NaN payloads and -0 included). */
#define TU_EQ_F32_BITS(got, want)                                                                          \
    do {                                                                                                   \
        float gf_ = (got), wf_ = (want);                                                                   \
        uint32_t g_, w_;                                                                                   \
        memcpy(&g_, &gf_, 4);                                                                              \
        memcpy(&w_, &wf_, 4);                                                                              \
        if (g_ != w_)                                                                                      \
            fail_msg("%s:%d: %s = %.9g (bits 0x%08x), want %s = %.9g (bits 0x%08x)", __FILE__, __LINE__,  \
                     #got, (double)gf_, (unsigned)g_, #want, (double)wf_, (unsigned)w_);                   \
    } while (0)
/* Byte equality of n bytes, printing the first differing offset and both bytes. */
#define TU_EQ_MEM(got, want, n)                                                                            \
    do {                                                                                                   \
        const unsigned char *g_ = (const unsigned char *)(got), *w_ = (const unsigned char *)(want);       \
        size_t n_ = (n);                                                                                   \
        for (size_t i_ = 0; i_ < n_; i_++)                                                                 \
            if (g_[i_] != w_[i_]) {                                                                        \
                fail_msg("%s:%d: %s and %s differ at byte %zu of %zu: 0x%02x vs 0x%02x", __FILE__,         \
                         __LINE__, #got, #want, i_, n_, g_[i_], w_[i_]);                                   \
                break;                                                                                     \
            }                                                                                              \
    } while (0)

#endif
