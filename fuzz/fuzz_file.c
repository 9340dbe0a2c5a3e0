/* Fuzz target: bytes → open + validate + read every tensor (whole, by rows,
 * by a column block) + look every name and metadata key up. Must never crash,
 * leak or read out of bounds, whatever the bytes. */
#include "qtl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qtl_st_t *st = NULL;
    struct qtl_open_options o = {NULL, 1u << 20};
    if (qtl_st_open_memory(data, size, "fuzz.safetensors", &o, &st) == QTL_OK) {
        unsigned char *buf = malloc(size + 1);
        for (size_t i = 0; buf && i < qtl_st_tensor_count(st); i++) {
            struct qtl_tensor_info ti;
            size_t j;
            if (qtl_st_tensor_at(st, i, &ti) || qtl_st_tensor_find(st, ti.name, &j) || j != i)
                abort(); /* a valid file must describe and find each of its tensors */
            if (ti.nbytes > size || qtl_st_read_tensor(st, i, buf, (size_t)ti.nbytes))
                abort(); /* coverage was validated: every tensor lies inside the bytes */
            uint64_t rows = ti.ndim ? ti.shape[0] : 1;
            if (rows > 1 && ti.nbytes % rows == 0)
                (void)qtl_st_read_block(st, i, rows / 2, rows - rows / 2, 0, ti.numel / rows, buf,
                                        (size_t)(ti.nbytes - (ti.nbytes / rows) * (rows / 2)));
            if (ti.ndim >= 2 && ti.shape[1] > 1 && rows)
                (void)qtl_st_read_block(st, i, 0, rows, 1, 1, buf, (size_t)(rows * qtl_dtype_bits(ti.dtype) / 8));
        }
        for (size_t i = 0; i < qtl_st_metadata_count(st); i++) {
            const char *k, *v;
            if (qtl_st_metadata_at(st, i, &k, &v) || qtl_st_metadata_get(st, k) == NULL)
                abort();
        }
        free(buf);
    }
    qtl_st_close(st);
    return 0;
}
