/* safetensors reader: header parse and validation, by the reference crate's
 * rules (formats.md §1.5), plus byte-range reads of tensor data.
 *
 * The header's JSON schema is fixed, so it gets a purpose-built strict parser
 * (st_json.c) instead of a general JSON library: offsets are u64 parsed
 * exactly, duplicate keys are rejected, and every byte is bounds-checked. */
#include "st_internal.h"
#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- open ------------------------------------------------------------------ */

static int st_new(const struct qtl_open_options *opts, const char *name, qtl_st_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, opts ? opts->allocator : NULL);
    *out = NULL;
    qtl_st_t *st = qtl__calloc(&al, 1, sizeof *st);
    if (!st)
        return QTL_ERR_NOMEM;
    st->al = al;
    st->fs.fd = -1;
    st->max_header = (opts && opts->max_header_bytes) ? opts->max_header_bytes : QTL_DEFAULT_MAX_HEADER;
    st->name = qtl__strdup(&al, name ? name : "<memory>");
    *out = st;
    if (!st->name)
        return qtl__fail(&st->err, QTL_ERR_NOMEM, "out of memory");
    return QTL_OK;
}

/* Printable ASCII or common whitespace. */
static int is_text_byte(unsigned char c) { return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r'; }

/* The first bytes are text: say what kind of file this is instead of quoting a
 * nonsensical header length. */
static int diagnose_text(qtl_st_t *st, const unsigned char *head, size_t n)
{
    static const char lfs[] = "version https://git-lfs";
    if (n >= sizeof lfs - 1 && memcmp(head, lfs, sizeof lfs - 1) == 0) {
        const char *sz = NULL;
        char buf[257];
        memcpy(buf, head, n);
        buf[n] = '\0';
        sz = strstr(buf, "\nsize ");
        unsigned long long bytes = sz ? strtoull(sz + 6, NULL, 10) : 0;
        if (bytes)
            return qtl__fail(&st->err, QTL_ERR_LFS_POINTER,
                             "%s: git-lfs pointer file (%llu bytes), not the tensor data: the real file "
                             "(%llu bytes) was never downloaded; run 'git lfs pull' or download it directly",
                             st->name, (unsigned long long)st->file_size, bytes);
        return qtl__fail(&st->err, QTL_ERR_LFS_POINTER,
                         "%s: git-lfs pointer file, not the tensor data; run 'git lfs pull'", st->name);
    }
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
        i++;
    if (i < n && head[i] == '<')
        return qtl__fail(&st->err, QTL_ERR_NOT_SAFETENSORS,
                         "%s: an HTML/XML page, not a safetensors file (a failed download, an error page "
                         "or a login page saved under the checkpoint's name?)",
                         st->name);
    if (i < n && (head[i] == '{' || head[i] == '['))
        return qtl__fail(&st->err, QTL_ERR_NOT_SAFETENSORS,
                         "%s: a JSON text file, not a safetensors file (it has no 8-byte header length)",
                         st->name);
    return qtl__fail(&st->err, QTL_ERR_NOT_SAFETENSORS,
                     "%s: a text file, not a safetensors file (its first 8 bytes are text, not a header length)",
                     st->name);
}

static int st_load(qtl_st_t *st)
{
    uint64_t fsize = st->src.size;
    st->file_size = fsize;
    unsigned char head[256];
    size_t hn = fsize < sizeof head ? (size_t)fsize : sizeof head;
    int rc = hn ? st->src.read(st->src.ud, head, hn, 0) : 0;
    if (rc)
        return st->err.code == rc ? rc : qtl__fail(&st->err, rc, "%s: cannot read: %s", st->name, qtl_strerror(rc));
    if (fsize < 8)
        return qtl__fail(&st->err, QTL_ERR_HEADER_TOO_SMALL,
                         "%s: file is %llu bytes, shorter than the 8-byte header length (empty or failed "
                         "download?)",
                         st->name, (unsigned long long)fsize);
    int text = 1;
    for (int i = 0; i < 8; i++)
        text &= is_text_byte(head[i]);
    if (text)
        return diagnose_text(st, head, hn);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | head[i];
    st->header_len = n;
    if (n > st->max_header || n > SIZE_MAX - 1)
        return qtl__fail(&st->err, QTL_ERR_HEADER_TOO_LARGE,
                         "%s: header length %llu exceeds the limit of %llu bytes (HeaderTooLarge)", st->name,
                         (unsigned long long)n, (unsigned long long)st->max_header);
    if (n > fsize - 8)
        return qtl__fail(&st->err, QTL_ERR_INVALID_HEADER_LENGTH,
                         "%s: header length %llu runs past the end of the %llu-byte file (InvalidHeaderLength; "
                         "truncated download?)",
                         st->name, (unsigned long long)n, (unsigned long long)fsize);
    char *hdr = qtl__malloc(&st->al, (size_t)n + 1);
    if (!hdr)
        return qtl__fail(&st->err, QTL_ERR_NOMEM, "%s: out of memory for a %llu-byte header", st->name,
                         (unsigned long long)n);
    rc = n ? st->src.read(st->src.ud, hdr, (size_t)n, 8) : 0;
    if (rc) {
        qtl__free(&st->al, hdr);
        return st->err.code == rc ? rc : qtl__fail(&st->err, rc, "%s: cannot read header", st->name);
    }
    hdr[n] = '\0';
    st->strings = hdr; /* owned by st from here on */
    rc = qtl__st_parse_header(st, hdr, (size_t)n);
    if (rc)
        return rc;
    return qtl__st_validate(st);
}

int qtl_st_open_source(const struct qtl_source *src, const char *name, const struct qtl_open_options *opts,
                       qtl_st_t **out)
{
    int rc = st_new(opts, name, out);
    if (rc)
        return rc;
    if (!src || !src->read)
        return qtl__fail(&(*out)->err, QTL_ERR_INVALID_ARGUMENT, "no byte source");
    (*out)->src = *src;
    return st_load(*out);
}

int qtl_st_open_memory(const void *data, size_t size, const char *name, const struct qtl_open_options *opts,
                       qtl_st_t **out)
{
    int rc = st_new(opts, name, out);
    if (rc)
        return rc;
    if (!data && size)
        return qtl__fail(&(*out)->err, QTL_ERR_INVALID_ARGUMENT, "NULL data with size %zu", size);
    (*out)->src.read = qtl__memory_read;
    (*out)->src.ud = (void *)(uintptr_t)data;
    (*out)->src.size = size;
    return st_load(*out);
}

int qtl_st_open_file(const char *path, const struct qtl_open_options *opts, qtl_st_t **out)
{
    int rc = st_new(opts, path, out);
    if (rc)
        return rc;
    qtl_st_t *st = *out;
    if (!path)
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT, "NULL path");
    rc = qtl__file_source_open(&st->fs, st->name, &st->src, &st->err);
    if (rc)
        return rc;
    return st_load(st);
}

