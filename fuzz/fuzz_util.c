/* Helpers shared by the fuzz targets; see fuzz_util.h. */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t fz_split(const uint8_t *data, size_t size, struct fz_part *parts, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i < max; i++)
        parts[i] = (struct fz_part){NULL, 0};
    /* memchr for the first byte (libFuzzer's memcmp hook at every byte costs a tenth of a run) */
    for (size_t i = 0; n + 1 < max && size >= FZ_SEP_LEN && i <= size - FZ_SEP_LEN;) {
        const uint8_t *hit = memchr(data + i, FZ_SEP[0], size - FZ_SEP_LEN + 1 - i);
        if (!hit)
            break;
        i = (size_t)(hit - data);
        if (hit[1] == (uint8_t)FZ_SEP[1] && hit[2] == (uint8_t)FZ_SEP[2] && hit[3] == (uint8_t)FZ_SEP[3]) {
            parts[n++] = (struct fz_part){data + start, i - start};
            start = i + FZ_SEP_LEN;
            i = start;
        } else {
            i++;
        }
    }
    parts[n++] = (struct fz_part){size ? data + start : NULL, size - start};
    return n;
}

static char scratch[512];

static void remove_scratch(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[1024];
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", scratch, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(scratch);
}

void fz_init(void)
{
    /* OpenMP workers sleep between runs instead of spinning on the other core */
    setenv("KMP_BLOCKTIME", "0", 0);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}

const char *fz_dir(const char *tag)
{
    if (scratch[0])
        return scratch;
    fz_init();
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/qtl-fuzz-%s-%ld", base, tag, (long)getpid());
    if (mkdir(scratch, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", scratch, strerror(errno));
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

static void write_all(int fd, const void *p, size_t n, const char *path)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
            abort();
        }
        b += w;
        n -= (size_t)w;
    }
}

/* What each file holds (a hash of the arguments that wrote it), to skip rewriting it unchanged:
 * a mutation usually changes one of the parts. */
#define NCACHE 32
static struct {
    char name[128];
    uint64_t hash;
} written[NCACHE];

uint64_t fz_hash(uint64_t h, const void *p, size_t n)
{
    if (!h)
        h = 0xcbf29ce484222325ull;
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int cached(const char *name, uint64_t hash, int update)
{
    size_t free_slot = NCACHE;
    for (size_t i = 0; i < NCACHE; i++) {
        if (!strcmp(written[i].name, name)) {
            int same = written[i].hash == hash;
            if (update)
                written[i].hash = hash;
            return same;
        }
        if (!written[i].name[0] && free_slot == NCACHE)
            free_slot = i;
    }
    if (update && free_slot < NCACHE && strlen(name) < sizeof written[0].name) {
        snprintf(written[free_slot].name, sizeof written[0].name, "%s", name);
        written[free_slot].hash = hash;
    }
    return 0;
}

static void forget(const char *name)
{
    for (size_t i = 0; i < NCACHE; i++)
        if (!strcmp(written[i].name, name))
            written[i].name[0] = '\0';
}

void fz_write_fill(const char *dir, const char *name, const void *p, size_t n, const void *pat, size_t npat,
                   size_t fill)
{
    uint64_t h = fz_hash(0, &n, sizeof n);
    h = fz_hash(fz_hash(fz_hash(h, p, n), &npat, sizeof npat), pat, npat);
    h = fz_hash(h, &fill, sizeof fill);
    if (cached(name, h, 0))
        return;
    forget(name); /* until it is written */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
        abort();
    }
    if (n)
        write_all(fd, p, n, path);
    static const unsigned char dflt = 0x3C; /* 0x3C3C3C3C, 0x3C3C, e4m3 0x3C: small positive scales */
    const unsigned char *pp = npat ? pat : &dflt;
    size_t np = npat ? npat : 1;
    unsigned char buf[8192];
    if (np > sizeof buf) { /* a long pattern: its own bytes, cycled */
        for (size_t pos = 0; pos < fill;) {
            size_t k = fill - pos < np ? fill - pos : np;
            write_all(fd, pp, k, path);
            pos += k;
        }
    } else if (fill) { /* whole patterns per chunk, so the cycle continues across chunks */
        size_t chunk = sizeof buf / np * np;
        if (np == 1)
            memset(buf, pp[0], chunk);
        else
            for (size_t k = 0; k < chunk; k += np)
                memcpy(buf + k, pp, np);
        for (size_t pos = 0; pos < fill;) {
            size_t k = fill - pos < chunk ? fill - pos : chunk;
            write_all(fd, buf, k, path);
            pos += k;
        }
    }
    close(fd);
    cached(name, h, 1);
}

void fz_write(const char *dir, const char *name, const void *p, size_t n) { fz_write_fill(dir, name, p, n, NULL, 0, 0); }

void fz_remove(const char *dir, const char *name)
{
    forget(name);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "fuzz: cannot remove %s: %s\n", path, strerror(errno));
        abort();
    }
}

