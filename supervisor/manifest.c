#include "manifest.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    };
}

void manifest_free(struct manifest *m)
{
    if (m == NULL)
        return;
    free(m->dir);
    free(m->name);
    free(m->version);
    free(m->entrypoint);
    for (size_t i = 0; i < m->n_capabilities; i++)
        free(m->capabilities[i]);
    json_decref(m->config);
    free(m);
}

static int read_string(json_t *root, const char *field, char **out, struct plugd_error *err)
{
    json_t *v = json_object_get(root, field);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "manifest: \"%s\" is %s; it must be a non-empty string", field,
                               v == NULL ? "missing" : "not a non-empty string");
    *out = strdup(json_string_value(v));
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
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "manifest: \"limits.%s\" must be an integer of milliseconds "
                               "between 1 and 86400000",
                               field);
    *out = (double)json_integer_value(v) / 1000.0;
    return 0;
}

static int read_limits(json_t *root, struct worker_limits *l, struct plugd_error *err)
{
    worker_limits_default(l);
    json_t *limits = json_object_get(root, "limits");
    if (limits == NULL)
        return 0;
    if (!json_is_object(limits))
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "manifest: \"limits\" must be an object");
    if (read_ms(limits, "call_timeout_ms", &l->call_timeout, err) < 0 ||
        read_ms(limits, "handshake_timeout_ms", &l->handshake_timeout, err) < 0 ||
        read_ms(limits, "init_timeout_ms", &l->init_timeout, err) < 0 ||
        read_ms(limits, "health_interval_ms", &l->health_interval, err) < 0 ||
        read_ms(limits, "health_timeout_ms", &l->health_timeout, err) < 0 ||
        read_ms(limits, "shutdown_drain_ms", &l->drain_timeout, err) < 0 ||
        read_ms(limits, "shutdown_term_ms", &l->term_timeout, err) < 0 ||
        read_ms(limits, "crash_loop_window_ms", &l->crash_loop_window, err) < 0)
        return -1;
    json_t *restarts = json_object_get(limits, "crash_loop_restarts");
    if (restarts != NULL) {
        if (!json_is_integer(restarts) || json_integer_value(restarts) < 1 ||
            json_integer_value(restarts) > 1000)
            return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                                   "manifest: \"limits.crash_loop_restarts\" must be an integer "
                                   "between 1 and 1000");
        l->crash_loop_restarts = (int)json_integer_value(restarts);
    }
    return 0;
}

static int read_capabilities(json_t *root, struct manifest *m, struct plugd_error *err)
{
    json_t *caps = json_object_get(root, "capabilities");
    if (caps == NULL)
        return 0;
    if (!json_is_array(caps) || json_array_size(caps) > MANIFEST_MAX_CAPS)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "manifest: \"capabilities\" must be an array of at most %d strings",
                               MANIFEST_MAX_CAPS);
    size_t i;
    json_t *v;
    json_array_foreach(caps, i, v)
    {
        if (!json_is_string(v))
            return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                                   "manifest: \"capabilities[%zu]\" is not a string", i);
        m->capabilities[m->n_capabilities++] = strdup(json_string_value(v));
    }
    return 0;
}

static int read_entrypoint(json_t *root, struct manifest *m, struct plugd_error *err)
{
    char *rel;
    if (read_string(root, "entrypoint", &rel, err) < 0)
        return -1;
    int n = asprintf(&m->entrypoint, "%s/%s", m->dir, rel);
    free(rel);
    if (n < 0) {
        m->entrypoint = NULL;
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "manifest: no memory");
    }
    if (access(m->entrypoint, X_OK) != 0)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "manifest: \"entrypoint\": %s is not an executable file",
                               m->entrypoint);
    return 0;
}

struct manifest *manifest_load(const char *dir, struct plugd_error *err)
{
    struct manifest *m = calloc(1, sizeof(*m));
    json_t *root = NULL;
    char path[PATH_MAX];
    if (m == NULL || (m->dir = realpath(dir, NULL)) == NULL) {
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "plugin folder %s cannot be opened", dir);
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/plugin.json", m->dir);
    json_error_t jerr;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "manifest: %s: %s", path,
                        root ? "not a JSON object" : jerr.text);
        goto fail;
    }
    if (read_string(root, "name", &m->name, err) < 0 ||
        read_string(root, "version", &m->version, err) < 0 || read_entrypoint(root, m, err) < 0 ||
        read_capabilities(root, m, err) < 0 || read_limits(root, &m->limits, err) < 0)
        goto fail;
    json_t *protocol = json_object_get(root, "protocol");
    if (!json_is_integer(protocol)) {
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "manifest: \"protocol\" must be an integer");
        goto fail;
    }
    m->protocol = (int)json_integer_value(protocol);
    json_t *config = json_object_get(root, "config");
    m->config = json_is_object(config) ? json_incref(config) : json_object();
    json_decref(root);
    return m;

fail:
    json_decref(root);
    manifest_free(m);
    return NULL;
}
