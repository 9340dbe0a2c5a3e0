/* Checkpoints: a directory of safetensors shards, with or without
 * model.safetensors.index.json (formats.md §1.7). The index is read at open;
 * each shard is opened lazily, once. */
#include "format.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct ck_shard {
    char *name; /* relative to dir */
    char *path;
    qtl_st_t *st;
    int tried;
    int scanned; /* its tensors were entered in the table by qtl_ckpt_check */
    struct qtl_err err; /* why it failed to open, once tried */
};

struct ck_tensor {
    char *name;
    size_t shard;
    size_t local;
    int resolved;
    int in_index;
};

struct qtl_ckpt {
    struct qtl_alloc al;
    struct qtl_allocator user_alloc;
    int has_user_alloc;
    uint64_t max_header;
    struct qtl_err err;
    char *dir;
    char *index_path;
    struct ck_shard *shards;
    size_t nshards, shards_cap;
    struct qtl_hmap shard_map;
    struct ck_tensor *tensors;
    size_t ntensors, tensors_cap;
    struct qtl_hmap map;
    struct qtl_findings diags;
};

static void tensor_key(const void *ctx, uint32_t v, const char **key, size_t *len)
{
    const struct qtl_ckpt *ck = ctx;
    *key = ck->tensors[v].name;
    *len = strlen(*key);
}

static void shard_key(const void *ctx, uint32_t v, const char **key, size_t *len)
{
    const struct qtl_ckpt *ck = ctx;
    *key = ck->shards[v].name;
    *len = strlen(*key);
}

static int oom(qtl_ckpt_t *ck) { return qtl__fail(&ck->err, QTL_ERR_NOMEM, "out of memory"); }

/* ---- tables ---- */
static int add_shard(qtl_ckpt_t *ck, const char *name, size_t *index)
{
    uint32_t v;
    if (qtl__hmap_find(&ck->shard_map, name, strlen(name), shard_key, ck, &v)) {
        *index = v;
        return 0;
    }
    if (qtl__grow(&ck->al, (void **)&ck->shards, &ck->shards_cap, ck->nshards + 1, sizeof *ck->shards))
        return oom(ck);
    struct ck_shard *s = &ck->shards[ck->nshards];
    memset(s, 0, sizeof *s);
    s->name = qtl__strdup(&ck->al, name);
    s->path = s->name ? qtl__asprintf(&ck->al, "%s/%s", ck->dir, name) : NULL;
    if (!s->path) {
        qtl__free(&ck->al, s->name);
        return oom(ck);
    }
    if (qtl__hmap_insert(&ck->shard_map, &ck->al, s->name, strlen(s->name), (uint32_t)ck->nshards, shard_key, ck,
                         NULL) < 0) {
        qtl__free(&ck->al, s->name);
        qtl__free(&ck->al, s->path);
        return oom(ck);
    }
    *index = ck->nshards++;
    return 0;
}

/* @return 0, 1 if the name exists already (*index = existing), or an error. */
static int add_tensor(qtl_ckpt_t *ck, const char *name, size_t shard, int in_index, size_t *index)
{
    uint32_t v;
    if (qtl__hmap_find(&ck->map, name, strlen(name), tensor_key, ck, &v)) {
        *index = v;
        return 1;
    }
    if (ck->ntensors >= UINT32_MAX - 1)
        return qtl__fail(&ck->err, QTL_ERR_INDEX, "too many tensors");
    if (qtl__grow(&ck->al, (void **)&ck->tensors, &ck->tensors_cap, ck->ntensors + 1, sizeof *ck->tensors))
        return oom(ck);
    struct ck_tensor *t = &ck->tensors[ck->ntensors];
    memset(t, 0, sizeof *t);
    t->name = qtl__strdup(&ck->al, name);
    if (!t->name)
        return oom(ck);
    t->shard = shard;
    t->in_index = in_index;
    if (qtl__hmap_insert(&ck->map, &ck->al, t->name, strlen(t->name), (uint32_t)ck->ntensors, tensor_key, ck,
                         NULL) < 0) {
        qtl__free(&ck->al, t->name);
        return oom(ck);
    }
    *index = ck->ntensors++;
    return 0;
}

