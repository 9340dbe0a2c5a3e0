/* String → index hash map (open addressing, FNV-1a). Keys live with the caller. */
#include "internal.h"

#include <string.h>

/* Word-at-a-time multiply-xorshift hash (names are long and alike: FNV's
 * byte loop showed up in header-parse profiles). */
uint32_t qtl__hmap_hash(const char *key, size_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t t = 0;
    for (size_t k = 0; i + k < len; k++)
        t |= (uint64_t)(unsigned char)key[i + k] << (8 * k);
    h = (h ^ t) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
}

int qtl__hmap_init(struct qtl_hmap *m, const struct qtl_alloc *al, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 1) {
        if (cap > SIZE_MAX / 4 / sizeof(uint32_t))
            return QTL_ERR_NOMEM;
        cap *= 2;
    }
    m->slots = qtl__calloc(al, cap, sizeof *m->slots);
    if (!m->slots)
        return QTL_ERR_NOMEM;
    m->cap = cap;
    m->count = 0;
    return 0;
}

void qtl__hmap_free(struct qtl_hmap *m, const struct qtl_alloc *al)
{
    qtl__free(al, m->slots);
    memset(m, 0, sizeof *m);
}

static int key_equal(uint32_t v, const char *key, size_t len, qtl_hmap_key_fn keyfn, const void *ctx)
{
    const char *k;
    size_t kl;
    keyfn(ctx, v, &k, &kl);
    return kl == len && memcmp(k, key, len) == 0;
}

/* Slot where `key` lives, or the empty slot where it would go. */
static size_t probe(const struct qtl_hmap *m, const char *key, size_t len, uint32_t h, qtl_hmap_key_fn keyfn,
                    const void *ctx)
{
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i].value) {
        if (m->slots[i].hash == h && key_equal(m->slots[i].value - 1, key, len, keyfn, ctx))
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int rehash(struct qtl_hmap *m, const struct qtl_alloc *al)
{
    struct qtl_hmap n;
    if (m->cap > SIZE_MAX / 2 || qtl__hmap_init(&n, al, m->cap) != 0)
        return QTL_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].value)
            continue;
        size_t j = m->slots[i].hash & (n.cap - 1);
        while (n.slots[j].value)
            j = (j + 1) & (n.cap - 1);
        n.slots[j] = m->slots[i];
    }
    n.count = m->count;
    qtl__hmap_free(m, al);
    *m = n;
    return 0;
}

void qtl__hmap_prefetch(const struct qtl_hmap *m, uint32_t h)
{
    if (m->cap)
        __builtin_prefetch(&m->slots[h & (m->cap - 1)], 1);
}

int qtl__hmap_insert(struct qtl_hmap *m, const struct qtl_alloc *al, const char *key, size_t len, uint32_t v,
                     qtl_hmap_key_fn keyfn, const void *ctx, uint32_t *existing)
{
    return qtl__hmap_insert_h(m, al, key, len, qtl__hmap_hash(key, len), v, keyfn, ctx, existing);
}

int qtl__hmap_insert_h(struct qtl_hmap *m, const struct qtl_alloc *al, const char *key, size_t len, uint32_t h,
                       uint32_t v, qtl_hmap_key_fn keyfn, const void *ctx, uint32_t *existing)
{
    if ((m->count + 1) * 2 > m->cap && rehash(m, al) != 0)
        return QTL_ERR_NOMEM;
    size_t i = probe(m, key, len, h, keyfn, ctx);
    if (m->slots[i].value) {
        if (existing)
            *existing = m->slots[i].value - 1;
        return 1;
    }
    m->slots[i].value = v + 1;
    m->slots[i].hash = h;
    m->count++;
    return 0;
}

int qtl__hmap_find(const struct qtl_hmap *m, const char *key, size_t len, qtl_hmap_key_fn keyfn,
                   const void *ctx, uint32_t *v)
{
    if (!m->cap)
        return 0;
    size_t i = probe(m, key, len, qtl__hmap_hash(key, len), keyfn, ctx);
    if (!m->slots[i].value)
        return 0;
    *v = m->slots[i].value - 1;
    return 1;
}
