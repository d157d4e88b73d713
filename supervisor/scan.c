/* The plugins folder as an inbox of packages (docs/lifecycle.md "The
 * plugins folder"), and the retention of uninstalled plugins' data. Both
 * only call operations (plugd.h); neither changes a status itself. */
#include "scan.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "package.h"

/* ------------------------------------------------------------ folder scan */

/* What changes when a package folder changes: plugin.json's identity,
 * size and time, and the folder's. */
static void folder_signature(const char *dir, char *out, size_t size)
{
    char path[PATH_MAX + 16];
    struct stat a = {0}, b = {0};
    snprintf(path, sizeof(path), "%s/plugin.json", dir);
    stat(path, &a);
    stat(dir, &b);
    snprintf(out, size, "%lu:%ld:%ld.%ld:%ld.%ld", (unsigned long)a.st_ino, (long)a.st_size,
             (long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec, (long)b.st_mtim.tv_sec, b.st_mtim.tv_nsec);
}

/* Records how folder `name` looks now: true when that differs from the
 * last scan (or it is new). Out of memory, it reads as unchanged: the
 * next scan tries again. */
static bool note_folder_change(struct plugd *d, const char *name, const char *dir)
{
    char sig[128];
    folder_signature(dir, sig, sizeof(sig));
    for (size_t i = 0; i < d->n_scanned; i++) {
        if (strcmp(d->scanned[i].name, name) != 0)
            continue;
        if (strcmp(d->scanned[i].signature, sig) == 0)
            return false;
        snprintf(d->scanned[i].signature, sizeof(d->scanned[i].signature), "%s", sig);
        return true;
    }
    struct scan_entry *grown = realloc(d->scanned, (d->n_scanned + 1) * sizeof(*grown));
    if (grown == NULL)
        return false;
    d->scanned = grown;
    struct scan_entry *e = &d->scanned[d->n_scanned++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->signature, sizeof(e->signature), "%s", sig);
    return true;
}

/* Installs, reinstalls or upgrades from one folder whose package plugd
 * has not seen before. */
static void scan_folder(struct plugd *d, const char *dir)
{
    struct plugd_error err;
    struct manifest *m = manifest_load(dir, &err);
    char digest[PKG_DIGEST_HEX];
    if (m == NULL || pkg_digest(m, digest, &err) < 0) {
        log_plugd("error", NULL, "plugins folder: %s: %s", dir, err.message);
        manifest_free(m);
        return;
    }
    struct plugin *p = plugd_find(d, m->name, strlen(m->name));
    bool is_known = p != NULL && reg_has_version(d->reg, m->name, digest);
    manifest_free(m);
    if (is_known)
        return; /* running, rejected, or uninstalled on purpose: not again */
    int rc;
    if (p == NULL || lc_op_runs_from(LC_OP_REINSTALL, p->row.status))
        rc = plugd_install(d, dir, "plugd", &err);
    else
        rc = plugd_upgrade(d, dir, "plugd", &err);
    if (rc < 0)
        log_plugd("error", NULL, "plugins folder: %s: %s", dir, err.message);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the folders of the plugins folder that hold a plugin.json
 * (at most PLUGD_MAX_PLUGINS, sorted; the caller frees each), or -1. */
static ssize_t package_folders(const char *plugins_dir, char **names)
{
    DIR *dh = opendir(plugins_dir);
    if (dh == NULL) {
        log_plugd("error", NULL, "cannot open the plugins folder %s: %s", plugins_dir,
                  strerror(errno));
        return -1;
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && n < PLUGD_MAX_PLUGINS) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s/plugin.json", plugins_dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if ((names[n] = strdup(e->d_name)) == NULL) {
            log_plugd("error", NULL, "plugins folder: no memory for the name %s", e->d_name);
            continue; /* the next scan sees it */
        }
        n++;
    }
    closedir(dh);
    qsort(names, n, sizeof(names[0]), compare_names);
    return (ssize_t)n;
}

void plugd_scan(struct plugd *d)
{
    if (d->plugins_dir == NULL)
        return;
    char *names[PLUGD_MAX_PLUGINS];
    ssize_t n = package_folders(d->plugins_dir, names);
    for (ssize_t i = 0; i < n; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", d->plugins_dir, names[i]);
        if (note_folder_change(d, names[i], dir))
            scan_folder(d, dir);
        free(names[i]);
    }
}

static void on_scan_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct plugd *d = t->data;
    if (!d->is_stopping)
        plugd_scan(d);
}

/* ------------------------------------------------------------ retention */

void plugd_remove_data_folder(const struct plugd *d, const char *name)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/data/%s", d->state_dir, name);
    remove_tree(dir);
}

void plugd_sweep_retention(struct plugd *d)
{
    double now = reg_now();
    for (size_t i = 0; i < d->n_plugins; i++) {
        struct plugin *p = d->plugins[i];
        if (!lc_is_removed(p->row.status) || now - p->row.uninstalled_at < d->data_retention)
            continue;
        plugd_remove_data_folder(d, p->row.name);
        if (reg_state_count(d->reg, p->row.name) <= 0)
            continue;
        struct plugd_error err;
        if (reg_purge_data(d->reg, p->row.name, &err) < 0)
            log_plugd("error", p->row.name, "retention: %s", err.message);
        else
            log_plugd("info", p->row.name, "retention: data of the uninstalled plugin deleted");
    }
}

static void on_retention_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    plugd_sweep_retention(t->data);
}

/* ------------------------------------------------------------ timers */

void scan_timers_init(struct plugd *d, double interval)
{
    ev_timer_init(&d->scan_t, on_scan_timer, interval, interval);
    ev_timer_init(&d->retention_t, on_retention_timer, PLUGD_RETENTION_PERIOD,
                  PLUGD_RETENTION_PERIOD);
    d->scan_t.data = d->retention_t.data = d;
}

void scan_timers_start(struct plugd *d)
{
    if (d->plugins_dir != NULL)
        ev_timer_start(d->loop, &d->scan_t);
    ev_timer_start(d->loop, &d->retention_t);
}

void scan_timers_stop(struct plugd *d)
{
    ev_timer_stop(d->loop, &d->scan_t);
    ev_timer_stop(d->loop, &d->retention_t);
}
