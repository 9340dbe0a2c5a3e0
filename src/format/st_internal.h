/* Private layout of a safetensors handle, shared by st_read.c and st_json.c. */
#ifndef QTL_ST_INTERNAL_H
#define QTL_ST_INTERNAL_H

#include "internal.h"

struct st_tensor {
    size_t name_off;   /* into strings */
    size_t name_len;
    size_t shape_off;  /* into shapes */
    uint32_t ndim;
    enum qtl_dtype dtype;
    uint64_t begin, end, numel;
    size_t order;      /* position in the header, the sort's tie-break */
};

struct st_meta {
    size_t key_off, key_len, val_off;
};

struct qtl_st {
    struct qtl_alloc al;
    struct qtl_err err;
    char *name;
    struct qtl_source src;
    struct qtl_file_source fs;
    uint64_t max_header;
    uint64_t file_size, header_len;
    char *strings; /* the header, its strings decoded in place and NUL-terminated */
    struct st_tensor *tensors;
    size_t ntensors, tensors_cap;
    uint64_t *shapes;
    size_t nshapes, shapes_cap;
    struct st_meta *meta;
    size_t nmeta, meta_cap;
    struct qtl_hmap map; /* tensor name -> index */
};

/* Parse the N header bytes at hdr (hdr[n] == '\0'), which st takes over as
 * st->strings. Fills tensors (header order), shapes, meta and map. */
int qtl__st_parse_header(qtl_st_t *st, char *hdr, size_t n);
/* Sort by offsets and apply the crate's offset/size/coverage rules. */
int qtl__st_validate(qtl_st_t *st);
void qtl__st_key(const void *ctx, uint32_t v, const char **key, size_t *len);

#endif
