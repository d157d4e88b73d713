/* A plugin's plugin.json, read just far enough to run its worker. Full
 * validation (names, semver, capability table, limits ranges) belongs to the
 * lifecycle work; docs/manifest.md will list every field. */
#ifndef PLUGD_MANIFEST_H
#define PLUGD_MANIFEST_H

#include <jansson.h>
#include <stddef.h>

#include "plugd/error.h"

#define MANIFEST_MAX_CAPS 32

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
};

struct manifest {
    char *dir; /* the plugin folder, absolute */
    char *name;
    char *version;
    char *entrypoint; /* absolute path */
    int protocol;
    char *capabilities[MANIFEST_MAX_CAPS];
    size_t n_capabilities;
    json_t *config; /* the "config" object; an empty one when absent */
    struct worker_limits limits;
};

/* Reads DIR/plugin.json. Returns NULL with err naming the field and the
 * reason. */
struct manifest *manifest_load(const char *dir, struct plugd_error *err);
void manifest_free(struct manifest *m);
void worker_limits_default(struct worker_limits *l);

#endif
