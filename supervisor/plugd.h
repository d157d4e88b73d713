/* The daemon's state and its in-process API: the registry, the event bus,
 * one struct plugin per registered plugin (its committed registry row and
 * its worker instances, instance.h), the plugins folder scan, the host channel. daemon.c opens,
 * restores and closes; operations.c runs the lifecycle operations; scan.c
 * watches the plugins folder and the data retention. The operations
 * below are what the host channel (and the control socket) expose; tests
 * call them directly. docs/lifecycle.md describes them. */
#ifndef PLUGD_PLUGD_H
#define PLUGD_PLUGD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "events.h"
#include "instance.h"
#include "plugd/ipc.h"
#include "registry.h"
#include "services.h"
#include "stream.h"
#include "worker.h"

#define PLUGD_MAX_PLUGINS      1024
#define PLUGD_SCAN_INTERVAL    1.0                /* s, plugins folder */
#define PLUGD_DATA_RETENTION   (30.0 * 24 * 3600) /* s, data of uninstalled plugins */
#define PLUGD_RETENTION_PERIOD 3600.0             /* s, between retention sweeps */
#define PLUGD_START_BATCH      16                 /* restored plugins started per loop turn */

struct plugd_options {
    const char *state_dir;   /* required: plugd.db and packages/ */
    const char *plugins_dir; /* NULL: no folder to scan */
    double scan_interval;    /* s; 0: PLUGD_SCAN_INTERVAL */
    double data_retention;   /* s; 0: PLUGD_DATA_RETENTION */
    enum sb_mode sandbox;    /* --sandbox: on (the default), strict or off */
    const char *worker_user; /* --worker-user, when plugd is root; NULL: nobody */
};

struct plugin {
    struct plugd *d;
    struct reg_plugin row;      /* as committed to the registry */
    struct instance *instances; /* newest first (instance.c); none while no package of
                                   the plugin could be loaded */
};

/* One folder of the plugins folder as last seen, so unchanged ones are
 * neither parsed nor hashed again. */
struct scan_entry {
    char name[256];
    char signature[128];
};

struct plugd {
    struct ev_loop *loop;
    char *state_dir, *plugins_dir;
    struct registry *reg;
    struct ev_bus *bus;
    struct services services;
    struct sb_system sandbox; /* what every worker's sandbox shares */
    struct plugin *plugins[PLUGD_MAX_PLUGINS];
    size_t n_plugins;
    struct scan_entry *scanned;
    size_t n_scanned;
    double data_retention;
    ev_timer scan_t, retention_t;
    ev_idle start_w;  /* brings back the restored plugins' workers, a batch a turn */
    size_t n_started; /* restored plugins applied so far */
    ev_idle reap_w;   /* frees the retired instances that have stopped */

    struct ipc_conn *host;     /* NULL without --host-fd */
    struct stream host_stream; /* its events and followed log records */
    bool is_stopping;          /* every worker is being stopped; exit when all are */
    int exit_status;
};

/* Opens the registry in o->state_dir and brings back every plugin's row
 * and package; no worker starts yet. 0, or -1 with err. */
int plugd_open(struct plugd *d, struct ev_loop *loop, const struct plugd_options *o,
               struct plugd_error *err);
/* Deletes data past its retention now; then starts the restored plugins'
 * workers from the loop, PLUGD_START_BATCH a turn (commands answer
 * meanwhile), then installs or upgrades what the plugins folder holds and
 * keeps scanning it. */
void plugd_start_plugins(struct plugd *d);
/* Removes the plugin's data folder (capability fs.data), with its data. */
void plugd_remove_data_folder(const struct plugd *d, const char *name);

/* Frees everything (a worker still running is killed). */
void plugd_close(struct plugd *d);

struct plugin *plugd_find(struct plugd *d, const char *name, size_t len);
/* The worker of the named plugin's serving instance (plugin_serving_instance),
 * or NULL. */
struct worker *plugd_find_worker(struct plugd *d, const char *name, size_t len);

/* Lifecycle operations (operations.c), each a row of lc_ops (lifecycle.c).
 * Each checks the row's from-statuses first and changes nothing when
 * refused (invalid_transition, plugin_not_found, invalid_manifest); the
 * new row is committed with its audit row before its events are published
 * and before the worker is started or stopped. `actor` is recorded in the
 * audit ("host", "uid:1000", "plugd"). */
int plugd_install(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err);
int plugd_upgrade(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err);
/* A rebuild of the version `name` runs (same version, new digest) from
 * `src_dir`, through the upgrade's path (approval of added capabilities
 * included); the same digest again is a success with nothing done. */
int plugd_reload(struct plugd *d, const char *name, const char *src_dir, const char *actor,
                 struct plugd_error *err);
int plugd_enable(struct plugd *d, const char *name, const char *actor, struct plugd_error *err);
int plugd_disable(struct plugd *d, const char *name, const char *reason, const char *actor,
                  struct plugd_error *err);
int plugd_approve(struct plugd *d, const char *name, const char *actor, struct plugd_error *err);
int plugd_reject(struct plugd *d, const char *name, const char *actor, struct plugd_error *err);
int plugd_uninstall(struct plugd *d, const char *name, bool remove_data, const char *actor,
                    struct plugd_error *err);

/* Stores and applies a new config (a JSON object, borrowed); `done` runs
 * once, after the worker took it (or refused it: then nothing is stored). */
void plugd_set_config(struct plugd *d, const char *name, json_t *config, const char *actor,
                      wk_done_fn done, void *ud);

/* Installs or upgrades what changed in the plugins folder. */
void plugd_scan(struct plugd *d);

/* Deletes the data of plugins uninstalled longer than the retention ago. */
void plugd_sweep_retention(struct plugd *d);

/* Stops every worker gracefully; the loop ends when the last has stopped. */
void plugd_stop_all(struct plugd *d);

/* Serves the host channel on `fd` (taken over). 0, or -1 with err. */
int host_channel_open(struct plugd *d, int fd, struct plugd_error *err);
/* Sends what is queued for the host and closes its channel (at exit). */
void host_channel_close(struct plugd *d);

#endif
