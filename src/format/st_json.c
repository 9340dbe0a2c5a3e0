/* Strict parser for the safetensors header's fixed JSON schema.
 *
 * Grammar accepted (RFC 8259 JSON, restricted where the schema is):
 *   header   = ws '{' ws [ entry (ws ',' ws entry)* ] ws '}' ws
 *   entry    = string ws ':' ws ( "__metadata__" → (meta | null) | tensor )
 *   meta     = '{' string ':' string, ... '}'              (string → string)
 *   tensor   = '{' "dtype": string, "shape": [u64...], "data_offsets": [u64, u64],
 *              other fields: any JSON value, ignored (as the reference crate does) '}'
 *   u64      = digits without sign, fraction, exponent or leading zero, < 2^64
 * Duplicate top-level keys, duplicate metadata keys and repeated tensor fields
 * are rejected (QTL_ERR_DUPLICATE_KEY). The bytes were checked to be UTF-8
 * before parsing; escapes are decoded (\uXXXX with surrogate pairs), and a
 * decoded NUL is rejected because names are C strings. */
#include "st_internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 128

struct jp {
    qtl_st_t *st;
    unsigned char *beg, *p, *end; /* the header, decoded in place */
    const char *tensor; /* entry being parsed, for messages */
};

static int jp_fail(struct jp *j, int code, const char *fmt, ...) QTL_PRINTF(3, 4);
static int jp_fail(struct jp *j, int code, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *crate = code == QTL_ERR_INVALID_HEADER_DESER ? " (InvalidHeaderDeserialization)" : "";
    if (j->tensor)
        return qtl__fail(&j->st->err, code, "%s: header byte %zu: tensor '%s': %s%s", j->st->name,
                         (size_t)(j->p - j->beg), j->tensor, what, crate);
    return qtl__fail(&j->st->err, code, "%s: header byte %zu: %s%s", j->st->name, (size_t)(j->p - j->beg), what,
                     crate);
}

static int oom(struct jp *j) { return qtl__fail(&j->st->err, QTL_ERR_NOMEM, "%s: out of memory", j->st->name); }

static void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int expect(struct jp *j, char c, const char *ctx)
{
    skip_ws(j);
    if (j->p >= j->end)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "unexpected end of header, expected '%c' %s", c, ctx);
    if (*j->p != (unsigned char)c) { /* a byte that is not printable ASCII is shown as \xNN (messages stay UTF-8) */
        if (*j->p >= 0x20 && *j->p < 0x7f)
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "expected '%c' %s, found '%c'", c, ctx, *j->p);
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "expected '%c' %s, found byte \\x%02x", c, ctx, *j->p);
    }
    j->p++;
    return 0;
}

/* ---- UTF-8 (Rust's str::from_utf8 rules: no overlongs, no surrogates, <= U+10FFFF) ---- */
static size_t utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time. */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return SIZE_MAX;
}

/* ---- strings ---- */
static int hex4(struct jp *j, uint32_t *v)
{
    if (j->end - j->p < 4)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "truncated \\u escape");
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = j->p[i];
        r <<= 4;
        if (c >= '0' && c <= '9')
            r |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            r |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            r |= (uint32_t)(c - 'A' + 10);
        else
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid hex digit in \\u escape");
    }
    j->p += 4;
    *v = r;
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decode the string at j->p (which must be '"') in place: the decoded bytes
 * are never longer than their quoted source, so they are written over it,
 * NUL-terminated where the closing quote (or earlier) was. off and len
 * locate the result in st->strings (the header buffer itself). */