/* Severity and ID come from the finding catalogue (the loader applies `allow` when it copies these). */
static int add_diag(qtl_ckpt_t *ck, enum qtl_finding f, int code, const char *file, const char *tensor,
                    const char *fmt, ...) QTL_PRINTF(6, 7);
static int add_diag(qtl_ckpt_t *ck, enum qtl_finding f, int code, const char *file, const char *tensor,
                    const char *fmt, ...)
{
    enum qtl_severity sev = qtl_finding_severity(f);
    char msg[QTL_MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sev == QTL_SEV_ERROR && ck->err.code == QTL_OK)
        qtl__fail(&ck->err, code, "%s", msg);
    if (qtl__findings_add(&ck->diags, &ck->al, sev, code, qtl_finding_id(f), file, tensor, msg))
        return oom(ck);
    return 0;
}

/* ---- shards ---- */
static int open_shard(qtl_ckpt_t *ck, size_t i)
{
    struct ck_shard *s = &ck->shards[i];
    if (!s->tried) {
        s->tried = 1;
        struct qtl_open_options o = {ck->has_user_alloc ? &ck->user_alloc : NULL, ck->max_header};
        struct stat sb;
        if (stat(s->path, &sb) != 0 && errno == ENOENT) {
            qtl__fail(&s->err, QTL_ERR_SHARD_MISSING, "%s: shard file is missing%s%s", s->path,
                      ck->index_path ? "; it is listed in " : "",
                      ck->index_path ? qtl__basename(ck->index_path) : "");
        } else if (qtl_st_open_file(s->path, &o, &s->st) != QTL_OK) {
            if (s->st)
                qtl__fail(&s->err, qtl_st_errcode(s->st), "%s", qtl_st_errmsg(s->st));
            else
                qtl__fail(&s->err, QTL_ERR_NOMEM, "%s: out of memory", s->path);
            qtl_st_close(s->st);
            s->st = NULL;
        }
    }
    return s->st ? 0 : qtl__err_copy(&ck->err, &s->err);
}

static int resolve(qtl_ckpt_t *ck, size_t i)
{
    if (i >= ck->ntensors)
        return qtl__fail(&ck->err, QTL_ERR_INVALID_ARGUMENT, "tensor index %zu out of range", i);
    struct ck_tensor *t = &ck->tensors[i];
    if (t->resolved)
        return 0;
    int rc = open_shard(ck, t->shard);
    if (rc)
        return rc;
    struct ck_shard *s = &ck->shards[t->shard];
    if (qtl_st_tensor_find(s->st, t->name, &t->local))
        return qtl__fail(&ck->err, QTL_ERR_TENSOR_MISSING,
                         "%s: tensor '%s': %s maps it to this shard, which does not hold it", s->path, t->name,
                         ck->index_path ? qtl__basename(ck->index_path) : "the index");
    t->resolved = 1;
    return 0;
}

/* ---- open ---- */

/* A relative path inside the checkpoint directory: no absolute path, no "..". */
static int valid_shard_name(const char *s)
{
    if (!*s || s[0] == '/')
        return 0;
    for (const char *p = s; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += n + (slash ? 1 : 0);
    }
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Add the distinct names of `names` (n entries, duplicates allowed) as shards, sorted. */
static int add_shards_sorted(qtl_ckpt_t *ck, const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        size_t idx;
        if ((i == 0 || strcmp(names[i], names[i - 1]) != 0) && add_shard(ck, names[i], &idx))
            return ck->err.code;
    }
    return 0;
}

