/* A plugin's plugin.json, validated at the edge: every field, its type and
 * range, refused with PLUGD_E_INVALID_MANIFEST and a message naming the field
 * and the reason. docs/manifest.md lists every field. */
#ifndef PLUGD_MANIFEST_H
#define PLUGD_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "plugd/error.h"
#include "semver.h" /* a manifest's version is one */

#define MANIFEST_MAX_CAPS      32
#define MANIFEST_MAX_METHODS   256
#define MANIFEST_MAX_FILES     64
#define MANIFEST_MAX_ENV       32
#define PLUGD_PROTOCOL_CURRENT 1
#define PLUGD_PROTOCOL_MIN     1 /* the previous version, while there is one */

struct worker_limits {
    double call_timeout;      /* s, default deadline of a routed call */
    double handshake_timeout; /* s, from spawn to plugd.hello */
    double init_timeout;      /* s, for plugd.initialize */
    double health_interval;   /* s, between plugd.health calls */
    double health_timeout;    /* s, deadline of one plugd.health */
    double drain_timeout;     /* s, after plugd.shutdown before SIGTERM */
    double term_timeout;      /* s, after SIGTERM before SIGKILL */
    int crash_loop_restarts;  /* this many restarts ... */
    double crash_loop_window; /* ... within this many s is a crash loop */
    int memory_mb;            /* sandbox limits (docs/manifest.md) */
    int nofile;
    int nproc;
    int cpu_percent;
    int cpu_seconds; /* RLIMIT_CPU of the worker; 0: not limited */
};

struct manifest {
    char *dir; /* the plugin folder, absolute */
    char *name;
    char *version;
    char *entrypoint;     /* absolute path */
    char *entrypoint_rel; /* as written in the manifest */
    int protocol;
    char *capabilities[MANIFEST_MAX_CAPS];
    size_t n_capabilities;
    char **methods; /* the plugin's own RPC methods */
    size_t n_methods;
    char **files; /* more package files, relative as written */
    size_t n_files;
    char **env; /* names of plugd's environment variables it asks for ("env") */
    size_t n_env;
    json_t *config; /* the effective config (manifest_config_with); at load, the defaults */
    json_t *json;   /* the whole document (a reference the manifest owns) */
    struct worker_limits limits;
    bool is_violation_eperm; /* "sandbox.on_violation": "eperm" (default "kill") */
};

/* Validates an already parsed document for the package folder `dir` (whose
 * files it checks). Does not take `root`: the manifest holds its own
 * reference. NULL with `err` on any refusal. */
struct manifest *manifest_parse(json_t *root, const char *dir, struct plugd_error *err);

/* [a-z0-9][a-z0-9-]{0,62} */
bool manifest_is_valid_name(const char *s);

/* Reads DIR/plugin.json. Returns NULL with err naming the field and the
 * reason. */
struct manifest *manifest_load(const char *dir, struct plugd_error *err);
void manifest_free(struct manifest *m);

/* Whether `m` lists `capability` (a name of capabilities.c's table). */
bool manifest_has_capability(const struct manifest *m, const char *capability);

/* The config a worker runs with: the manifest's "config" defaults with the
 * operator's config (a JSON object, or NULL) laid over them, key by key at
 * the top level. The one definition of the effective config: at start, on
 * a hot change, after a restart. A new reference, NULL without memory. */
json_t *manifest_config_with(const struct manifest *m, const json_t *operator_config);
void worker_limits_default(struct worker_limits *l);

#endif