static int parse_string(struct jp *j, size_t *off, size_t *len)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "expected a string");
    unsigned char *start = ++j->p, *p = start, *e = j->end;
    /* Plain bytes 8 at a time: stop at a word holding '"', '\\' or a byte < 0x20. */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (e - p >= 8) {
        uint64_t w, q, b;
        memcpy(&w, p, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        if (((q - ones) & ~q & highs) | ((b - ones) & ~b & highs) | ((w - ones * 0x20) & ~w & highs))
            break;
        p += 8;
    }
    while (p < e && *p >= 0x20 && *p != '"' && *p != '\\')
        p++;
    unsigned char *o = p;
    while (p >= e || *p != '"') {
        j->p = p;
        if (p >= e)
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "unterminated string");
        unsigned char c = *p;
        if (c < 0x20)
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "control character 0x%02x in a string", c);
        if (c != '\\') {
            *o++ = *p++;
            continue;
        }
        j->p = ++p;
        if (p >= e)
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "unterminated escape");
        c = *p++;
        j->p = p;
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (hex4(j, &cp))
                return j->st->err.code;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "lone trailing surrogate in \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "lone leading surrogate in \\u escape");
                j->p += 2;
                if (hex4(j, &lo))
                    return j->st->err.code;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid surrogate pair in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "\\u0000 in a string (names are C strings)");
            o += put_utf8((char *)o, cp);
            p = j->p;
            break;
        }
        default:
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid escape '\\%c'", c);
        }
    }
    j->p = p + 1;
    *o = '\0';
    *off = (size_t)(start - j->beg);
    *len = (size_t)(o - start);
    return 0;
}

/* ---- numbers ---- */
static int parse_u64(struct jp *j, uint64_t *v, const char *what)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == '-')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "negative number in %s", what);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "expected an unsigned integer in %s", what);
    unsigned char *start = j->p;
    uint64_t r = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (qtl__mul_u64(r, 10, &r) || qtl__add_u64(r, (uint64_t)(*j->p - '0'), &r))
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "integer in %s does not fit 64 bits", what);
        j->p++;
    }
    if (*start == '0' && j->p - start > 1) {
        j->p = start;
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "leading zero in a number in %s", what);
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "%s must hold integers, found a floating-point number",
                       what);
    *v = r;
    return 0;
}

/* ---- generic values (ignored fields) ---- */
static int skip_value(struct jp *j, int depth);

static int skip_number(struct jp *j)
{
    unsigned char *p = j->p, *e = j->end;
    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid JSON value");
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    return 0;
}

static int skip_literal(struct jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "invalid JSON value");
    j->p += n;
    return 0;
}

static int skip_container(struct jp *j, int depth, char close, int keyed)
{
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == (unsigned char)close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (keyed) {
            size_t off, len;
            if (parse_string(j, &off, &len))
                return j->st->err.code;
            if (expect(j, ':', "after an object key"))
                return j->st->err.code;
        }
        if (skip_value(j, depth + 1))
            return j->st->err.code;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == (unsigned char)close) {
            j->p++;
            return 0;
        }
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "expected ',' or '%c'", close);
    }
}

static int skip_value(struct jp *j, int depth)
{
    skip_ws(j);
    if (depth > MAX_DEPTH)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "JSON nested deeper than %d levels", MAX_DEPTH);
    if (j->p >= j->end)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "unexpected end of header");
    switch (*j->p) {
    case '{': return skip_container(j, depth, '}', 1);
    case '[': return skip_container(j, depth, ']', 0);
    case '"': {
        size_t off, len;
        return parse_string(j, &off, &len);
    }
    case 't': return skip_literal(j, "true");
    case 'f': return skip_literal(j, "false");
    case 'n': return skip_literal(j, "null");
    default: return skip_number(j);
    }
}

/* ---- schema ---- */
static int key_is(const qtl_st_t *st, size_t off, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(st->strings + off, lit, len) == 0;
}

static int parse_shape(struct jp *j, uint32_t *ndim, size_t *shape_off)
{
    qtl_st_t *st = j->st;
    if (expect(j, '[', "to open \"shape\""))
        return st->err.code;
    *shape_off = st->nshapes;
    *ndim = 0;
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        uint64_t d;
        if (parse_u64(j, &d, "\"shape\""))
            return st->err.code;
        if (qtl__grow(&st->al, (void **)&st->shapes, &st->shapes_cap, st->nshapes + 1, sizeof *st->shapes))
            return oom(j);
        st->shapes[st->nshapes++] = d;
        if (++*ndim == UINT32_MAX)
            return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "too many dimensions");
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return expect(j, ']', "to close \"shape\"");
    }
}

