/* Manifest validation: every field of plugin.json checked once, here, at the
 * edge (docs/manifest.md). Each refusal is PLUGD_E_INVALID_MANIFEST with
 * `manifest: "<field path>" <reason>`. */
#include "manifest.h"

#include "capabilities.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DESCRIPTION_MAX 1024
#define METHOD_NAME_MAX 255
#define PATH_REL_MAX    1023

void worker_limits_default(struct worker_limits *l)
{
    *l = (struct worker_limits){
        .call_timeout = 30.0,
        .handshake_timeout = 5.0,
        .init_timeout = 10.0,
        .health_interval = 10.0,
        .health_timeout = 2.0,
        .drain_timeout = 10.0,
        .term_timeout = 5.0,
        .crash_loop_restarts = 5,
        .crash_loop_window = 60.0,
        .memory_mb = 256,
        .nofile = 256,
        .nproc = 64,
        .cpu_percent = 100,
    };
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void manifest_free(struct manifest *m)
{
    if (m == NULL)
        return;
    free(m->dir);
    free(m->name);
    free(m->version);
    free(m->entrypoint);
    free(m->entrypoint_rel);
    for (size_t i = 0; i < m->n_capabilities; i++)
        free(m->capabilities[i]);
    free_list(m->methods, m->n_methods);
    free_list(m->files, m->n_files);
    free_list(m->env, m->n_env);
    json_decref(m->config);
    json_decref(m->json);
    free(m);
}

static int no_memory(struct plugd_error *err)
{
    return plugd_error_set(err, PLUGD_E_NO_MEMORY, "manifest: out of memory");
}

/* A required non-empty string field; `*out` is a copy the manifest owns. */
static int read_string(json_t *root, const char *field, char **out, struct plugd_error *err)
{
    json_t *v = json_object_get(root, field);
    if (v == NULL)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"%s\" is missing; it must be a non-empty string", field);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"%s\" must be a non-empty string", field);
    if ((*out = strdup(json_string_value(v))) == NULL)
        return no_memory(err);
    return 0;
}

/* Optional millisecond limit: absent keeps the default, present must be a
 * positive integer. */
static int read_ms(json_t *limits, const char *field, double *out, struct plugd_error *err)
{
    json_t *v = json_object_get(limits, field);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 86400000)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"limits.%s\" must be an integer of milliseconds "
                               "between 1 and 86400000",
                               field);
    *out = (double)json_integer_value(v) / 1000.0;
    return 0;
}

/* Optional integer limit in [min, max]; absent keeps the default. */
static int read_int(json_t *limits, const char *field, int min, int max, int *out,
                    struct plugd_error *err)
{
    json_t *v = json_object_get(limits, field);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"limits.%s\" must be an integer between %d and %d",
                               field, min, max);
    *out = (int)json_integer_value(v);
    return 0;
}

static const char *const known_fields[] = {"name",     "version",      "description", "entrypoint",
                                           "protocol", "capabilities", "limits",      "methods",
                                           "config",   "files",        "sandbox",     "env",
                                           NULL};
static const char *const known_limits[] = {"call_timeout_ms",
                                           "handshake_timeout_ms",
                                           "init_timeout_ms",
                                           "health_interval_ms",
                                           "health_timeout_ms",
                                           "shutdown_drain_ms",
                                           "shutdown_term_ms",
                                           "crash_loop_window_ms",
                                           "crash_loop_restarts",
                                           "memory_mb",
                                           "nofile",
                                           "nproc",
                                           "cpu_percent",
                                           "cpu_seconds",
                                           NULL};

/* Refuses a key of `obj` not in `known` (a typo must not pass silently). */
static int only_known_fields(json_t *obj, const char *prefix, const char *const *known,
                             struct plugd_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool is_known = false;
        for (size_t i = 0; known[i] && !is_known; i++)
            is_known = strcmp(key, known[i]) == 0;
        if (!is_known)
            return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                   "manifest: unknown field \"%s%.64s\"", prefix, key);
    }
    return 0;
}

