/* plugd itself: opening the state folder and the registry, bringing back
 * every registered plugin, starting the restored plugins' workers a batch
 * at a time, stopping everything, closing; and the plugins' table that
 * the operations (operations.c) and the scan (scan.c) work on. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "operations.h"
#include "scan.h"

/* ------------------------------------------------------------ plugins */

struct plugin *plugd_find(struct plugd *d, const char *name, size_t len)
{
    for (size_t i = 0; i < d->n_plugins; i++)
        if (ipc_str_equals(name, len, d->plugins[i]->row.name))
            return d->plugins[i];
    return NULL;
}

struct worker *plugd_find_worker(struct plugd *d, const char *name, size_t len)
{
    struct plugin *p = plugd_find(d, name, len);
    struct instance *i = p ? plugin_serving_instance(p) : NULL;
    return i ? i->w : NULL;
}

struct plugin *plugd_add_plugin(struct plugd *d, struct plugd_error *err)
{
    if (d->n_plugins == PLUGD_MAX_PLUGINS) {
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "plugd holds %d plugins already",
                        PLUGD_MAX_PLUGINS);
        return NULL;
    }
    struct plugin *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a plugin");
        return NULL;
    }
    p->d = d;
    d->plugins[d->n_plugins++] = p;
    return p;
}

void plugd_remove_last_plugin(struct plugd *d)
{
    free(d->plugins[--d->n_plugins]);
}

static void free_plugin(struct plugin *p)
{
    plugin_free_instances(p);
    reg_plugin_clear(&p->row);
    free(p);
}

/* ------------------------------------------------------------ stop */

static bool all_stopped(const struct plugd *d)
{
    for (size_t i = 0; i < d->n_plugins; i++)
        if (!plugin_is_stopped(d->plugins[i]))
            return false;
    return true;
}

void plugd_note_stopped(struct plugd *d)
{
    if (d->is_stopping && all_stopped(d))
        ev_break(d->loop, EVBREAK_ALL);
}

void plugd_stop_all(struct plugd *d)
{
    if (!d->is_stopping)
        log_plugd("info", NULL, "stopping %zu plugin(s)", d->n_plugins);
    d->is_stopping = true;
    scan_timers_stop(d);
    for (size_t i = 0; i < d->n_plugins; i++)
        plugin_stop_instances(d->plugins[i]);
    plugd_note_stopped(d);
}

/* ------------------------------------------------------------ open, start */

/* Brings back one plugin from its registry row. */
static void restore_plugin(const struct reg_plugin *row, void *ud)
{
    struct plugd *d = ud;
    struct plugd_error err;
    struct plugin *p = plugd_add_plugin(d, &err);
    if (p == NULL || reg_plugin_copy(&p->row, row) < 0) {
        log_plugd("error", row->name, "cannot restore: %s", p ? "no memory" : err.message);
        if (p != NULL)
            plugd_remove_last_plugin(d);
        return;
    }
    ops_restore(p);
}

/* A batch of restored plugins gets its workers (an operator's command may
 * have started one already: applying the status again changes nothing);
 * after the last, the plugins folder is looked at and kept watched. */
static void on_start_batch(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct plugd *d = w->data;
    size_t end = d->n_started + PLUGD_START_BATCH;
    for (; d->n_started < d->n_plugins && d->n_started < end; d->n_started++)
        ops_apply_status(d->plugins[d->n_started]);
    if (d->n_started < d->n_plugins && !d->is_stopping)
        return;
    ev_idle_stop(loop, w);
    if (d->is_stopping)
        return;
    plugd_scan(d);
    scan_timers_start(d);
}

int plugd_open(struct plugd *d, struct ev_loop *loop, const struct plugd_options *o,
               struct plugd_error *err)
{
    memset(d, 0, sizeof(*d));
    d->loop = loop;
    sb_system_init(&d->sandbox, o->sandbox, o->worker_user);
    d->data_retention = o->data_retention > 0 ? o->data_retention : PLUGD_DATA_RETENTION;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/plugd.db", o->state_dir);
    if (mkdir(o->state_dir, 0750) < 0 && errno != EEXIST) {
        plugd_error_set(err, PLUGD_E_IO, "cannot create the state folder %s: %s", o->state_dir,
                        strerror(errno));
        return -1;
    }
    d->state_dir = realpath(o->state_dir, NULL);
    if (d->state_dir != NULL) {
        confine_open_state(&d->sandbox, d->state_dir);
        sb_view_make(&d->sandbox, d->state_dir);
    }
    d->plugins_dir = o->plugins_dir ? strdup(o->plugins_dir) : NULL;
    d->bus = ev_bus_new();
    bool has_memory = d->state_dir != NULL && d->bus != NULL &&
                      (o->plugins_dir == NULL || d->plugins_dir != NULL);
    scan_timers_init(d, o->scan_interval > 0 ? o->scan_interval : PLUGD_SCAN_INTERVAL);
    ev_idle_init(&d->start_w, on_start_batch);
    d->start_w.data = d;
    instances_init(d);
    if (!has_memory || (d->reg = reg_open(path, err)) == NULL) {
        if (!has_memory)
            plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory to open plugd");
        plugd_close(d);
        return -1;
    }
    d->services = (struct services){.reg = d->reg, .bus = d->bus};
    if (reg_each_plugin(d->reg, restore_plugin, d, err) < 0) {
        plugd_close(d);
        return -1;
    }
    return 0;
}

void plugd_start_plugins(struct plugd *d)
{
    plugd_sweep_retention(d); /* no worker involved: before the first command */
    ev_idle_start(d->loop, &d->start_w);
}

/* ------------------------------------------------------------ close */

void plugd_close(struct plugd *d)
{
    if (d->loop != NULL) {
        ev_idle_stop(d->loop, &d->start_w);
        scan_timers_stop(d);
    }
    instances_fini(d);
    for (size_t i = 0; i < d->n_plugins; i++)
        free_plugin(d->plugins[i]);
    d->n_plugins = 0;
    stream_close(&d->host_stream);
    ev_bus_free(d->bus);
    d->bus = NULL;
    services_fini(&d->services);
    sb_system_fini(&d->sandbox);
    reg_close(d->reg);
    d->reg = NULL;
    free(d->scanned);
    free(d->state_dir);
    free(d->plugins_dir);
    d->scanned = NULL;
    d->state_dir = d->plugins_dir = NULL;
}