void qtl_st_close(qtl_st_t *st)
{
    if (!st)
        return;
    struct qtl_alloc al = st->al;
    qtl__file_source_close(&st->fs);
    qtl__hmap_free(&st->map, &al);
    qtl__free(&al, st->tensors);
    qtl__free(&al, st->shapes);
    qtl__free(&al, st->meta);
    qtl__free(&al, st->strings);
    qtl__free(&al, st->name);
    qtl__free(&al, st);
}

/* ---- validation (formats.md §1.5 step 6-7) ---------------------------------- */

static int cmp_tensor(const void *a, const void *b)
{
    const struct st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

void qtl__st_key(const void *ctx, uint32_t v, const char **key, size_t *len)
{
    const qtl_st_t *st = ctx;
    *key = st->strings + st->tensors[v].name_off;
    *len = st->tensors[v].name_len;
}

static void format_shape(const qtl_st_t *st, const struct st_tensor *t, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? "," : "",
                              (unsigned long long)st->shapes[t->shape_off + d]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

int qtl__st_validate(qtl_st_t *st)
{
    size_t n = st->ntensors;
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = cmp_tensor(&st->tensors[i - 1], &st->tensors[i]) < 0;
    if (!sorted) {
        qsort(st->tensors, n, sizeof *st->tensors, cmp_tensor);
        /* Re-point the name map at the sorted positions. */
        for (size_t s = 0; s < st->map.cap; s++)
            st->map.slots[s].value = 0;
        st->map.count = 0;
        for (size_t i = 0; i < n; i++) {
            const char *k;
            size_t kl;
            qtl__st_key(st, (uint32_t)i, &k, &kl);
            if (qtl__hmap_insert(&st->map, &st->al, k, kl, (uint32_t)i, qtl__st_key, st, NULL) < 0)
                return qtl__fail(&st->err, QTL_ERR_NOMEM, "%s: out of memory", st->name);
        }
    }
    uint64_t running = 0;
    for (size_t i = 0; i < n; i++) {
        struct st_tensor *t = &st->tensors[i];
        const char *nm = st->strings + t->name_off;
        if (t->begin != running || t->end < t->begin) {
            const char *why = t->end < t->begin ? "end before begin"
                              : i == 0          ? "the first tensor must start at 0"
                              : t->begin < running ? "overlap previous tensor"
                                                   : "leave a hole after previous tensor";
            if (i == 0 || t->end < t->begin)
                return qtl__fail(&st->err, QTL_ERR_INVALID_OFFSET,
                                 "%s: tensor '%s': data_offsets [%llu,%llu]: %s (InvalidOffset)", st->name, nm,
                                 (unsigned long long)t->begin, (unsigned long long)t->end, why);
            return qtl__fail(&st->err, QTL_ERR_INVALID_OFFSET,
                             "%s: tensor '%s': data_offsets [%llu,%llu] %s '%s' ending at %llu (InvalidOffset)",
                             st->name, nm, (unsigned long long)t->begin, (unsigned long long)t->end, why,
                             st->strings + st->tensors[i - 1].name_off, (unsigned long long)running);
        }
        char shp[128];
        if (qtl__shape_numel(st->shapes + t->shape_off, t->ndim, &t->numel)) {
            format_shape(st, t, shp, sizeof shp);
            return qtl__fail(&st->err, QTL_ERR_VALIDATION_OVERFLOW,
                             "%s: tensor '%s': element count of shape %s overflows 64 bits (ValidationOverflow)",
                             st->name, nm, shp);
        }
        uint64_t nbytes;
        int rc = qtl__dtype_nbytes(t->dtype, t->numel, &nbytes);
        if (rc) {
            format_shape(st, t, shp, sizeof shp);
            if (rc == QTL_ERR_VALIDATION_OVERFLOW)
                return qtl__fail(&st->err, rc,
                                 "%s: tensor '%s': %llu elements of %s overflow 64 bits (ValidationOverflow)",
                                 st->name, nm, (unsigned long long)t->numel, qtl_dtype_name(t->dtype));
            return qtl__fail(&st->err, rc,
                             "%s: tensor '%s': %s %s is %llu elements of %u bits, not a whole number of bytes "
                             "(MisalignedSlice)",
                             st->name, nm, qtl_dtype_name(t->dtype), shp, (unsigned long long)t->numel,
                             qtl_dtype_bits(t->dtype));
        }
        if (t->end - t->begin != nbytes) {
            format_shape(st, t, shp, sizeof shp);
            return qtl__fail(&st->err, QTL_ERR_TENSOR_INVALID_INFO,
                             "%s: tensor '%s': data_offsets [%llu,%llu] hold %llu bytes but %s %s needs %llu "
                             "(TensorInvalidInfo)",
                             st->name, nm, (unsigned long long)t->begin, (unsigned long long)t->end,
                             (unsigned long long)(t->end - t->begin), qtl_dtype_name(t->dtype), shp,
                             (unsigned long long)nbytes);
        }
        running = t->end;
    }
    uint64_t data_len = st->file_size - 8 - st->header_len; /* 8+N <= size checked at open */
    if (running > data_len)
        return qtl__fail(&st->err, QTL_ERR_TRUNCATED,
                         "%s: file truncated: the header describes %llu bytes of tensor data but only %llu are "
                         "present (expected file size %llu, actual %llu; MetadataIncompleteBuffer)",
                         st->name, (unsigned long long)running, (unsigned long long)data_len,
                         (unsigned long long)(8 + st->header_len + running), (unsigned long long)st->file_size);
    if (running < data_len)
        return qtl__fail(&st->err, QTL_ERR_INCOMPLETE_BUFFER,
                         "%s: %llu bytes after the last tensor (data ends at %llu, file size %llu): the byte "
                         "buffer must be indexed entirely (MetadataIncompleteBuffer)",
                         st->name, (unsigned long long)(data_len - running),
                         (unsigned long long)(8 + st->header_len + running), (unsigned long long)st->file_size);
    return QTL_OK;
}

/* ---- accessors ---------------------------------------------------------------- */

const char *qtl_st_errmsg(const qtl_st_t *st) { return st ? st->err.msg : "out of memory"; }
int qtl_st_errcode(const qtl_st_t *st) { return st ? st->err.code : QTL_ERR_NOMEM; }
const char *qtl_st_name(const qtl_st_t *st) { return st->name; }
uint64_t qtl_st_file_size(const qtl_st_t *st) { return st->file_size; }
uint64_t qtl_st_header_size(const qtl_st_t *st) { return st->header_len; }
size_t qtl_st_tensor_count(const qtl_st_t *st) { return st->ntensors; }
size_t qtl_st_metadata_count(const qtl_st_t *st) { return st->nmeta; }

int qtl_st_tensor_at(const qtl_st_t *st, size_t index, struct qtl_tensor_info *info)
{
    if (index >= st->ntensors)
        return QTL_ERR_INVALID_ARGUMENT;
    const struct st_tensor *t = &st->tensors[index];
    info->name = st->strings + t->name_off;
    info->file = st->name;
    info->dtype = t->dtype;
    info->ndim = t->ndim;
    info->shape = t->ndim ? st->shapes + t->shape_off : NULL;
    info->numel = t->numel;
    info->nbytes = t->end - t->begin;
    info->begin = t->begin;
    info->end = t->end;
    info->file_offset = 8 + st->header_len + t->begin;
    return QTL_OK;
}

int qtl_st_tensor_find(const qtl_st_t *st, const char *name, size_t *index)
{
    uint32_t v;
    if (!name || !qtl__hmap_find(&st->map, name, strlen(name), qtl__st_key, st, &v))
        return QTL_ERR_NOT_FOUND;
    *index = v;
    return QTL_OK;
}

int qtl_st_metadata_at(const qtl_st_t *st, size_t index, const char **key, const char **value)
{
    if (index >= st->nmeta)
        return QTL_ERR_INVALID_ARGUMENT;
    *key = st->strings + st->meta[index].key_off;
    *value = st->strings + st->meta[index].val_off;
    return QTL_OK;
}

const char *qtl_st_metadata_get(const qtl_st_t *st, const char *key)
{
    for (size_t i = 0; i < st->nmeta; i++)
        if (strcmp(st->strings + st->meta[i].key_off, key) == 0)
            return st->strings + st->meta[i].val_off;
    return NULL;
}

/* ---- reads ---------------------------------------------------------------------- */

int qtl_st_read(qtl_st_t *st, size_t index, const struct qtl_byte_range *ranges, size_t n, void *dst,
                size_t dst_size)
{
    if (index >= st->ntensors)
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range", st->name, index);
    const struct st_tensor *t = &st->tensors[index];
    uint64_t nbytes = t->end - t->begin, total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t e;
        if (qtl__add_u64(ranges[i].offset, ranges[i].length, &e) || e > nbytes ||
            qtl__add_u64(total, ranges[i].length, &total))
            return qtl__fail(&st->err, QTL_ERR_RANGE,
                             "%s: tensor '%s': byte range [%llu,+%llu) outside its %llu bytes", st->name,
                             st->strings + t->name_off, (unsigned long long)ranges[i].offset,
                             (unsigned long long)ranges[i].length, (unsigned long long)nbytes);
    }
    if (total != dst_size)
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT,
                         "%s: tensor '%s': ranges total %llu bytes, destination holds %zu", st->name,
                         st->strings + t->name_off, (unsigned long long)total, dst_size);
    uint64_t base = 8 + st->header_len + t->begin;
    unsigned char *out = dst;
    for (size_t i = 0; i < n;) {
        uint64_t off = ranges[i].offset, len = ranges[i].length;
        /* Coalesce ranges that continue each other in the file. */
        for (i++; i < n && ranges[i].offset == off + len; i++)
            len += ranges[i].length;
        if (!len)
            continue;
        int rc = st->src.read(st->src.ud, out, (size_t)len, base + off);
        if (rc)
            return st->err.code == rc ? rc
                                      : qtl__fail(&st->err, rc, "%s: tensor '%s': read failed: %s", st->name,
                                                  st->strings + t->name_off, qtl_strerror(rc));
        out += len;
    }
    return QTL_OK;
}