static int read_limits(json_t *root, struct worker_limits *l, struct plugd_error *err)
{
    worker_limits_default(l);
    json_t *limits = json_object_get(root, "limits");
    if (limits == NULL)
        return 0;
    if (!json_is_object(limits))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"limits\" must be an object");
    if (only_known_fields(limits, "limits.", known_limits, err) < 0)
        return -1;
    if (read_ms(limits, "call_timeout_ms", &l->call_timeout, err) < 0 ||
        read_ms(limits, "handshake_timeout_ms", &l->handshake_timeout, err) < 0 ||
        read_ms(limits, "init_timeout_ms", &l->init_timeout, err) < 0 ||
        read_ms(limits, "health_interval_ms", &l->health_interval, err) < 0 ||
        read_ms(limits, "health_timeout_ms", &l->health_timeout, err) < 0 ||
        read_ms(limits, "shutdown_drain_ms", &l->drain_timeout, err) < 0 ||
        read_ms(limits, "shutdown_term_ms", &l->term_timeout, err) < 0 ||
        read_ms(limits, "crash_loop_window_ms", &l->crash_loop_window, err) < 0)
        return -1;
    if (read_int(limits, "crash_loop_restarts", 1, 1000, &l->crash_loop_restarts, err) < 0 ||
        read_int(limits, "memory_mb", 16, 65536, &l->memory_mb, err) < 0 ||
        read_int(limits, "nofile", 16, 65536, &l->nofile, err) < 0 ||
        read_int(limits, "nproc", 1, 4096, &l->nproc, err) < 0 ||
        read_int(limits, "cpu_percent", 1, 800, &l->cpu_percent, err) < 0 ||
        read_int(limits, "cpu_seconds", 1, 31536000, &l->cpu_seconds, err) < 0)
        return -1;
    return 0;
}

/* "sandbox": {"on_violation": "kill" | "eperm"} */
static int read_sandbox(json_t *root, struct manifest *m, struct plugd_error *err)
{
    static const char *const known[] = {"on_violation", NULL};
    json_t *sandbox = json_object_get(root, "sandbox");
    if (sandbox == NULL)
        return 0;
    if (!json_is_object(sandbox))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"sandbox\" must be an object");
    if (only_known_fields(sandbox, "sandbox.", known, err) < 0)
        return -1;
    json_t *action = json_object_get(sandbox, "on_violation");
    if (action == NULL)
        return 0;
    const char *s = json_string_value(action);
    if (s == NULL || (strcmp(s, "kill") != 0 && strcmp(s, "eperm") != 0))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"sandbox.on_violation\" must be \"kill\" or \"eperm\"");
    m->is_violation_eperm = strcmp(s, "eperm") == 0;
    return 0;
}

/* "events.emit, events.subscribe, ..." from the capability table: whole
 * names only, "..." where the rest does not fit. */
static void known_capabilities(char *buf, size_t size)
{
    size_t n, used = 0;
    const struct capability *table = cap_table(&n);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sep = i ? ", " : "";
        if (used + strlen(sep) + strlen(table[i].name) + strlen(", ...") >= size) {
            snprintf(buf + used, size - used, "%s...", sep);
            return;
        }
        used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, table[i].name);
    }
}

static int read_capabilities(json_t *root, struct manifest *m, struct plugd_error *err)
{
    json_t *caps = json_object_get(root, "capabilities");
    if (caps == NULL)
        return 0;
    if (!json_is_array(caps) || json_array_size(caps) > MANIFEST_MAX_CAPS)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"capabilities\" must be an array of at most %d strings",
                               MANIFEST_MAX_CAPS);
    size_t i;
    json_t *v;
    json_array_foreach(caps, i, v)
    {
        if (!json_is_string(v))
            return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                   "manifest: \"capabilities[%zu]\" is not a string", i);
        const char *name = json_string_value(v);
        if (cap_find(name) == NULL) {
            char known[160];
            known_capabilities(known, sizeof(known));
            return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                   "manifest: \"capabilities[%zu]\": \"%.64s\" is not a known "
                                   "capability (known: %s)",
                                   i, name, known);
        }
        for (size_t j = 0; j < m->n_capabilities; j++)
            if (strcmp(m->capabilities[j], name) == 0)
                return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                       "manifest: \"capabilities[%zu]\": \"%s\" is listed twice", i,
                                       name);
        if ((m->capabilities[m->n_capabilities] = strdup(name)) == NULL)
            return no_memory(err);
        m->n_capabilities++;
    }
    return 0;
}

/* True when relative path `rel` has no ".." component. */
static bool is_contained(const char *rel)
{
    for (const char *p = rel; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += len;
        p += *p == '/';
    }
    return true;
}

