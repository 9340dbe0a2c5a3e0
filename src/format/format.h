/* Internal: what the format layer (src/format/: safetensors files and
 * checkpoints) offers the layers above it beyond the public API. Not installed. */
#ifndef QTL_FORMAT_H
#define QTL_FORMAT_H

#include "internal.h"

/* ---- 2-D blocks of a tensor (st_read.c) ---- */
/* Rows [row0, +nrows) x columns [col0, +ncols) of a tensor viewed as [dim0,
 * product of the rest]: its bytes per row, the block's byte offset and bytes
 * within a row. QTL_ERR_RANGE (message in err) when outside or not on bytes. */
int qtl__st_block_ranges(const struct qtl_tensor_info *ti, uint64_t row0, uint64_t nrows, uint64_t col0,
                         uint64_t ncols, struct qtl_err *err, uint64_t *row_bytes, uint64_t *col_off,
                         uint64_t *col_bytes);

/* ---- checkpoints (ckpt.c) ---- */
/* Tensor i's name, owned by the checkpoint; NULL when out of range. */
const char *qtl__ckpt_tensor_name(const qtl_ckpt_t *ck, size_t i);

#endif