int qtl_st_read_tensor(qtl_st_t *st, size_t index, void *dst, size_t dst_size)
{
    if (index >= st->ntensors)
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range", st->name, index);
    struct qtl_byte_range r = {0, st->tensors[index].end - st->tensors[index].begin};
    return qtl_st_read(st, index, &r, 1, dst, dst_size);
}

int qtl__st_block_ranges(const struct qtl_tensor_info *ti, uint64_t row0, uint64_t nrows, uint64_t col0,
                         uint64_t ncols, struct qtl_err *err, uint64_t *row_bytes, uint64_t *col_off,
                         uint64_t *col_bytes)
{
    uint64_t rows = ti->ndim ? ti->shape[0] : 1, cols = 1;
    for (uint32_t d = 1; d < ti->ndim; d++)
        cols *= ti->shape[d]; /* cannot overflow: numel was checked */
    unsigned bits = qtl_dtype_bits(ti->dtype);
    uint64_t er, ec;
    if (qtl__add_u64(row0, nrows, &er) || er > rows || qtl__add_u64(col0, ncols, &ec) || ec > cols)
        return qtl__fail(err, QTL_ERR_RANGE,
                         "%s: tensor '%s': block rows [%llu,+%llu) cols [%llu,+%llu) outside its [%llu,%llu] view",
                         ti->file, ti->name, (unsigned long long)row0, (unsigned long long)nrows,
                         (unsigned long long)col0, (unsigned long long)ncols, (unsigned long long)rows,
                         (unsigned long long)cols);
    if ((cols * bits) % 8 || (col0 * bits) % 8 || (ncols * bits) % 8)
        return qtl__fail(err, QTL_ERR_RANGE, "%s: tensor '%s': %s block does not start and end on a byte",
                         ti->file, ti->name, qtl_dtype_name(ti->dtype));
    *row_bytes = cols * bits / 8;
    *col_off = col0 * bits / 8;
    *col_bytes = ncols * bits / 8;
    return QTL_OK;
}