static int load_index(qtl_ckpt_t *ck)
{
    json_error_t jerr;
    int oom_json;
    json_t *root = qtl__json_load_file(ck->index_path, &jerr, &oom_json);
    if (oom_json)
        return qtl__fail(&ck->err, QTL_ERR_NOMEM, "%s: out of memory parsing the index", ck->index_path);
    if (!root) {
        struct stat sb;
        if (stat(ck->index_path, &sb) != 0)
            return qtl__fail(&ck->err, QTL_ERR_OPEN, "%s: cannot open: %s", ck->index_path, strerror(errno));
        return qtl__fail(&ck->err, QTL_ERR_INDEX, "%s: line %d column %d: %s", ck->index_path, jerr.line,
                         jerr.column, jerr.text);
    }
    int rc = 0;
    const char **files = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    json_t *meta = json_object_get(root, "metadata");
    if (!json_is_object(root) || !json_is_object(wm)) {
        rc = qtl__fail(&ck->err, QTL_ERR_INDEX, "%s: no \"weight_map\" object", ck->index_path);
        goto out;
    }
    if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        rc = qtl__fail(&ck->err, QTL_ERR_INDEX, "%s: \"metadata\" is not an object", ck->index_path);
        goto out;
    }
    size_t nfiles = 0;
    files = qtl__calloc(&ck->al, json_object_size(wm) + 1, sizeof *files);
    if (!files) {
        rc = oom(ck);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *f = json_string_value(val);
        if (!f || !valid_shard_name(f)) {
            rc = qtl__fail(&ck->err, QTL_ERR_INDEX,
                           "%s: weight_map entry '%s' must name a shard file inside the checkpoint directory",
                           ck->index_path, key);
            goto out;
        }
        files[nfiles++] = f;
    }
    if ((rc = add_shards_sorted(ck, files, nfiles)))
        goto out;
    json_object_foreach(wm, key, val) {
        uint32_t sh;
        size_t idx;
        const char *f = json_string_value(val);
        if (!qtl__hmap_find(&ck->shard_map, f, strlen(f), shard_key, ck, &sh)) {
            rc = qtl__fail(&ck->err, QTL_ERR_INDEX, "internal: shard '%s' not registered", f);
            goto out;
        }
        if ((rc = add_tensor(ck, key, sh, 1, &idx)) < 0)
            goto out;
        rc = 0; /* jansson rejected duplicate keys already */
    }
out:
    qtl__free(&ck->al, files);
    json_decref(root);
    return rc;
}

/* Every *.safetensors file of the directory, sorted. */
static int list_dir(qtl_ckpt_t *ck)
{
    DIR *d = opendir(ck->dir);
    if (!d)
        return qtl__fail(&ck->err, QTL_ERR_OPEN, "%s: cannot open directory: %s", ck->dir, strerror(errno));
    const char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!qtl__ends_with(e->d_name, ".safetensors") || e->d_name[0] == '.')
            continue;
        char *copy = qtl__strdup(&ck->al, e->d_name);
        if (!copy || qtl__grow(&ck->al, (void **)&names, &cap, n + 1, sizeof *names)) {
            qtl__free(&ck->al, copy);
            rc = oom(ck);
            break;
        }
        names[n++] = copy;
    }
    closedir(d);
    if (!rc && n == 0)
        rc = qtl__fail(&ck->err, QTL_ERR_NO_CHECKPOINT,
                       "%s: no model.safetensors.index.json, model.safetensors or *.safetensors file here", ck->dir);
    if (!rc)
        rc = add_shards_sorted(ck, names, n);
    for (size_t i = 0; i < n; i++)
        qtl__free(&ck->al, (void *)(uintptr_t)names[i]);
    qtl__free(&ck->al, names);
    return rc;
}