/* A relative path inside the package folder naming a regular file. A
 * symlink may point anywhere: install copies the file it resolves to, so the
 * installed package is self-contained (docs/manifest.md). `*abs` (the caller
 * frees it, also on failure) is DIR/REL. */
static int check_package_path(const char *field, const char *rel, const struct manifest *m,
                              char **abs, struct plugd_error *err)
{
    if (rel[0] == '/' || !is_contained(rel) || strlen(rel) > PATH_REL_MAX)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"%s\": \"%.64s\" must be a relative path inside the "
                               "plugin folder",
                               field, rel);
    if (asprintf(abs, "%s/%s", m->dir, rel) < 0) {
        *abs = NULL;
        return no_memory(err);
    }
    struct stat st;
    if (stat(*abs, &st) != 0 || !S_ISREG(st.st_mode))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: \"%s\": %s is not a file",
                               field, *abs);
    return 0;
}

static int read_entrypoint(json_t *root, struct manifest *m, struct plugd_error *err)
{
    if (read_string(root, "entrypoint", &m->entrypoint_rel, err) < 0 ||
        check_package_path("entrypoint", m->entrypoint_rel, m, &m->entrypoint, err) < 0)
        return -1;
    struct stat st;
    if (stat(m->entrypoint, &st) != 0 || (st.st_mode & 0111) == 0 ||
        access(m->entrypoint, X_OK) != 0)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"entrypoint\": %s is not executable", m->entrypoint);
    return 0;
}

/* An optional array of at most `max` unique strings, each checked by
 * `is_valid` (`rule` says what it wants). `*out` is an array the manifest
 * owns, NULL when the list is absent or empty. */
static int read_string_list(json_t *root, const char *field, size_t max,
                            bool (*is_valid)(const char *), const char *rule, char ***out,
                            size_t *n, struct plugd_error *err)
{
    json_t *list = json_object_get(root, field);
    if (list == NULL)
        return 0;
    if (!json_is_array(list) || json_array_size(list) > max)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"%s\" must be an array of at most %zu strings", field,
                               max);
    if (json_array_size(list) == 0)
        return 0;
    if ((*out = calloc(json_array_size(list), sizeof(**out))) == NULL)
        return no_memory(err);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL)
            return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                   "manifest: \"%s[%zu]\" is not a string", field, i);
        if (!is_valid(s))
            return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                   "manifest: \"%s[%zu]\": \"%.64s\" %s", field, i, s, rule);
        for (size_t j = 0; j < *n; j++)
            if (strcmp((*out)[j], s) == 0)
                return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                                       "manifest: \"%s[%zu]\": \"%.64s\" is listed twice", field, i,
                                       s);
        if (((*out)[*n] = strdup(s)) == NULL)
            return no_memory(err);
        (*n)++;
    }
    return 0;
}

static bool is_method_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > METHOD_NAME_MAX || strncmp(s, "plugd.", 6) == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static bool is_nonempty(const char *s)
{
    return s[0] != 0;
}

/* [A-Za-z_][A-Za-z0-9_]*, at most 64 characters, and none that plugd sets
 * itself (docs/manifest.md "env") */
