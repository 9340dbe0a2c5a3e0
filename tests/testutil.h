/* Helpers shared by the cmocka tests. */
#ifndef QTL_TESTUTIL_H
#define QTL_TESTUTIL_H

#include "qtl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

/* Expect status `want` from `got`, printing the message on mismatch. */
#define TU_EXPECT(got, want, msg)                                                                          \
    do {                                                                                                   \
        int g_ = (got), w_ = (want);                                                                       \
        if (g_ != w_)                                                                                      \
            fail_msg("%s:%d: got %s (%d), want %s (%d): %s", __FILE__, __LINE__, qtl_errname(g_), g_,      \
                     qtl_errname(w_), w_, (msg));                                                          \
    } while (0)

#endif
