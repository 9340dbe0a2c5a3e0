/* Allocator hooks: every allocation of a handle goes through its allocator. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>

static void *default_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return malloc(size);
}

static void default_free(void *opaque, void *p)
{
    (void)opaque;
    free(p);
}

void qtl__alloc_init(struct qtl_alloc *al, const struct qtl_allocator *user)
{
    if (user && user->alloc && user->free) {
        al->a = *user;
    } else {
        al->a.alloc = default_alloc;
        al->a.free = default_free;
        al->a.opaque = NULL;
    }
}

void *qtl__malloc(const struct qtl_alloc *al, size_t size)
{
    return al->a.alloc(al->a.opaque, size ? size : 1);
}

void *qtl__calloc(const struct qtl_alloc *al, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    void *p = qtl__malloc(al, bytes);
    if (p)
        memset(p, 0, bytes ? bytes : 1);
    return p;
}

void qtl__free(const struct qtl_alloc *al, void *p)
{
    if (p)
        al->a.free(al->a.opaque, p);
}

char *qtl__strndup(const struct qtl_alloc *al, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = qtl__malloc(al, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *qtl__strdup(const struct qtl_alloc *al, const char *s) { return qtl__strndup(al, s, strlen(s)); }

int qtl__grow(const struct qtl_alloc *al, void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return QTL_ERR_NOMEM;
        ncap *= 2;
    }
    if (elem && ncap > SIZE_MAX / elem)
        return QTL_ERR_NOMEM;
    void *np = qtl__malloc(al, ncap * elem);
    if (!np)
        return QTL_ERR_NOMEM;
    if (*p && *cap)
        memcpy(np, *p, *cap * elem);
    qtl__free(al, *p);
    *p = np;
    *cap = ncap;
    return 0;
}

char *qtl__asprintf(const struct qtl_alloc *al, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = qtl__malloc(al, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

const char *qtl__basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int qtl__ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int qtl__mkdirs(const char *path, int parent_only)
{
    char d[4096];
    if (snprintf(d, sizeof d, "%s", path) >= (int)sizeof d)
        return ENAMETOOLONG;
    if (parent_only) {
        char *slash = strrchr(d, '/');
        if (!slash || slash == d)
            return 0;
        *slash = '\0';
    }
    for (char *q = d + 1; *q; q++)
        if (*q == '/') {
            *q = '\0';
            (void)mkdir(d, 0755); /* an existing or unmakeable level shows in the last mkdir */
            *q = '/';
        }
    return mkdir(d, 0755) == 0 || errno == EEXIST ? 0 : errno;
}