/* Large blocks (the executor's 8 MiB staging buffers) are kept for the next
 * allocation of the same size: under ASan a fresh one costs its shadow's page
 * faults every run, most of a run's time. Same size only, so ASan still
 * sees a read past the end. */
#define BIG ((size_t)1 << 20)
static void *big_cache[2];
static size_t big_size[2];

static void free_big_cache(void)
{
    for (int i = 0; i < 2; i++) {
        free(big_cache[i]);
        big_cache[i] = NULL;
    }
}

static void *budget_alloc(void *opaque, size_t size)
{
    struct fz_budget *b = opaque;
    if (size > b->limit - b->held)
        return NULL;
    void *p = NULL;
    for (int i = 0; size >= BIG && i < 2 && !p; i++)
        if (big_cache[i] && big_size[i] == size) {
            p = big_cache[i];
            big_cache[i] = NULL;
        }
    if (!p)
        p = malloc(size);
    if (p) {
        b->held += malloc_usable_size(p);
        if (b->held > b->peak)
            b->peak = b->held;
    }
    return p;
}

static void budget_free(void *opaque, void *p)
{
    struct fz_budget *b = opaque;
    if (!p)
        return;
    size_t n = malloc_usable_size(p);
    if (n > b->held)
        abort(); /* freed through the allocator what it did not allocate */
    b->held -= n;
    static int registered;
    for (int i = 0; n >= BIG && i < 2; i++)
        if (!big_cache[i]) {
            if (!registered++)
                atexit(free_big_cache);
            big_cache[i] = p;
            big_size[i] = n;
            return;
        }
    free(p);
}

int fz_unguarded(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("QTL_FUZZ_UNGUARDED");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

int fz_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("QTL_FUZZ_VERBOSE") != NULL;
    return v;
}

void fz_budget_init(struct fz_budget *b, size_t limit)
{
    b->held = b->peak = 0;
    b->limit = fz_unguarded() ? SIZE_MAX : limit;
    b->a = (struct qtl_allocator){budget_alloc, budget_free, b};
}

int fz_regex_bomb(const uint8_t *data, size_t size)
{
    if (fz_unguarded())
        return 0;
    double product = 1;
    for (size_t i = 0; i < size; i++) {
        int quant = data[i] == '*' || data[i] == '+' || data[i] == '?' || data[i] == '{';
        if (quant && i && (data[i - 1] == '*' || data[i - 1] == '+' || data[i - 1] == '?' || data[i - 1] == '}'))
            product *= 4; /* a repeated repetition ("a**", "a+*", "a{2}*") */
        if (quant && i && data[i - 1] == ')')
            product *= 2; /* a repeated group */
        if (data[i] == '+') {
            product *= 2;
        } else if (data[i] == '{' && i + 1 < size && data[i + 1] >= '0' && data[i + 1] <= '9') {
            double m = 0, best = 0;
            for (size_t j = i + 1; j < size && j < i + 24 && data[j] != '}'; j++) {
                if (data[j] >= '0' && data[j] <= '9') {
                    m = m * 10 + (data[j] - '0');
                    best = m > best ? m : best;
                } else {
                    m = 0;
                }
            }
            product *= best + 1;
        } else if (data[i] == '\\' && i + 2 < size && data[i + 1] == '\\' && data[i + 2] >= '1' &&
                   data[i + 2] <= '9') {
            return 1; /* "\\1" in JSON: a back-reference */
        } else if (data[i] == '\\' && i + 5 < size && data[i + 1] == 'u' && data[i + 2] == '0' && data[i + 3] == '0' &&
                   data[i + 4] && strchr("257", data[i + 4]) && data[i + 5] &&
                   strchr("bBcC", data[i + 5])) {
            return 1; /* an escaped '+', '{' or '\\' */
        }
        if (product > 65536)
            return 1;
    }
    return 0;
}

void fz_touch(const void *p, size_t n)
{
    const volatile unsigned char *b = p;
    unsigned char x = 0;
    for (size_t i = 0; i < n; i += 64)
        x ^= b[i];
    if (n)
        x ^= b[n - 1];
    (void)x;
}

void fz_cycle(unsigned char *dst, uint64_t n, const uint8_t *pool, size_t npool, size_t *pos)
{
    if (!npool) {
        memset(dst, 0, (size_t)n);
        return;
    }
    size_t at = *pos % npool;
    for (uint64_t done = 0; done < n;) {
        size_t k = npool - at < n - done ? npool - at : (size_t)(n - done);
        memcpy(dst + done, pool + at, k);
        done += k;
        at = 0;
    }
    *pos += (size_t)n;
}

uint64_t fz_le(const uint8_t *data, size_t size, size_t i, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < nbytes; k++)
        if (i + k < size)
            v |= (uint64_t)data[i + k] << (8 * k);
    return v;
}
