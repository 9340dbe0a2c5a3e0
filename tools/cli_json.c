/* JSON output of the CLI: every --json document is built with jansson from these
 * values and printed by cli_json_dump, never formatted by hand.
 *
 * Strings: jansson refuses bytes that are not UTF-8, and paths (argv, file names)
 * and messages that quote them need not be. The rule, for every string and object
 * key: a valid UTF-8 string is emitted as it is (jansson escapes '"', '\\' and
 * control characters, so it round-trips exactly); in one that is not, each maximal
 * ill-formed subsequence (Unicode 15, 3.9 "U+FFFD substitution of maximal
 * subparts", what Python's decode('utf-8', 'replace') does) becomes U+FFFD. */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(json_int_t) >= sizeof(int64_t), "json_int_t holds every 64-bit byte count");

/* Bytes of the well-formed UTF-8 sequence at s (n bytes left, n >= 1), or 0 with *bad
 * the length (>= 1) of its maximal ill-formed prefix. Unicode Table 3-7: no overlongs,
 * no surrogates, nothing above U+10FFFF (jansson's rule too). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k < len; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return len;
}

/* s when it is valid UTF-8 (*copy NULL), else a malloc'd copy with U+FFFD for each
 * maximal ill-formed subpart (*copy set, the caller frees it; NULL when out of memory). */
static const char *utf8_fixed(const char *s, size_t *len, char **copy)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, bad;
    *copy = NULL;
    *len = n;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (!k)
            break;
        i += k;
    }
    if (i == n)
        return s;
    char *o = malloc(3 * n + 1); /* one byte becomes at most three */
    if (!o)
        return NULL;
    size_t m = 0;
    for (i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (k) {
            memcpy(o + m, s + i, k);
            m += k, i += k;
        } else {
            memcpy(o + m, "\xEF\xBF\xBD", 3);
            m += 3, i += bad;
        }
    }
    o[m] = '\0';
    *len = m;
    return *copy = o;
}

json_t *cli_json_str(const char *s)
{
    if (!s)
        return json_null();
    char *copy;
    size_t n;
    const char *v = utf8_fixed(s, &n, &copy);
    json_t *j = v ? json_stringn(v, n) : NULL;
    free(copy);
    return j;
}

int cli_json_set(json_t *obj, const char *key, json_t *value)
{
    char *copy;
    size_t n;
    const char *k = utf8_fixed(key, &n, &copy);
    int rc = k ? json_object_set_new(obj, k, value) : (json_decref(value), -1);
    free(copy);
    return rc;
}

json_t *cli_json_u64(uint64_t v)
{
    /* Exact up to INT64_MAX (every file size and offset: off_t is signed); beyond it
     * jansson has no integer, so the nearest double. */
    return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

json_t *cli_json_seconds(double s)
{
    return json_real(isfinite(s) ? round(s * 1e6) / 1e6 : 0.0);
}

int cli_json_dump(json_t *doc, size_t flags)
{
    /* 15 significant digits print a microsecond-rounded time as its decimal (0.0025,
     * not 0.0025000000000000001); no other reals are emitted. */
    int rc = doc ? json_dumpf(doc, stdout, flags | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : -1;
    if (!doc)
        fputs("null", stdout); /* the surrounding document stays JSON */
    json_decref(doc);
    if (rc)
        fprintf(stderr, "qtl: out of memory building the JSON output\n");
    return rc ? -1 : 0;
}
