/* safetensors writer, byte-compatible with the reference crate (formats.md §1.4). */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct w_tensor {
    char *name;
    enum qtl_dtype dtype;
    uint32_t ndim;
    uint64_t *shape;
    const void *data;
    uint64_t nbytes;
    qtl_fill_fn fill; /* data produced at write time instead */
    void *fill_ud;
};

struct w_meta {
    char *key, *value;
};

struct qtl_st_writer {
    struct qtl_alloc al;
    struct qtl_err err;
    struct w_tensor *t;
    size_t nt, tcap;
    struct w_meta *m;
    size_t nm, mcap;
    char *hdr; /* last built header */
    size_t hdr_len, hdr_cap;
};

int qtl_st_writer_new(const struct qtl_allocator *allocator, qtl_st_writer_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, allocator);
    *out = qtl__calloc(&al, 1, sizeof **out);
    if (!*out)
        return QTL_ERR_NOMEM;
    (*out)->al = al;
    return QTL_OK;
}

void qtl_st_writer_free(qtl_st_writer_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nt; i++) {
        qtl__free(&w->al, w->t[i].name);
        qtl__free(&w->al, w->t[i].shape);
    }
    for (size_t i = 0; i < w->nm; i++) {
        qtl__free(&w->al, w->m[i].key);
        qtl__free(&w->al, w->m[i].value);
    }
    qtl__free(&w->al, w->t);
    qtl__free(&w->al, w->m);
    qtl__free(&w->al, w->hdr);
    struct qtl_alloc al = w->al;
    qtl__free(&al, w);
}

const char *qtl_st_writer_errmsg(const qtl_st_writer_t *w) { return w ? w->err.msg : "out of memory"; }
int qtl_st_writer_errcode(const qtl_st_writer_t *w) { return w ? w->err.code : QTL_ERR_NOMEM; }

static int writer_add(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                      const uint64_t *shape, const void *data, uint64_t nbytes, qtl_fill_fn fill, void *fill_ud);

int qtl_st_writer_add(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                      const uint64_t *shape, const void *data, uint64_t nbytes)
{
    if (nbytes && !data)
        return qtl__fail(&w->err, QTL_ERR_INVALID_ARGUMENT, "writer: no data for '%s'", name ? name : "(null)");
    return writer_add(w, name, dtype, ndim, shape, data, nbytes, NULL, NULL);
}

int qtl_st_writer_add_fill(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                           const uint64_t *shape, uint64_t nbytes, qtl_fill_fn fill, void *ud)
{
    if (!fill)
        return qtl__fail(&w->err, QTL_ERR_INVALID_ARGUMENT, "writer: no fill function for '%s'", name ? name : "(null)");
    return writer_add(w, name, dtype, ndim, shape, NULL, nbytes, fill, ud);
}

