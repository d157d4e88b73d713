/* A plugin's plugin.json, read just far enough to run its worker. Full
 * validation (names, semver, capability table, limits ranges) belongs to the
 * lifecycle work; docs/manifest.md will list every field. */
#ifndef PLUGD_MANIFEST_H
#define PLUGD_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "plugd/error.h"

#define MANIFEST_MAX_CAPS      32
#define MANIFEST_MAX_METHODS   256
#define MANIFEST_MAX_FILES     64
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
    char *methods[MANIFEST_MAX_METHODS];
    size_t n_methods;
    char *files[MANIFEST_MAX_FILES]; /* more package files, relative */
    size_t n_files;
    json_t *config; /* the "config" object; an empty one when absent */
    json_t *json;   /* the whole document */
    struct worker_limits limits;
};

/* Validates an already parsed document for the package folder `dir`. */
struct manifest *manifest_parse(json_t *root, const char *dir, struct plugd_error *err);

/* [a-z0-9][a-z0-9-]{0,62} */
bool manifest_is_valid_name(const char *s);

/* Semantic Versioning 2.0.0: true when `v` is one. */
bool semver_is_valid(const char *v);
/* <0, 0, >0 as `a` has lower, equal, higher precedence than `b`. */
int semver_compare(const char *a, const char *b);

/* Reads DIR/plugin.json. Returns NULL with err naming the field and the
 * reason. */
struct manifest *manifest_load(const char *dir, struct plugd_error *err);
void manifest_free(struct manifest *m);
void worker_limits_default(struct worker_limits *l);

#endif
