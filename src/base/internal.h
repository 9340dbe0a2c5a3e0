/* Internal helpers shared by every layer of the library (src/base/): errors,
 * allocation, checked arithmetic, the hash map, dtypes and their conversions,
 * the file byte source, JSON loading and path helpers. Not installed. */
#ifndef QTL_INTERNAL_H
#define QTL_INTERNAL_H

#include "qtl.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define QTL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QTL_PRINTF(a, b)
#endif

#define QTL_MSG_CAP 1024

/* ---- errors (status.c) ---- */
/* A message buffer with the status it describes; embedded in every handle. */
struct qtl_err {
    int code;
    char msg[QTL_MSG_CAP];
};
/* Record `code` and a formatted message; @return code (for `return qtl__fail(...)`). */
int qtl__fail(struct qtl_err *e, int code, const char *fmt, ...) QTL_PRINTF(3, 4);
int qtl__vfail(struct qtl_err *e, int code, const char *fmt, va_list ap);
void qtl__err_clear(struct qtl_err *e);
/* Copy another handle's error, prefixed by nothing. @return its code. */
int qtl__err_copy(struct qtl_err *dst, const struct qtl_err *src);

/* ---- allocation (alloc.c) ---- */
struct qtl_alloc {
    struct qtl_allocator a; /* always filled: defaults to malloc/free */
};
void qtl__alloc_init(struct qtl_alloc *al, const struct qtl_allocator *user);
void *qtl__malloc(const struct qtl_alloc *al, size_t size);
void *qtl__calloc(const struct qtl_alloc *al, size_t n, size_t size);
void qtl__free(const struct qtl_alloc *al, void *p);
char *qtl__strndup(const struct qtl_alloc *al, const char *s, size_t n);
char *qtl__strdup(const struct qtl_alloc *al, const char *s);
/* Grow *p (elements of `elem` bytes, capacity *cap) to hold at least `need`.
 * @return 0 or QTL_ERR_NOMEM (then *p is untouched). */
int qtl__grow(const struct qtl_alloc *al, void **p, size_t *cap, size_t need, size_t elem);
/* Formatted string allocated with `al`; NULL on failure. */
char *qtl__asprintf(const struct qtl_alloc *al, const char *fmt, ...) QTL_PRINTF(2, 3);

/* ---- checked arithmetic ---- */
static inline bool qtl__mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline bool qtl__add_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }

/* ---- string → index hash map (hmap.c) ---- */
/* Open addressing over caller-owned keys (pointer + length, not copied). */
struct qtl_hmap_slot {
    uint32_t value; /* stored value + 1; 0 = empty */
    uint32_t hash;
};
struct qtl_hmap {
    struct qtl_hmap_slot *slots;
    size_t cap; /* power of two */
    size_t count;
};
/* Callback giving the key of stored value v. */
typedef void (*qtl_hmap_key_fn)(const void *ctx, uint32_t v, const char **key, size_t *len);
int qtl__hmap_init(struct qtl_hmap *m, const struct qtl_alloc *al, size_t expected);
void qtl__hmap_free(struct qtl_hmap *m, const struct qtl_alloc *al);
/* Insert value v with key (key,len). @return 0, 1 if the key was present
 * (then *existing holds its value and nothing is inserted), or QTL_ERR_NOMEM. */
int qtl__hmap_insert(struct qtl_hmap *m, const struct qtl_alloc *al, const char *key, size_t len, uint32_t v,
                     qtl_hmap_key_fn keyfn, const void *ctx, uint32_t *existing);
/* The same with the key's hash computed earlier (qtl__hmap_hash), after a
 * qtl__hmap_prefetch of its slot: hides the cache miss behind other work. */
uint32_t qtl__hmap_hash(const char *key, size_t len);
void qtl__hmap_prefetch(const struct qtl_hmap *m, uint32_t h);
int qtl__hmap_insert_h(struct qtl_hmap *m, const struct qtl_alloc *al, const char *key, size_t len, uint32_t h,
                       uint32_t v, qtl_hmap_key_fn keyfn, const void *ctx, uint32_t *existing);
/* @return 1 and *v when found, 0 otherwise. */
int qtl__hmap_find(const struct qtl_hmap *m, const char *key, size_t len, qtl_hmap_key_fn keyfn,
                   const void *ctx, uint32_t *v);

/* ---- dtypes (dtype.c) ---- */
/* Byte size of `numel` elements with overflow / sub-byte checks, as the
 * reference crate computes it. @return QTL_OK, QTL_ERR_VALIDATION_OVERFLOW or
 * QTL_ERR_MISALIGNED_SLICE. */
int qtl__dtype_nbytes(enum qtl_dtype dt, uint64_t numel, uint64_t *nbytes);
/* Element count of a shape with overflow check. */
int qtl__shape_numel(const uint64_t *shape, uint32_t ndim, uint64_t *numel);
int qtl__dtype_is_float(enum qtl_dtype d); /* F32, BF16, F16 */
int qtl__dtype_is_int(enum qtl_dtype d);   /* I8..I64, U8..U64 */
/* 1 when qtl__convert can turn s into d (equal, float<->float, int<->int). */
int qtl__dtype_convertible(enum qtl_dtype s, enum qtl_dtype d);
/* Convert n elements as torch's copy_ does (floats through f32 with RNE,
 * integers by value, truncated to the destination width). 0, or -1 when the
 * pair is not convertible. src and dst must not overlap. */
int qtl__convert(enum qtl_dtype sd, const unsigned char *src, enum qtl_dtype dd, unsigned char *dst, uint64_t n);

/* ---- a list of findings (finding.c): the checkpoint's and the loader's ---- */
struct qtl_finding_rec {
    enum qtl_severity sev;
    int code;
    const char *id; /* the catalogue's string (static) */
    char *file, *tensor, *message;
};
struct qtl_findings {
    struct qtl_finding_rec *v;
    size_t n, cap;
};
/* Append one (file, tensor may be NULL; strings copied). @return QTL_OK or QTL_ERR_NOMEM (nothing added). */
int qtl__findings_add(struct qtl_findings *fs, const struct qtl_alloc *al, enum qtl_severity sev, int code,
                      const char *id, const char *file, const char *tensor, const char *message);
void qtl__findings_free(struct qtl_findings *fs, const struct qtl_alloc *al);
/* The public view of entry i (pointers owned by the list). */
void qtl__findings_at(const struct qtl_findings *fs, size_t i, struct qtl_diag *d);

/* ---- file byte source (source.c) ---- */
struct qtl_file_source {
    int fd;
    struct qtl_err *err; /* where read errors are described */
    const char *name;
};
/* Open `path` read-only; fills src (read = pread loop) and size. */
int qtl__file_source_open(struct qtl_file_source *fs, const char *path, struct qtl_source *src,
                          struct qtl_err *err);
void qtl__file_source_close(struct qtl_file_source *fs);
int qtl__memory_read(void *ud, void *dst, size_t len, uint64_t offset);

/* ---- JSON files (json.c) ---- */
struct json_t;
struct json_error_t;
/* json_load_file with JSON_REJECT_DUPLICATES; *oom = 1 (and NULL) when any
 * allocation failed during the parse, whatever jansson made of it. */
struct json_t *qtl__json_load_file(const char *path, struct json_error_t *err, int *oom);

/* ---- path helpers ---- */
const char *qtl__basename(const char *path);
int qtl__ends_with(const char *s, const char *suffix);
/* mkdir -p of path (parent_only: of its directory); 0 or an errno value. */
int qtl__mkdirs(const char *path, int parent_only);

#endif
