/* Helpers shared by the fuzz targets (not part of libqtl): splitting one input
 * into parts, a scratch directory on tmpfs created once per process, writing
 * the parts there as files, and an allocator with a budget that counts what
 * a handle holds. */
#ifndef QTL_FUZZ_UTIL_H
#define QTL_FUZZ_UTIL_H

#include "qtl.h"

#include <stddef.h>
#include <stdint.h>

/* Parts of an input are separated by these 4 bytes (0xFF never occurs in
 * UTF-8 JSON, so the JSON parts cannot contain it by accident). */
#define FZ_SEP "\xffQTL"
#define FZ_SEP_LEN 4

struct fz_part {
    const uint8_t *p;
    size_t n;
};

/* Cut data at the first max-1 separators; the last part keeps the rest.
 * @return the number of parts (1..max); missing ones are set empty. */
size_t fz_split(const uint8_t *data, size_t size, struct fz_part *parts, size_t max);

/* Once per process, before the library runs (fz_dir calls it): OpenMP's waiting policy. */
void fz_init(void);

/* The process's scratch directory, /dev/shm/qtl-fuzz-TAG-PID (else under
 * /tmp), created on the first call and removed with its files at exit. */
const char *fz_dir(const char *tag);
/* DIR/name := bytes (truncated first). Aborts when the file cannot be
 * written: that is the harness's environment, not the input. */
void fz_write(const char *dir, const char *name, const void *p, size_t n);
/* DIR/name := bytes, then `fill` more bytes cycling `pat` (0x3C when npat is 0). */
void fz_write_fill(const char *dir, const char *name, const void *p, size_t n, const void *pat, size_t npat,
                   size_t fill);
/* Remove DIR/name if it exists. */
void fz_remove(const char *dir, const char *name);

/* Guards: what a target does to keep fuzzing past an open library bug (each
 * is described where it is, with its reproducer under tests/fuzz/). With
 * QTL_FUZZ_UNGUARDED=1 in the environment every guard is off, the budget
 * below included, so the reproducers fail again. */
int fz_unguarded(void);
/* QTL_FUZZ_VERBOSE set: the targets say what each input did (on stderr). */
int fz_verbose(void);

/* Guard (open bug, tests/fuzz/fuzz_config/crash-regex-*): config.c hands compressed-tensors
 * "re:" patterns (targets, ignore) to glibc's regcomp as they are, and regcomp copies a
 * subexpression for every repetition: "a++++...+" or nested {m,n} take memory exponential
 * in the pattern's length, "a****...*" takes minutes in its epsilon closure, back-references
 * take exponential time in regexec. @return 1 when the bytes may hold such a pattern:
 * repetition factors ('+' 2, "{m,n}" max(m, n) + 1, a quantifier after a quantifier 4, after
 * ')' 2) multiplying past 2^16, or a back-reference ("\\1" in JSON). Off when unguarded. */
int fz_regex_bomb(const uint8_t *data, size_t size);

/* An allocator failing once `limit` bytes are held (no limit when unguarded);
 * `held` returns to 0 when every handle using it is closed (the targets check). */
struct fz_budget {
    size_t held, limit, peak;
    struct qtl_allocator a;
};
void fz_budget_init(struct fz_budget *b, size_t limit);

/* FNV-1a of n bytes continuing h (0: the offset basis). */
uint64_t fz_hash(uint64_t h, const void *p, size_t n);

/* Read-only use of n bytes (so ASan checks they are addressable). */
void fz_touch(const void *p, size_t n);
/* dst := n bytes of pool cycled from position *pos (zeros when npool is 0); *pos += n. */
void fz_cycle(unsigned char *dst, uint64_t n, const uint8_t *pool, size_t npool, size_t *pos);
/* Little-endian integers at data[i..] (zero past `size`). */
uint64_t fz_le(const uint8_t *data, size_t size, size_t i, unsigned nbytes);

#endif