static int writer_add(qtl_st_writer_t *w, const char *name, enum qtl_dtype dtype, uint32_t ndim,
                      const uint64_t *shape, const void *data, uint64_t nbytes, qtl_fill_fn fill, void *fill_ud)
{
    if (!name || (unsigned)dtype >= QTL_DTYPE_COUNT || (ndim && !shape))
        return qtl__fail(&w->err, QTL_ERR_INVALID_ARGUMENT, "writer: invalid tensor arguments for '%s'",
                         name ? name : "(null)");
    for (size_t i = 0; i < w->nt; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return qtl__fail(&w->err, QTL_ERR_DUPLICATE_KEY, "writer: tensor '%s' added twice", name);
    uint64_t numel, need;
    int rc = qtl__shape_numel(shape, ndim, &numel);
    if (!rc)
        rc = qtl__dtype_nbytes(dtype, numel, &need);
    if (rc)
        return qtl__fail(&w->err, rc, "writer: tensor '%s': %s", name, qtl_strerror(rc));
    if (need != nbytes)
        return qtl__fail(&w->err, QTL_ERR_TENSOR_INVALID_INFO,
                         "writer: tensor '%s': %llu bytes given, %s of this shape needs %llu (InvalidTensorView)",
                         name, (unsigned long long)nbytes, qtl_dtype_name(dtype), (unsigned long long)need);
    if (qtl__grow(&w->al, (void **)&w->t, &w->tcap, w->nt + 1, sizeof *w->t))
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory");
    struct w_tensor *t = &w->t[w->nt];
    t->name = qtl__strdup(&w->al, name);
    t->shape = qtl__malloc(&w->al, (ndim ? ndim : 1) * sizeof *t->shape);
    if (!t->name || !t->shape) {
        qtl__free(&w->al, t->name);
        qtl__free(&w->al, t->shape);
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory");
    }
    if (ndim)
        memcpy(t->shape, shape, ndim * sizeof *shape);
    t->dtype = dtype;
    t->ndim = ndim;
    t->data = data;
    t->nbytes = nbytes;
    t->fill = fill;
    t->fill_ud = fill_ud;
    w->nt++;
    return QTL_OK;
}

int qtl_st_writer_set_metadata(qtl_st_writer_t *w, const char *key, const char *value)
{
    if (!key || !value)
        return qtl__fail(&w->err, QTL_ERR_INVALID_ARGUMENT, "writer: NULL metadata key or value");
    char *v = qtl__strdup(&w->al, value);
    if (!v)
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory");
    for (size_t i = 0; i < w->nm; i++) {
        if (strcmp(w->m[i].key, key) == 0) {
            qtl__free(&w->al, w->m[i].value);
            w->m[i].value = v;
            return QTL_OK;
        }
    }
    char *k = qtl__strdup(&w->al, key);
    if (!k || qtl__grow(&w->al, (void **)&w->m, &w->mcap, w->nm + 1, sizeof *w->m)) {
        qtl__free(&w->al, k);
        qtl__free(&w->al, v);
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory");
    }
    w->m[w->nm++] = (struct w_meta){k, v};
    return QTL_OK;
}

/* ---- header ---- */
static int cmp_tensor(const void *a, const void *b)
{
    const struct w_tensor *x = a, *y = b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1; /* descending declaration order */
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const struct w_meta *)a)->key, ((const struct w_meta *)b)->key);
}

static int put(qtl_st_writer_t *w, const char *s, size_t n)
{
    if (w->hdr_len + n < w->hdr_len ||
        qtl__grow(&w->al, (void **)&w->hdr, &w->hdr_cap, w->hdr_len + n, 1))
        return QTL_ERR_NOMEM;
    memcpy(w->hdr + w->hdr_len, s, n);
    w->hdr_len += n;
    return 0;
}

static int putf(qtl_st_writer_t *w, const char *fmt, ...) QTL_PRINTF(2, 3);
static int putf(qtl_st_writer_t *w, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return put(w, buf, (size_t)n);
}

/* A JSON string escaped as serde_json does. */
static int put_string(qtl_st_writer_t *w, const char *s)
{
    if (put(w, "\"", 1))
        return QTL_ERR_NOMEM;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        switch (*p) {
        case '"': rc = put(w, "\\\"", 2); break;
        case '\\': rc = put(w, "\\\\", 2); break;
        case '\b': rc = put(w, "\\b", 2); break;
        case '\f': rc = put(w, "\\f", 2); break;
        case '\n': rc = put(w, "\\n", 2); break;
        case '\r': rc = put(w, "\\r", 2); break;
        case '\t': rc = put(w, "\\t", 2); break;
        default: rc = *p < 0x20 ? putf(w, "\\u%04x", *p) : put(w, (const char *)p, 1);
        }
        if (rc)
            return rc;
    }
    return put(w, "\"", 1);
}