static int parse_offsets(struct jp *j, uint64_t *b, uint64_t *e)
{
    if (expect(j, '[', "to open \"data_offsets\"") || parse_u64(j, b, "\"data_offsets\""))
        return j->st->err.code;
    skip_ws(j);
    if (j->p < j->end && *j->p == ']')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "\"data_offsets\" must hold exactly 2 integers, found 1");
    if (expect(j, ',', "in \"data_offsets\"") || parse_u64(j, e, "\"data_offsets\""))
        return j->st->err.code;
    skip_ws(j);
    if (j->p < j->end && *j->p == ',')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "\"data_offsets\" must hold exactly 2 integers, found more");
    return expect(j, ']', "to close \"data_offsets\"");
}

static int parse_tensor(struct jp *j, size_t name_off, size_t name_len)
{
    qtl_st_t *st = j->st;
    struct st_tensor t = {.name_off = name_off, .name_len = name_len, .order = st->ntensors};
    int have_dtype = 0, have_shape = 0, have_off = 0;
    j->tensor = st->strings + name_off; /* parse_string rejects NUL: a C string of name_len bytes */
    uint32_t hash = qtl__hmap_hash(j->tensor, name_len);
    qtl__hmap_prefetch(&st->map, hash);
    skip_ws(j);
    if (j->p >= j->end || *j->p != '{')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "a tensor entry must be an object");
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
    } else {
        for (;;) {
            size_t off, len;
            if (parse_string(j, &off, &len) || expect(j, ':', "after a field name"))
                return st->err.code;
            int *seen = NULL;
            if (key_is(st, off, len, "dtype"))
                seen = &have_dtype;
            else if (key_is(st, off, len, "shape"))
                seen = &have_shape;
            else if (key_is(st, off, len, "data_offsets"))
                seen = &have_off;
            if (seen && *seen)
                return jp_fail(j, QTL_ERR_DUPLICATE_KEY, "field \"%s\" appears twice", st->strings + off);
            if (seen == &have_dtype) {
                size_t doff, dlen;
                if (parse_string(j, &doff, &dlen)) {
                    if (st->err.code == QTL_ERR_INVALID_HEADER_DESER && j->p < j->end && *j->p != '"')
                        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "\"dtype\" must be a string");
                    return st->err.code;
                }
                if (qtl_dtype_from_name(st->strings + doff, dlen, &t.dtype))
                    return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "unknown dtype \"%.64s\"", st->strings + doff);
            } else if (seen == &have_shape) {
                if (parse_shape(j, &t.ndim, &t.shape_off))
                    return st->err.code;
            } else if (seen == &have_off) {
                if (parse_offsets(j, &t.begin, &t.end))
                    return st->err.code;
            } else if (skip_value(j, 2)) {
                return st->err.code;
            }
            if (seen)
                *seen = 1;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (expect(j, '}', "to close the tensor entry"))
                return st->err.code;
            break;
        }
    }
    if (!have_dtype || !have_shape || !have_off)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "missing field \"%s\"",
                       !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    if (st->ntensors >= UINT32_MAX - 1)
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "too many tensors");
    if (qtl__grow(&st->al, (void **)&st->tensors, &st->tensors_cap, st->ntensors + 1, sizeof *st->tensors))
        return oom(j);
    st->tensors[st->ntensors] = t;
    uint32_t prev;
    int ins = qtl__hmap_insert_h(&st->map, &st->al, st->strings + name_off, name_len, hash,
                                 (uint32_t)st->ntensors, qtl__st_key, st, &prev);
    if (ins < 0)
        return oom(j);
    if (ins > 0)
        return jp_fail(j, QTL_ERR_DUPLICATE_KEY, "tensor name appears twice in the header");
    st->ntensors++;
    j->tensor = NULL;
    return 0;
}

static void meta_key(const void *ctx, uint32_t v, const char **key, size_t *len)
{
    const qtl_st_t *st = ctx;
    *key = st->strings + st->meta[v].key_off;
    *len = st->meta[v].key_len;
}