static bool is_env_name(const char *s)
{
    static const char *const own[] = {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ"};
    size_t n = strlen(s);
    if (n == 0 || n > 64 || isdigit((unsigned char)s[0]) || strncmp(s, "PLUGD_", 6) == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strcmp(s, own[i]) == 0)
            return false;
    return true;
}

static int read_files(json_t *root, struct manifest *m, struct plugd_error *err)
{
    if (read_string_list(root, "files", MANIFEST_MAX_FILES, is_nonempty, "must not be empty",
                         &m->files, &m->n_files, err) < 0)
        return -1;
    for (size_t i = 0; i < m->n_files; i++) {
        char field[32], *abs = NULL;
        snprintf(field, sizeof(field), "files[%zu]", i);
        int rc = check_package_path(field, m->files[i], m, &abs, err);
        free(abs);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* [a-z0-9][a-z0-9-]{0,62} */
bool manifest_is_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int read_identity(json_t *root, struct manifest *m, struct plugd_error *err)
{
    if (read_string(root, "name", &m->name, err) < 0)
        return -1;
    if (!manifest_is_valid_name(m->name))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"name\": \"%.64s\" must be 1 to 63 characters of "
                               "a-z, 0-9 and '-', not starting with '-'",
                               m->name);
    if (read_string(root, "version", &m->version, err) < 0)
        return -1;
    if (!semver_is_valid(m->version))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"version\": \"%.64s\" is not a semantic version "
                               "(MAJOR.MINOR.PATCH, semver.org)",
                               m->version);
    json_t *description = json_object_get(root, "description");
    if (description != NULL &&
        (!json_is_string(description) || json_string_length(description) > DESCRIPTION_MAX))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"description\" must be a string of at most %d bytes",
                               DESCRIPTION_MAX);
    json_t *protocol = json_object_get(root, "protocol");
    if (!json_is_integer(protocol))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"protocol\" %s; it must be an integer",
                               protocol == NULL ? "is missing" : "is not an integer");
    json_int_t p = json_integer_value(protocol);
    if (p < PLUGD_PROTOCOL_MIN || p > PLUGD_PROTOCOL_CURRENT)
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"protocol\": %lld is not supported (this plugd "
                               "speaks %d to %d)",
                               (long long)p, PLUGD_PROTOCOL_MIN, PLUGD_PROTOCOL_CURRENT);
    m->protocol = (int)p;
    return 0;
}

static int read_config(json_t *root, struct manifest *m, struct plugd_error *err)
{
    json_t *config = json_object_get(root, "config");
    if (config != NULL && !json_is_object(config))
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST,
                               "manifest: \"config\" must be an object");
    m->config = config ? json_deep_copy(config) : json_object();
    return m->config == NULL ? no_memory(err) : 0;
}

bool manifest_has_capability(const struct manifest *m, const char *capability)
{
    for (size_t i = 0; i < m->n_capabilities; i++)
        if (strcmp(m->capabilities[i], capability) == 0)
            return true;
    return false;
}

json_t *manifest_config_with(const struct manifest *m, const json_t *operator_config)
{
    json_t *defaults = json_object_get(m->json, "config");
    json_t *effective = json_is_object(defaults) ? json_deep_copy(defaults) : json_object();
    if (effective != NULL && json_is_object(operator_config) &&
        json_object_update(effective, (json_t *)operator_config) < 0) {
        json_decref(effective);
        return NULL;
    }
    return effective;
}

struct manifest *manifest_parse(json_t *root, const char *dir, struct plugd_error *err)
{
    struct manifest *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        no_memory(err);
        return NULL;
    }
    if ((m->dir = realpath(dir, NULL)) == NULL) {
        plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: plugin folder %s: %s", dir,
                        strerror(errno));
        goto fail;
    }
    if (!json_is_object(root)) {
        plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: not a JSON object");
        goto fail;
    }
    m->json = json_incref(root);
    if (only_known_fields(root, "", known_fields, err) < 0 || read_identity(root, m, err) < 0 ||
        read_entrypoint(root, m, err) < 0 || read_capabilities(root, m, err) < 0 ||
        read_limits(root, &m->limits, err) < 0 || read_sandbox(root, m, err) < 0 ||
        read_string_list(root, "methods", MANIFEST_MAX_METHODS, is_method_name,
                         "must be 1 to 255 characters of A-Z a-z 0-9 _ . - and not start with "
                         "\"plugd.\"",
                         &m->methods, &m->n_methods, err) < 0 ||
        read_config(root, m, err) < 0 || read_files(root, m, err) < 0 ||
        read_string_list(root, "env", MANIFEST_MAX_ENV, is_env_name,
                         "is not a variable name (A-Z a-z 0-9 _, not starting with a digit, at "
                         "most 64) or is one plugd sets itself (PATH, HOME, TMPDIR, LANG, LC_ALL, "
                         "TZ, PLUGD_*)",
                         &m->env, &m->n_env, err) < 0)
        goto fail;
    return m;

fail:
    manifest_free(m);
    return NULL;
}

struct manifest *manifest_load(const char *dir, struct plugd_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/plugin.json", dir) >= (int)sizeof(path)) {
        plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: plugin folder path too long");
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line < 1) /* not read at all: jansson says why */
            plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: %s", jerr.text);
        else
            plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "manifest: %s: %s (line %d)", path,
                            jerr.text, jerr.line);
        return NULL;
    }
    struct manifest *m = manifest_parse(root, dir, err);
    json_decref(root);
    return m;
}