static int build_header(qtl_st_writer_t *w)
{
    if (w->nt > 1)
        qsort(w->t, w->nt, sizeof *w->t, cmp_tensor);
    if (w->nm > 1)
        qsort(w->m, w->nm, sizeof *w->m, cmp_meta);
    w->hdr_len = 0;
    int rc = put(w, "{", 1);
    if (w->nm) {
        rc |= put(w, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < w->nm && !rc; i++) {
            rc |= i ? put(w, ",", 1) : 0;
            rc |= put_string(w, w->m[i].key);
            rc |= put(w, ":", 1);
            rc |= put_string(w, w->m[i].value);
        }
        rc |= put(w, "}", 1);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->nt && !rc; i++) {
        const struct w_tensor *t = &w->t[i];
        rc |= (i || w->nm) ? put(w, ",", 1) : 0;
        rc |= put_string(w, t->name);
        rc |= putf(w, ":{\"dtype\":\"%s\",\"shape\":[", qtl_dtype_name(t->dtype));
        for (uint32_t d = 0; d < t->ndim; d++)
            rc |= putf(w, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
        rc |= putf(w, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                   (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    rc |= put(w, "}", 1);
    while (!rc && w->hdr_len % 8)
        rc |= put(w, " ", 1);
    if (rc)
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory building the header");
    if (w->hdr_len > QTL_DEFAULT_MAX_HEADER)
        return qtl__fail(&w->err, QTL_ERR_HEADER_TOO_LARGE, "writer: header of %zu bytes exceeds %u (HeaderTooLarge)",
                         w->hdr_len, QTL_DEFAULT_MAX_HEADER);
    return QTL_OK;
}

int qtl_st_writer_header_size(qtl_st_writer_t *w, uint64_t *n)
{
    int rc = build_header(w);
    if (!rc)
        *n = w->hdr_len;
    return rc;
}

int qtl_st_writer_write(qtl_st_writer_t *w, const struct qtl_sink *sink)
{
    int rc = build_header(w);
    if (rc)
        return rc;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)w->hdr_len >> (8 * i));
    rc = sink->write(sink->ud, len, 8);
    if (!rc)
        rc = sink->write(sink->ud, w->hdr, w->hdr_len);
    for (size_t i = 0; i < w->nt && !rc; i++) {
        const struct w_tensor *t = &w->t[i];
        if (!t->nbytes)
            continue;
        if (!t->fill) {
            rc = sink->write(sink->ud, t->data, (size_t)t->nbytes);
            continue;
        }
        /* Produced now, one tensor in memory at a time. */
        void *buf = t->nbytes <= SIZE_MAX ? qtl__malloc(&w->al, (size_t)t->nbytes) : NULL;
        if (!buf)
            return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory for tensor '%s' (%llu bytes)", t->name,
                             (unsigned long long)t->nbytes);
        rc = t->fill(t->fill_ud, buf, t->nbytes);
        if (rc)
            qtl__fail(&w->err, rc, "writer: producing tensor '%s' failed: %s", t->name, qtl_strerror(rc));
        else
            rc = sink->write(sink->ud, buf, (size_t)t->nbytes);
        qtl__free(&w->al, buf);
    }
    if (rc && !w->err.code)
        qtl__fail(&w->err, rc, "writer: sink failed: %s", qtl_strerror(rc));
    return rc;
}

struct fd_sink {
    int fd;
    const char *path;
    struct qtl_err *err;
};

static int fd_write(void *ud, const void *src, size_t len)
{
    struct fd_sink *s = ud;
    const unsigned char *p = src;
    while (len) {
        ssize_t r = write(s->fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return qtl__fail(s->err, QTL_ERR_IO, "%s: write failed: %s", s->path, strerror(errno));
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int qtl_st_writer_write_file(qtl_st_writer_t *w, const char *path)
{
    char *tmp = qtl__asprintf(&w->al, "%s.tmp.XXXXXX", path);
    if (!tmp)
        return qtl__fail(&w->err, QTL_ERR_NOMEM, "writer: out of memory");
    qtl__err_clear(&w->err);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        qtl__fail(&w->err, QTL_ERR_OPEN, "%s: cannot create: %s", tmp, strerror(errno));
        qtl__free(&w->al, tmp);
        return QTL_ERR_OPEN;
    }
    (void)fchmod(fd, 0644);
    struct fd_sink fs = {fd, path, &w->err};
    struct qtl_sink sink = {fd_write, &fs};
    int rc = qtl_st_writer_write(w, &sink);
    if (close(fd) != 0 && !rc)
        rc = qtl__fail(&w->err, QTL_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = qtl__fail(&w->err, QTL_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    qtl__free(&w->al, tmp);
    return rc;
}