static int parse_metadata(struct jp *j)
{
    qtl_st_t *st = j->st;
    skip_ws(j);
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
        return 0;
    }
    if (j->p >= j->end || *j->p != '{')
        return jp_fail(j, QTL_ERR_INVALID_HEADER_DESER, "\"__metadata__\" must be an object of strings");
    j->p++;
    struct qtl_hmap keys;
    if (qtl__hmap_init(&keys, &st->al, 8))
        return oom(j);
    int rc = 0;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        goto done;
    }
    for (;;) {
        size_t koff, klen, voff, vlen;
        if ((rc = parse_string(j, &koff, &klen)) || (rc = expect(j, ':', "after a metadata key")))
            goto done;
        skip_ws(j);
        if (j->p >= j->end || *j->p != '"') {
            rc = jp_fail(j, QTL_ERR_INVALID_HEADER_DESER,
                         "\"__metadata__\" value for key \"%.128s\" is not a string", st->strings + koff);
            goto done;
        }
        if ((rc = parse_string(j, &voff, &vlen)))
            goto done;
        if (qtl__grow(&st->al, (void **)&st->meta, &st->meta_cap, st->nmeta + 1, sizeof *st->meta)) {
            rc = oom(j);
            goto done;
        }
        st->meta[st->nmeta] = (struct st_meta){koff, klen, voff};
        int ins = qtl__hmap_insert(&keys, &st->al, st->strings + koff, klen, (uint32_t)st->nmeta, meta_key, st, NULL);
        if (ins < 0) {
            rc = oom(j);
            goto done;
        }
        if (ins > 0) {
            rc = jp_fail(j, QTL_ERR_DUPLICATE_KEY, "metadata key \"%.128s\" appears twice", st->strings + koff);
            goto done;
        }
        st->nmeta++;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        rc = expect(j, '}', "to close \"__metadata__\"");
        break;
    }
done:
    qtl__hmap_free(&keys, &st->al);
    return rc;
}

int qtl__st_parse_header(qtl_st_t *st, char *hdr, size_t n)
{
    unsigned char *h = (unsigned char *)hdr;
    struct jp j = {st, h, h, h + n, NULL};
    size_t bad = utf8_invalid_at(j.beg, n);
    if (bad != SIZE_MAX)
        return qtl__fail(&st->err, QTL_ERR_INVALID_HEADER,
                         "%s: header byte %zu (0x%02x) is not valid UTF-8 (InvalidHeader)", st->name, bad,
                         j.beg[bad]);
    /* Every tensor entry opens one '{': size the tables once, no regrowth. */
    size_t objects = 0;
    for (const char *q = hdr; (q = memchr(q, '{', (size_t)(hdr + n - q))) != NULL; q++)
        objects++;
    st->strings = hdr;
    if (qtl__hmap_init(&st->map, &st->al, objects) ||
        qtl__grow(&st->al, (void **)&st->tensors, &st->tensors_cap, objects, sizeof *st->tensors) ||
        qtl__grow(&st->al, (void **)&st->shapes, &st->shapes_cap, objects * 2, sizeof *st->shapes))
        return oom(&j);
    int seen_meta = 0;
    if (expect(&j, '{', "at the start of the header"))
        return st->err.code;
    skip_ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            size_t off, len;
            if (parse_string(&j, &off, &len) || expect(&j, ':', "after a tensor name"))
                return st->err.code;
            if (key_is(st, off, len, "__metadata__")) {
                if (seen_meta)
                    return jp_fail(&j, QTL_ERR_DUPLICATE_KEY, "\"__metadata__\" appears twice");
                seen_meta = 1;
                if (parse_metadata(&j))
                    return st->err.code;
            } else if (parse_tensor(&j, off, len)) {
                return st->err.code;
            }
            skip_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (expect(&j, '}', "to close the header object"))
                return st->err.code;
            break;
        }
    }
    skip_ws(&j);
    if (j.p != j.end)
        return jp_fail(&j, QTL_ERR_INVALID_HEADER_DESER, "trailing characters after the header object");
    return 0;
}
