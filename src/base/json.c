/* jansson, for config files (config.json, index.json, hf_quant_config.json).
 *
 * jansson's allocator hooks are global, and on an allocation failure its lexer
 * can drop characters silently (a failed strbuffer append) or report a syntax
 * error. So qtl wraps whatever hooks are installed for the duration of a
 * parse, notes any failed allocation, and reports QTL_ERR_NOMEM for that parse
 * whatever jansson returned. Parses are serialized by a mutex. */
#include "internal.h"

#include <jansson.h>
#include <pthread.h>

static pthread_mutex_t json_lock = PTHREAD_MUTEX_INITIALIZER;
static json_malloc_t outer_malloc;
static json_free_t outer_free;
static int alloc_failed;

static void *watch_malloc(size_t n)
{
    void *p = outer_malloc(n);
    if (!p)
        alloc_failed = 1;
    return p;
}

static void watch_free(void *p) { outer_free(p); }

json_t *qtl__json_load_file(const char *path, json_error_t *err, int *oom)
{
    pthread_mutex_lock(&json_lock);
    json_get_alloc_funcs(&outer_malloc, &outer_free);
    int wrapped = outer_malloc != watch_malloc;
    if (wrapped)
        json_set_alloc_funcs(watch_malloc, watch_free);
    alloc_failed = 0;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, err);
    *oom = alloc_failed;
    if (wrapped)
        json_set_alloc_funcs(outer_malloc, outer_free);
    pthread_mutex_unlock(&json_lock);
    if (*oom) {
        json_decref(j);
        return NULL;
    }
    return j;
}
