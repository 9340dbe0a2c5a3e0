#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

unsigned char *tu_image(const char *header, size_t hlen, uint64_t n_override, const void *data, size_t dlen,
                        size_t *out_len)
{
    unsigned char *b = calloc(1, 8 + hlen + dlen + 1);
    assert_non_null(b);
    uint64_t n = n_override ? n_override : hlen;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (data)
        memcpy(b + 8 + hlen, data, dlen);
    *out_len = 8 + hlen + dlen;
    return b;
}

unsigned char *tu_image_padded(const char *header, const void *data, size_t dlen, size_t *out_len)
{
    size_t h = strlen(header), p = (h + 7) / 8 * 8;
    char *tmp = malloc(p + 1);
    assert_non_null(tmp);
    memcpy(tmp, header, h);
    memset(tmp + h, ' ', p - h);
    unsigned char *img = tu_image(tmp, p, 0, data, dlen, out_len);
    free(tmp);
    return img;
}

uint32_t tu_xorshift(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

void tu_mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", buf, strerror(errno));
}

void tu_rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

void tu_write(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    if (n)
        assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

char *tu_path(const char *dir, const char *name)
{
    static char ring[8][4096];
    static int k;
    char *p = ring[k++ & 7];
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

struct tu_alloc tu_counter = {-1, 0, 0, 0};

void tu_counter_reset(long fail_at)
{
    tu_counter.fail_at = fail_at;
    tu_counter.calls = 0;
    tu_counter.live = 0;
    tu_counter.failed = 0;
}

static void *count_alloc(void *opaque, size_t size)
{
    struct tu_alloc *c = opaque;
    if (c->fail_at >= 0 && c->calls++ == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    void *p = malloc(size);
    if (p)
        c->live++;
    return p;
}

static void count_free(void *opaque, void *p)
{
    struct tu_alloc *c = opaque;
    if (p)
        c->live--;
    free(p);
}

const struct qtl_allocator tu_allocator = {count_alloc, count_free, &tu_counter};

static void *json_alloc(size_t n) { return count_alloc(&tu_counter, n); }
static void json_free(void *p) { count_free(&tu_counter, p); }

void tu_json_hooks(int on)
{
    if (on)
        json_set_alloc_funcs(json_alloc, json_free);
    else
        json_set_alloc_funcs(malloc, free);
}

int tu_vllm_refuses(const char *scheme) { return !strcmp(scheme, "ct-w4a16-actorder"); }

void tu_expect_same_params(const qtl_load_t *a, const qtl_load_t *b, const char *skip_bytes, const char *what)
{
    if (qtl_load_param_count(a) != qtl_load_param_count(b))
        fail_msg("%s: %zu parameters vs %zu", what, qtl_load_param_count(a), qtl_load_param_count(b));
    for (size_t i = 0; i < qtl_load_param_count(a); i++) {
        struct qtl_param_info pa, pb;
        qtl_load_param_at(a, i, &pa);
        qtl_load_param_at(b, i, &pb);
        if (strcmp(pa.name, pb.name) || pa.dtype != pb.dtype || pa.nbytes != pb.nbytes || pa.ndim != pb.ndim)
            fail_msg("%s: parameter %zu: %s %s %llu bytes vs %s %s %llu bytes", what, i, pa.name,
                     qtl_dtype_name(pa.dtype), (unsigned long long)pa.nbytes, pb.name, qtl_dtype_name(pb.dtype),
                     (unsigned long long)pb.nbytes);
        for (uint32_t d = 0; d < pa.ndim; d++)
            if (pa.shape[d] != pb.shape[d])
                fail_msg("%s: %s: dim %u is %llu vs %llu", what, pa.name, d, (unsigned long long)pa.shape[d],
                         (unsigned long long)pb.shape[d]);
        if (skip_bytes && strstr(pa.name, skip_bytes))
            continue;
        if (pa.nbytes && memcmp(pa.data, pb.data, (size_t)pa.nbytes) != 0)
            fail_msg("%s: %s differs", what, pa.name);
    }
}