int qtl_st_read_block(qtl_st_t *st, size_t index, uint64_t row0, uint64_t nrows, uint64_t col0, uint64_t ncols,
                      void *dst, size_t dst_size)
{
    struct qtl_tensor_info ti;
    if (qtl_st_tensor_at(st, index, &ti))
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT, "%s: tensor index %zu out of range", st->name, index);
    uint64_t rb = 0, co = 0, cb = 0, total;
    int rc = qtl__st_block_ranges(&ti, row0, nrows, col0, ncols, &st->err, &rb, &co, &cb);
    if (rc)
        return rc;
    if (qtl__mul_u64(nrows, cb, &total) || total != dst_size)
        return qtl__fail(&st->err, QTL_ERR_INVALID_ARGUMENT,
                         "%s: tensor '%s': block needs %llu bytes, destination holds %zu", st->name, ti.name,
                         (unsigned long long)(nrows * cb), dst_size);
    if (cb == rb || nrows <= 1) { /* full rows: one contiguous range */
        struct qtl_byte_range r = {row0 * rb + co, total};
        return qtl_st_read(st, index, &r, 1, dst, dst_size);
    }
    struct qtl_byte_range batch[64];
    unsigned char *out = dst;
    for (uint64_t r = 0; r < nrows;) {
        size_t k = 0;
        for (; k < 64 && r < nrows; k++, r++)
            batch[k] = (struct qtl_byte_range){(row0 + r) * rb + co, cb};
        rc = qtl_st_read(st, index, batch, k, out, (size_t)(k * cb));
        if (rc)
            return rc;
        out += k * cb;
    }
    return QTL_OK;
}