static int ckpt_new(const struct qtl_open_options *opts, qtl_ckpt_t **out)
{
    struct qtl_alloc al;
    qtl__alloc_init(&al, opts ? opts->allocator : NULL);
    qtl_ckpt_t *ck = *out = qtl__calloc(&al, 1, sizeof *ck);
    if (!ck)
        return QTL_ERR_NOMEM;
    ck->al = al;
    if (opts && opts->allocator) {
        ck->user_alloc = *opts->allocator;
        ck->has_user_alloc = 1;
    }
    ck->max_header = opts ? opts->max_header_bytes : 0;
    if (qtl__hmap_init(&ck->map, &al, 64) || qtl__hmap_init(&ck->shard_map, &al, 8))
        return oom(ck);
    return 0;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int qtl_ckpt_open(const char *path, const struct qtl_open_options *opts, qtl_ckpt_t **out)
{
    int rc = ckpt_new(opts, out);
    if (rc)
        return rc;
    qtl_ckpt_t *ck = *out;
    struct stat sb;
    if (!path)
        return qtl__fail(&ck->err, QTL_ERR_INVALID_ARGUMENT, "NULL path");
    if (stat(path, &sb) != 0)
        return qtl__fail(&ck->err, QTL_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    const char *single = NULL;
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
            n--;
        ck->dir = qtl__strndup(&ck->al, path, n);
        if (!ck->dir)
            return oom(ck);
        /* As vLLM: the index when there is one, else every *.safetensors file. */
        char *idx = qtl__asprintf(&ck->al, "%s/model.safetensors.index.json", ck->dir);
        if (!idx)
            return oom(ck);
        if (file_exists(idx))
            ck->index_path = idx;
        else
            qtl__free(&ck->al, idx);
    } else {
        const char *base = qtl__basename(path);
        ck->dir = base == path ? qtl__strdup(&ck->al, ".") : qtl__strndup(&ck->al, path, (size_t)(base - path - 1));
        if (!ck->dir)
            return oom(ck);
        if (ck->dir[0] == '\0') { /* "/file" */
            qtl__free(&ck->al, ck->dir);
            if (!(ck->dir = qtl__strdup(&ck->al, "/")))
                return oom(ck);
        }
        if (qtl__ends_with(base, ".json")) {
            if (!(ck->index_path = qtl__strdup(&ck->al, path)))
                return oom(ck);
        } else {
            single = base;
        }
    }
    if (ck->index_path)
        return load_index(ck);
    if (single) {
        size_t idx;
        if (add_shard(ck, single, &idx))
            return ck->err.code;
        if ((rc = open_shard(ck, idx)))
            return rc;
        return qtl_ckpt_check(ck);
    }
    if ((rc = list_dir(ck)))
        return rc;
    /* Without an index, the shard headers are the table of contents: read them
     * now. A broken shard is a finding of qtl_ckpt_check, not an open failure. */
    qtl_ckpt_check(ck);
    qtl__err_clear(&ck->err);
    return QTL_OK;
}

void qtl_ckpt_close(qtl_ckpt_t *ck)
{
    if (!ck)
        return;
    struct qtl_alloc al = ck->al;
    for (size_t i = 0; i < ck->nshards; i++) {
        qtl_st_close(ck->shards[i].st);
        qtl__free(&al, ck->shards[i].name);
        qtl__free(&al, ck->shards[i].path);
    }
    for (size_t i = 0; i < ck->ntensors; i++)
        qtl__free(&al, ck->tensors[i].name);
    qtl__findings_free(&ck->diags, &al);
    qtl__free(&al, ck->shards);
    qtl__free(&al, ck->tensors);
    qtl__hmap_free(&ck->map, &al);
    qtl__hmap_free(&ck->shard_map, &al);
    qtl__free(&al, ck->dir);
    qtl__free(&al, ck->index_path);
    qtl__free(&al, ck);
}

/* ---- check ---- */
int qtl_ckpt_check(qtl_ckpt_t *ck)
{
    int first = QTL_OK;
    for (size_t i = 0; i < ck->diags.n; i++)
        if (ck->diags.v[i].sev == QTL_SEV_ERROR && first == QTL_OK)
            first = ck->diags.v[i].code;
    /* Already checked once: the findings are recorded. */
    for (size_t si = 0; si < ck->nshards; si++) {
        struct ck_shard *s = &ck->shards[si];
        if (s->scanned)
            continue;
        s->scanned = 1;
        int rc = open_shard(ck, si);
        if (rc == QTL_ERR_NOMEM)
            return rc;
        if (rc) {
            size_t affected = 0;
            const char *example = NULL;
            for (size_t t = 0; t < ck->ntensors; t++)
                if (ck->tensors[t].shard == si && affected++ == 0)
                    example = ck->tensors[t].name;
            if (add_diag(ck, rc == QTL_ERR_SHARD_MISSING ? QTL_FINDING_SHARD_MISSING : QTL_FINDING_SHARD_INVALID,
                         rc, s->path, NULL, "%s%s%zu tensor(s) of the index live in it%s%s%s", s->err.msg,
                         ck->index_path ? "; " : "", ck->index_path ? affected : 0,
                         example ? " (e.g. '" : "", example ? example : "", example ? "')" : "") == QTL_ERR_NOMEM)
                return QTL_ERR_NOMEM;
            first = first ? first : rc;
            continue;
        }
        for (size_t k = 0; k < qtl_st_tensor_count(s->st); k++) {
            struct qtl_tensor_info ti;
            qtl_st_tensor_at(s->st, k, &ti);
            size_t idx;
            int ins = add_tensor(ck, ti.name, si, 0, &idx);
            if (ins < 0)
                return ins;
            struct ck_tensor *t = &ck->tensors[idx];
            if (ins == 0) {
                t->local = k;
                t->resolved = 1;
                if (ck->index_path &&
                    add_diag(ck, QTL_FINDING_TENSOR_NOT_IN_INDEX, QTL_OK, s->path, ti.name,
                             "%s: tensor '%s' is stored in this shard but absent from %s (vLLM still loads it)",
                             s->path, ti.name, qtl__basename(ck->index_path)))
                    return QTL_ERR_NOMEM;
            } else if (t->shard == si) {
                t->local = k;
                t->resolved = 1;
            } else {
                const char *other = ck->shards[t->shard].name;
                if (add_diag(ck, QTL_FINDING_TENSOR_DUPLICATE, QTL_ERR_TENSOR_DUPLICATE, s->path, ti.name,
                             "%s: tensor '%s' is also stored in '%s'%s", s->path, ti.name, other,
                             t->in_index ? " (where the index maps it)" : ""))
                    return QTL_ERR_NOMEM;
                first = first ? first : QTL_ERR_TENSOR_DUPLICATE;
            }
        }
        for (size_t t = 0; t < ck->ntensors; t++) {
            struct ck_tensor *ct = &ck->tensors[t];
            if (ct->shard != si || ct->resolved)
                continue;
            if (add_diag(ck, QTL_FINDING_TENSOR_MISSING, QTL_ERR_TENSOR_MISSING, s->path, ct->name,
                         "%s: tensor '%s': %s maps it to this shard, which does not hold it", s->path, ct->name,
                         qtl__basename(ck->index_path)))
                return QTL_ERR_NOMEM;
            first = first ? first : QTL_ERR_TENSOR_MISSING;
        }
    }
    if (first == QTL_OK)
        qtl__err_clear(&ck->err);
    else
        for (size_t i = 0; i < ck->diags.n; i++)
            if (ck->diags.v[i].sev == QTL_SEV_ERROR) {
                qtl__fail(&ck->err, ck->diags.v[i].code, "%s", ck->diags.v[i].message);
                break;
            }
    return first;
}

/* ---- accessors ---- */
const char *qtl_ckpt_errmsg(const qtl_ckpt_t *ck) { return ck ? ck->err.msg : "out of memory"; }
int qtl_ckpt_errcode(const qtl_ckpt_t *ck) { return ck ? ck->err.code : QTL_ERR_NOMEM; }
const char *qtl_ckpt_dir(const qtl_ckpt_t *ck) { return ck->dir; }
const char *qtl_ckpt_index_path(const qtl_ckpt_t *ck) { return ck->index_path; }
size_t qtl_ckpt_shard_count(const qtl_ckpt_t *ck) { return ck->nshards; }
const char *qtl_ckpt_shard_name(const qtl_ckpt_t *ck, size_t i) { return i < ck->nshards ? ck->shards[i].name : NULL; }
size_t qtl_ckpt_tensor_count(const qtl_ckpt_t *ck) { return ck->ntensors; }
size_t qtl_ckpt_diag_count(const qtl_ckpt_t *ck) { return ck->diags.n; }

int qtl_ckpt_shard(qtl_ckpt_t *ck, size_t i, qtl_st_t **st)
{
    if (i >= ck->nshards)
        return qtl__fail(&ck->err, QTL_ERR_INVALID_ARGUMENT, "shard index %zu out of range", i);
    int rc = open_shard(ck, i);
    *st = ck->shards[i].st;
    return rc;
}

int qtl_ckpt_diag_at(const qtl_ckpt_t *ck, size_t i, struct qtl_diag *d)
{
    if (i >= ck->diags.n)
        return QTL_ERR_INVALID_ARGUMENT;
    qtl__findings_at(&ck->diags, i, d);
    return QTL_OK;
}

int qtl_ckpt_tensor_find(const qtl_ckpt_t *ck, const char *name, size_t *i)
{
    uint32_t v;
    if (!name || !qtl__hmap_find(&ck->map, name, strlen(name), tensor_key, ck, &v))
        return QTL_ERR_NOT_FOUND;
    *i = v;
    return QTL_OK;
}

int qtl_ckpt_tensor_name(const qtl_ckpt_t *ck, size_t i, char *buf, size_t cap)
{
    if (i >= ck->ntensors || !cap)
        return QTL_ERR_INVALID_ARGUMENT;
    snprintf(buf, cap, "%s", ck->tensors[i].name);
    return QTL_OK;
}

const char *qtl__ckpt_tensor_name(const qtl_ckpt_t *ck, size_t i)
{
    return i < ck->ntensors ? ck->tensors[i].name : NULL;
}

int qtl_ckpt_tensor_shard(const qtl_ckpt_t *ck, size_t i, size_t *shard)
{
    if (i >= ck->ntensors)
        return QTL_ERR_INVALID_ARGUMENT;
    *shard = ck->tensors[i].shard;
    return QTL_OK;
}

int qtl_ckpt_tensor_at(qtl_ckpt_t *ck, size_t i, struct qtl_tensor_info *info)
{
    int rc = resolve(ck, i);
    if (rc)
        return rc;
    return qtl_st_tensor_at(ck->shards[ck->tensors[i].shard].st, ck->tensors[i].local, info);
}

/* Run a read on the tensor's shard; its message becomes the checkpoint's. */
#define CKPT_READ(ck, i, call)                                                                                     \
    do {                                                                                                           \
        int rc_ = resolve(ck, i);                                                                                  \
        if (rc_)                                                                                                   \
            return rc_;                                                                                            \
        qtl_st_t *st = ck->shards[ck->tensors[i].shard].st;                                                        \
        size_t local = ck->tensors[i].local;                                                                       \
        rc_ = (call);                                                                                              \
        return rc_ ? qtl__fail(&ck->err, rc_, "%s", qtl_st_errmsg(st)) : 0;                                        \
    } while (0)

int qtl_ckpt_read(qtl_ckpt_t *ck, size_t i, const struct qtl_byte_range *ranges, size_t n, void *dst,
                  size_t dst_size)
{
    CKPT_READ(ck, i, qtl_st_read(st, local, ranges, n, dst, dst_size));
}

int qtl_ckpt_read_tensor(qtl_ckpt_t *ck, size_t i, void *dst, size_t dst_size)
{
    CKPT_READ(ck, i, qtl_st_read_tensor(st, local, dst, dst_size));
}

int qtl_ckpt_read_block(qtl_ckpt_t *ck, size_t i, uint64_t row0, uint64_t nrows, uint64_t col0, uint64_t ncols,
                        void *dst, size_t dst_size)
{
    CKPT_READ(ck, i, qtl_st_read_block(st, local, row0, nrows, col0, ncols, dst, dst_size));
}
