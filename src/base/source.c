/* Byte sources: a file read with pread, and caller memory. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* pread of one span, retried until complete; on failure `why` says what and
 * QTL_ERR_IO is returned. Touches nothing shared, so spans may run in parallel. */
static int read_span(int fd, unsigned char *p, size_t len, uint64_t offset, char *why, size_t cap)
{
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        if (offset > (uint64_t)INT64_MAX) {
            snprintf(why, cap, "read offset %llu out of range", (unsigned long long)offset);
            return QTL_ERR_IO;
        }
        ssize_t r = pread(fd, p, chunk, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                snprintf(why, cap, "read of %zu bytes at offset %llu failed: %s", chunk, (unsigned long long)offset,
                         strerror(errno));
            else
                snprintf(why, cap, "unexpected end of file at offset %llu (the file shrank while open?)",
                         (unsigned long long)offset);
            return QTL_ERR_IO;
        }
        p += r;
        len -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

/* Large reads are split over the OpenMP threads (copying out of the page cache
 * and faulting in the destination are per-core work); the bytes are the same. */
static int file_read(void *ud, void *dst, size_t len, uint64_t offset)
{
    struct qtl_file_source *fs = ud;
    enum { MAX_SPANS = 16 };
    const size_t min_span = (size_t)4 << 20;
    int nspan = 1;
#ifdef _OPENMP
    nspan = omp_get_max_threads();
    nspan = nspan > MAX_SPANS ? MAX_SPANS : nspan;
    while (nspan > 1 && len / (size_t)nspan < min_span)
        nspan--;
#endif
    int rc[MAX_SPANS] = {0};
    char why[MAX_SPANS][160];
    size_t per = (len / (size_t)nspan + 4095) & ~(size_t)4095;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nspan) schedule(static) if (nspan > 1)
#endif
    for (int k = 0; k < nspan; k++) {
        size_t lo = (size_t)k * per < len ? (size_t)k * per : len, hi = lo + per < len ? lo + per : len;
        rc[k] = read_span(fs->fd, (unsigned char *)dst + lo, hi - lo, offset + lo, why[k], sizeof why[k]);
    }
    for (int k = 0; k < nspan; k++)
        if (rc[k])
            return qtl__fail(fs->err, rc[k], "%s: %s", fs->name, why[k]);
    return 0;
}

int qtl__file_source_open(struct qtl_file_source *fs, const char *path, struct qtl_source *src,
                          struct qtl_err *err)
{
    fs->fd = -1;
    fs->err = err;
    fs->name = path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qtl__fail(err, QTL_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return qtl__fail(err, QTL_ERR_OPEN, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qtl__fail(err, QTL_ERR_OPEN, "%s: not a regular file", path);
    }
    fs->fd = fd;
    src->read = file_read;
    src->ud = fs;
    src->size = (uint64_t)sb.st_size;
    return QTL_OK;
}

void qtl__file_source_close(struct qtl_file_source *fs)
{
    if (fs->fd >= 0)
        close(fs->fd);
    fs->fd = -1;
}

int qtl__memory_read(void *ud, void *dst, size_t len, uint64_t offset)
{
    memcpy(dst, (const unsigned char *)ud + offset, len);
    return 0;
}
