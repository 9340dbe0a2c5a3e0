/* Byte sources: a file read with pread, and caller memory. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_read(void *ud, void *dst, size_t len, uint64_t offset)
{
    struct qtl_file_source *fs = ud;
    unsigned char *p = dst;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        if (offset > (uint64_t)INT64_MAX)
            return qtl__fail(fs->err, QTL_ERR_IO, "%s: read offset %llu out of range", fs->name,
                             (unsigned long long)offset);
        ssize_t r = pread(fs->fd, p, chunk, (off_t)offset);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return qtl__fail(fs->err, QTL_ERR_IO, "%s: read of %zu bytes at offset %llu failed: %s", fs->name,
                             chunk, (unsigned long long)offset, strerror(errno));
        }
        if (r == 0)
            return qtl__fail(fs->err, QTL_ERR_IO,
                             "%s: unexpected end of file at offset %llu (the file shrank while open?)", fs->name,
                             (unsigned long long)offset);
        p += r;
        len -= (size_t)r;
        offset += (uint64_t)r;
    }
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
