/* The lifecycle operations on plugins: each one checks the transition
 * table (lifecycle.c), commits the new registry row with its audit row
 * (registry.c), publishes its events (events.c), and only then starts or
 * stops the worker (worker.c). Worker outcomes come back through
 * on_worker_state and become transitions too (load, mark error). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "package.h"
#include "plugd.h"

static void on_worker_state(struct worker *w, enum wk_state from, void *ud);
static void on_worker_health(struct worker *w, const char *why, void *ud);

/* ------------------------------------------------------------ events */

static void publish(struct plugd *d, enum evt_type t, const char *plugin, json_t *payload)
{
    ev_bus_emit(d->bus, t, plugin, payload);
}

static void publish_status_change(struct plugd *d, const char *plugin, int from, enum lc_status to)
{
    if (from == (int)to)
        return;
    publish(d, EVT_STATUS_CHANGED, plugin,
            json_pack("{s:o, s:s}", "previous_status",
                      from < 0 ? json_null() : json_string(lc_status_name((enum lc_status)from)),
                      "new_status", lc_status_name(to)));
}

/* plugin.upgraded after an approve: the versions and the capability
 * change the upgrade waited on, kept in the row's diff. */
static json_t *upgraded_payload(const char *from, const char *to, const char *diff_text)
{
    json_t *diff = diff_text ? json_loads(diff_text, 0, NULL) : NULL;
    json_t *added = json_object_get(diff, "added"), *removed = json_object_get(diff, "removed");
    json_t *v = json_pack("{s:s, s:s, s:o, s:o}", "from_version", from, "to_version", to, "added",
                          json_is_array(added) ? json_incref(added) : json_array(), "removed",
                          json_is_array(removed) ? json_incref(removed) : json_array());
    json_decref(diff);
    return v;
}

/* ------------------------------------------------------------ lookup */

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
    return p ? p->w : NULL;
}

static struct plugin *find_or_fail(struct plugd *d, const char *op, const char *name,
                                   struct plugd_error *err)
{
    struct plugin *p = plugd_find(d, name, strlen(name));
    if (p == NULL)
        plugd_error_set(err, PLUGD_E_PLUGIN_NOT_FOUND, "%s: no plugin named \"%s\"", op, name);
    return p;
}

/* ------------------------------------------------------------ manifests */

/* The manifest of a stored package with the operator's config (a JSON
 * object text, or NULL) laid over its defaults. */
static struct manifest *load_package(const char *dir, const char *config, struct plugd_error *err)
{
    struct manifest *m = manifest_load(dir, err);
    if (m == NULL || config == NULL)
        return m;
    json_t *operator_config = json_loads(config, 0, NULL);
    json_t *effective = manifest_config_with(m, operator_config);
    json_decref(operator_config);
    if (effective == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the config of %s", m->name);
        manifest_free(m);
        return NULL;
    }
    json_decref(m->config);
    m->config = effective;
    return m;
}

static char *manifest_text(const struct manifest *m)
{
    return json_dumps(m->json, JSON_COMPACT | JSON_SORT_KEYS);
}

/* ------------------------------------------------------------ commit */

/* Commits `next` (the plugin's row after the operation) with its audit row
 * and, on success, makes it the plugin's row and publishes the status
 * change. On failure nothing changed. `next` is cleared either way. */
static int commit(struct plugin *p, struct reg_plugin *next, const char *action, const char *actor,
                  const char *reason, unsigned flags, struct plugd_error *err)
{
    int from = p->row.name ? (int)p->row.status : -1;
    next->updated_at = reg_now();
    struct reg_audit a = {.actor = actor, .action = action, .reason = reason};
    if (reg_save_transition(p->d->reg, next, from, &a, flags, err) < 0) {
        log_plugd("error", next->name, "%s: %s", action, err->message);
        reg_plugin_clear(next);
        return -1;
    }
    log_plugd("info", next->name, "%s by %s: %s -> %s%s%s", action, actor,
              from < 0 ? "new" : lc_status_name((enum lc_status)from), lc_status_name(next->status),
              reason ? ": " : "", reason ? reason : "");
    reg_plugin_clear(&p->row);
    p->row = *next;
    memset(next, 0, sizeof(*next));
    publish_status_change(p->d, p->row.name, from, p->row.status);
    return 0;
}

/* A copy of the plugin's row to change, or -1 (no memory). */
static int begin_change(const struct plugin *p, struct reg_plugin *next, struct plugd_error *err)
{
    memset(next, 0, sizeof(*next));
    if (reg_plugin_copy(next, &p->row) < 0)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a transition");
    return 0;
}

/* ------------------------------------------------------------ workers */

static bool all_stopped(const struct plugd *d)
{
    for (size_t i = 0; i < d->n_plugins; i++)
        if (d->plugins[i]->w != NULL && d->plugins[i]->w->state != WK_STOPPED)
            return false;
    return true;
}

static void mark_error(struct plugin *p, const char *why);

/* A start that fails at once (the entrypoint cannot be run) is reported
 * here, not through on_worker_state. */
static void start_worker(struct plugin *p)
{
    struct plugd_error err;
    if (p->w == NULL || p->d->is_stopping)
        return;
    if (worker_start(p->w, &err) < 0) {
        log_plugd("error", p->row.name, "cannot start: %s", err.message);
        mark_error(p, err.message);
    }
}

/* Runs `m` as the plugin's worker: now when it is stopped, else once the
 * running one has drained and stopped (takes ownership of `m`). */
static void replace_worker_manifest(struct plugin *p, struct manifest *m)
{
    if (p->w == NULL) {
        p->w = worker_new(p->d->loop, m, on_worker_state, p);
        if (p->w == NULL) {
            manifest_free(m);
            return;
        }
        p->w->on_health = on_worker_health;
        p->w->services = &p->d->services;
        p->w->confine.system = &p->d->sandbox;
        p->w->confine.state_dir = p->d->state_dir;
        return;
    }
    manifest_free(p->next);
    p->next = NULL;
    if (p->w->state == WK_STOPPED) {
        worker_set_manifest(p->w, m);
        return;
    }
    p->next = m;
    worker_stop(p->w);
}

/* The worker of a ready plugin runs; every other status has none. Called
 * after every status change and every time the worker stops, so that the
 * two converge whatever order operations came in. */
static void apply_status(struct plugin *p)
{
    if (p->w == NULL)
        return;
    bool should_run = p->row.status == LC_READY || p->row.status == LC_INSTALLED;
    if (should_run && p->next == NULL)
        start_worker(p);
    else if (!should_run)
        worker_stop(p->w);
}

static void mark_error(struct plugin *p, const char *why)
{
    struct plugd_error err;
    if (!lc_is_allowed(p->row.status, LC_ERROR))
        return; /* disabled or uninstalled meanwhile: the failure is moot */
    struct reg_plugin next;
    if (begin_change(p, &next, &err) < 0)
        return;
    next.status = LC_ERROR;
    reg_set_str(&next.last_error, why);
    if (commit(p, &next, "fail", "plugd", why, 0, &err) == 0)
        publish(p->d, EVT_ERROR, p->row.name, json_pack("{s:s}", "error", why));
}

/* installed → ready once the worker has initialized. */
static void mark_loaded(struct plugin *p)
{
    struct plugd_error err;
    struct reg_plugin next;
    if (begin_change(p, &next, &err) < 0)
        return;
    next.status = LC_READY;
    reg_set_str(&next.last_error, NULL);
    if (commit(p, &next, "load", "plugd", NULL, 0, &err) == 0)
        publish(p->d, EVT_LOADED, p->row.name, json_pack("{s:s}", "version", p->row.version));
}

static void on_worker_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)from;
    struct plugin *p = ud;
    struct plugd *d = p->d;
    const char *name = p->row.name;
    switch (w->state) {
    case WK_RUNNING:
        publish(d, EVT_WORKER_STARTED, name,
                json_pack("{s:i, s:s}", "pid", (json_int_t)w->pid, "version", w->m->version));
        if (w->restarts > p->restarts_seen)
            publish(d, EVT_WORKER_RESTARTED, name,
                    json_pack("{s:I}", "restarts", (json_int_t)w->restarts));
        p->restarts_seen = w->restarts;
        if (p->row.status == LC_INSTALLED)
            mark_loaded(p);
        break;
    case WK_BACKOFF:
        publish(d, EVT_WORKER_CRASHED, name,
                json_pack("{s:s, s:s}", "reason", w->last_error.message, "exit", w->last_exit));
        break;
    case WK_STOPPED:
        publish(d, EVT_WORKER_STOPPED, name,
                json_pack("{s:s, s:s}", "exit", w->last_exit, "reason",
                          w->is_failed ? w->last_error.message : "stopped"));
        if (p->next == NULL && w->is_failed) {
            mark_error(p, w->last_error.message); /* given up: it stays stopped */
        } else {
            if (p->next != NULL) {
                worker_set_manifest(w, p->next); /* the old version is gone, however it ended */
                p->next = NULL;
            }
            /* the status decides, whatever was asked while it stopped: an
             * enable or a config restart starts it again, a disable not */
            apply_status(p);
        }
        if (d->is_stopping && all_stopped(d))
            ev_break(d->loop, EVBREAK_ALL);
        break;
    default:
        break;
    }
}

static void on_worker_health(struct worker *w, const char *why, void *ud)
{
    (void)w;
    struct plugin *p = ud;
    if (why != NULL)
        publish(p->d, EVT_HEALTH_DEGRADED, p->row.name, json_pack("{s:s}", "reason", why));
    else
        publish(p->d, EVT_HEALTH_RECOVERED, p->row.name, NULL);
}

/* ------------------------------------------------------------ plugins */

static struct plugin *add_plugin(struct plugd *d, struct plugd_error *err)
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

static void remove_last_plugin(struct plugd *d)
{
    free(d->plugins[--d->n_plugins]);
}

static void free_plugin(struct plugin *p)
{
    worker_free(p->w);
    manifest_free(p->next);
    reg_plugin_clear(&p->row);
    free(p);
}

/* A new package from `src_dir`: its manifest, digest and stored copy. */
struct package {
    struct manifest *m; /* as read from src_dir */
    char digest[PKG_DIGEST_HEX];
    char dir[PATH_MAX]; /* plugd's copy */
    char *manifest_json;
};

static void package_clear(struct package *pkg)
{
    manifest_free(pkg->m);
    free(pkg->manifest_json);
    memset(pkg, 0, sizeof(*pkg));
}

static int read_package(struct plugd *d, const char *src_dir, struct package *pkg,
                        struct plugd_error *err)
{
    memset(pkg, 0, sizeof(*pkg));
    pkg->m = manifest_load(src_dir, err);
    if (pkg->m == NULL || pkg_digest(pkg->m, pkg->digest, err) < 0 ||
        pkg_store(d->state_dir, pkg->m, pkg->digest, pkg->dir, sizeof(pkg->dir), err) < 0)
        goto fail;
    if ((pkg->manifest_json = manifest_text(pkg->m)) == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a manifest");
        goto fail;
    }
    return 0;

fail:
    package_clear(pkg);
    return -1;
}

/* Points the plugin's worker at the package its row names; false, with the
 * plugin marked error, when that package cannot be loaded. */
static bool load_current_package(struct plugin *p, struct plugd_error *err)
{
    struct manifest *m = load_package(p->row.package_dir, p->row.config, err);
    if (m == NULL) {
        mark_error(p, err->message);
        return false;
    }
    replace_worker_manifest(p, m);
    return true;
}

int plugd_install(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err)
{
    struct package pkg;
    if (read_package(d, src_dir, &pkg, err) < 0)
        return -1;
    const char *name = pkg.m->name;
    struct plugin *p = plugd_find(d, name, strlen(name));
    bool is_new = p == NULL;
    if (!is_new && lc_check("install", p->row.status, LC_INSTALLED, err) < 0) {
        snprintf(err->message + strlen(err->message), sizeof(err->message) - strlen(err->message),
                 " (upgrade it, or uninstall it first)");
        package_clear(&pkg);
        return -1;
    }
    if (is_new && (p = add_plugin(d, err)) == NULL) {
        package_clear(&pkg);
        return -1;
    }
    struct reg_plugin next = {0};
    if (!is_new && begin_change(p, &next, err) < 0) {
        package_clear(&pkg);
        return -1;
    }
    double now = reg_now();
    next.status = LC_INSTALLED;
    next.installed_at = now;
    next.uninstalled_at = 0;
    if (reg_set_str(&next.name, name) < 0 || reg_set_str(&next.version, pkg.m->version) < 0 ||
        reg_set_str(&next.digest, pkg.digest) < 0 || reg_set_str(&next.package_dir, pkg.dir) < 0 ||
        reg_set_str(&next.manifest, pkg.manifest_json) < 0 ||
        reg_set_str(&next.last_error, NULL) < 0 || reg_set_str(&next.diff, NULL) < 0) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "install: no memory");
        reg_plugin_clear(&next);
        goto fail;
    }
    if (commit(p, &next, is_new ? "install" : "reinstall", actor, NULL, 0, err) < 0)
        goto fail;
    package_clear(&pkg);
    if (!load_current_package(p, err))
        return 0; /* installed; the load failed and says why in the error status */
    apply_status(p);
    return 0;

fail:
    package_clear(&pkg);
    if (is_new)
        remove_last_plugin(d);
    return -1;
}

/* The capabilities of `b` that `a` lacks, as a JSON array; a protocol
 * change counts as an added capability "protocol:N". */
static json_t *capabilities_added(const struct manifest *a, const struct manifest *b)
{
    json_t *out = json_array();
    for (size_t i = 0; i < b->n_capabilities; i++)
        if (!manifest_has_capability(a, b->capabilities[i]))
            json_array_append_new(out, json_string(b->capabilities[i]));
    if (a->protocol != b->protocol)
        json_array_append_new(out, json_sprintf("protocol:%d", b->protocol));
    return out;
}

/* Removed capabilities take effect at once: the running worker (still
 * draining) loses those that `next` does not have. */
static void revoke_capabilities(struct manifest *running, const struct manifest *next)
{
    size_t kept = 0;
    for (size_t i = 0; i < running->n_capabilities; i++) {
        if (manifest_has_capability(next, running->capabilities[i]))
            running->capabilities[kept++] = running->capabilities[i];
        else
            free(running->capabilities[i]);
    }
    running->n_capabilities = kept;
}

int plugd_upgrade(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err)
{
    struct package pkg;
    if (read_package(d, src_dir, &pkg, err) < 0)
        return -1;
    struct plugin *p = find_or_fail(d, "upgrade", pkg.m->name, err);
    struct manifest *old = p ? p->w ? p->w->m : NULL : NULL;
    struct manifest *current = NULL;
    if (p != NULL && old == NULL)
        old = current = load_package(p->row.package_dir, NULL, err);
    int rc = -1;
    if (p == NULL || old == NULL)
        goto out;
    if (p->row.status != LC_READY && p->row.status != LC_ERROR) {
        plugd_error_set(err, PLUGD_E_INVALID_TRANSITION,
                        "upgrade: a plugin that is %s cannot become ready or upgrade_pending by an "
                        "upgrade (only a ready or error one can; enable it first)",
                        lc_status_name(p->row.status));
        goto out;
    }
    if (strcmp(p->row.digest, pkg.digest) == 0) {
        rc = 0; /* this very package runs already */
        goto out;
    }
    if (semver_compare(pkg.m->version, p->row.version) <= 0) {
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                        "upgrade: %s %s is not newer than the installed %s", pkg.m->name,
                        pkg.m->version, p->row.version);
        goto out;
    }
    json_t *added = capabilities_added(old, pkg.m), *removed = capabilities_added(pkg.m, old);
    /* the protocol entry belongs in "added" only */
    for (size_t i = 0; i < json_array_size(removed); i++)
        if (strncmp(json_string_value(json_array_get(removed, i)), "protocol:", 9) == 0)
            json_array_remove(removed, i--);
    bool needs_approval = json_array_size(added) > 0;
    enum lc_status to = needs_approval ? LC_UPGRADE_PENDING : LC_READY;
    json_t *diff = json_pack("{s:o, s:o}", "added", added, "removed", removed);
    struct reg_plugin next;
    if (lc_check("upgrade", p->row.status, to, err) < 0 || begin_change(p, &next, err) < 0) {
        json_decref(diff);
        goto out;
    }
    char *diff_text = json_dumps(diff, JSON_COMPACT);
    char *from_version = strdup(p->row.version);
    next.status = to;
    reg_set_str(&next.diff, diff_text);
    reg_set_str(&next.last_error, NULL);
    char **slots[4] = {&next.version, &next.digest, &next.package_dir, &next.manifest};
    if (needs_approval) {
        slots[0] = &next.pending_version;
        slots[1] = &next.pending_digest;
        slots[2] = &next.pending_dir;
        slots[3] = &next.pending_manifest;
    }
    reg_set_str(slots[0], pkg.m->version);
    reg_set_str(slots[1], pkg.digest);
    reg_set_str(slots[2], pkg.dir);
    reg_set_str(slots[3], pkg.manifest_json);
    rc = commit(p, &next, "upgrade", actor, diff_text, 0, err);
    free(diff_text);
    if (rc == 0) {
        json_t *event = json_pack(
            "{s:s, s:s, s:O, s:O}", "from_version", from_version, "to_version", pkg.m->version,
            "added", json_object_get(diff, "added"), "removed", json_object_get(diff, "removed"));
        if (needs_approval) {
            publish(d, EVT_UPGRADE_PENDING, p->row.name, event);
            if (p->w != NULL)
                worker_stop(p->w);
        } else {
            publish(d, EVT_UPGRADED, p->row.name, event);
            if (p->w != NULL)
                revoke_capabilities(p->w->m, pkg.m);
            load_current_package(p, err);
            apply_status(p);
        }
    }
    free(from_version);
    json_decref(diff);
out:
    manifest_free(current);
    package_clear(&pkg);
    return rc;
}

/* upgrade_pending → ready on the pending version (approve) or on the one
 * that ran before (reject). */
static int settle_upgrade(struct plugd *d, const char *name, bool is_approved, const char *actor,
                          struct plugd_error *err)
{
    const char *op = is_approved ? "approve" : "reject";
    struct plugin *p = find_or_fail(d, op, name, err);
    if (p == NULL)
        return -1;
    if (p->row.status != LC_UPGRADE_PENDING)
        return plugd_error_set(err, PLUGD_E_INVALID_TRANSITION,
                               "%s: %s is %s, not upgrade_pending: there is no upgrade to %s", op,
                               name, lc_status_name(p->row.status), op);
    struct reg_plugin next;
    if (begin_change(p, &next, err) < 0)
        return -1;
    char *pending_version = strdup(next.pending_version);
    if (is_approved) {
        char **from[4] = {&next.pending_version, &next.pending_digest, &next.pending_dir,
                          &next.pending_manifest};
        char **to[4] = {&next.version, &next.digest, &next.package_dir, &next.manifest};
        for (int i = 0; i < 4; i++) {
            free(*to[i]);
            *to[i] = *from[i];
            *from[i] = NULL;
        }
    } else {
        reg_set_str(&next.pending_version, NULL);
        reg_set_str(&next.pending_digest, NULL);
        reg_set_str(&next.pending_dir, NULL);
        reg_set_str(&next.pending_manifest, NULL);
    }
    next.status = LC_READY;
    char *from_version = strdup(p->row.version);
    int rc = commit(p, &next, op, actor, NULL, 0, err);
    if (rc == 0) {
        if (is_approved)
            publish(d, EVT_UPGRADED, name,
                    upgraded_payload(from_version, p->row.version, p->row.diff));
        else
            publish(d, EVT_UPGRADE_REJECTED, name,
                    json_pack("{s:s, s:s}", "version", p->row.version, "rejected_version",
                              pending_version));
        load_current_package(p, err);
        apply_status(p);
    }
    free(from_version);
    free(pending_version);
    return rc;
}

int plugd_approve(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    return settle_upgrade(d, name, true, actor, err);
}

int plugd_reject(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    return settle_upgrade(d, name, false, actor, err);
}

int plugd_enable(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "enable", name, err);
    if (p == NULL)
        return -1;
    if (p->row.status == LC_READY || p->row.status == LC_INSTALLED)
        return 0; /* enabled already (or loading) */
    if (p->row.status == LC_UPGRADE_PENDING)
        return plugd_error_set(err, PLUGD_E_INVALID_TRANSITION,
                               "enable: a plugin that is upgrade_pending becomes ready by approve "
                               "or reject, not by enable");
    struct reg_plugin next;
    if (lc_check("enable", p->row.status, LC_READY, err) < 0 || begin_change(p, &next, err) < 0)
        return -1;
    next.status = LC_READY;
    reg_set_str(&next.last_error, NULL);
    if (commit(p, &next, "enable", actor, NULL, 0, err) < 0)
        return -1;
    publish(d, EVT_ENABLED, name, NULL);
    if (p->w == NULL && !load_current_package(p, err))
        return 0;
    apply_status(p);
    return 0;
}

int plugd_disable(struct plugd *d, const char *name, const char *reason, const char *actor,
                  struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "disable", name, err);
    struct reg_plugin next;
    if (p == NULL || lc_check("disable", p->row.status, LC_DISABLED, err) < 0 ||
        begin_change(p, &next, err) < 0)
        return -1;
    next.status = LC_DISABLED;
    if (commit(p, &next, "disable", actor, reason, 0, err) < 0)
        return -1;
    publish(d, EVT_DISABLED, name, json_pack("{s:s?}", "reason", reason));
    apply_status(p);
    return 0;
}

int plugd_uninstall(struct plugd *d, const char *name, bool remove_data, const char *actor,
                    struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "uninstall", name, err);
    struct reg_plugin next;
    if (p == NULL || lc_check("uninstall", p->row.status, LC_UNINSTALLED, err) < 0 ||
        begin_change(p, &next, err) < 0)
        return -1;
    next.status = LC_UNINSTALLED;
    next.uninstalled_at = reg_now();
    reg_set_str(&next.pending_version, NULL);
    reg_set_str(&next.pending_digest, NULL);
    reg_set_str(&next.pending_dir, NULL);
    reg_set_str(&next.pending_manifest, NULL);
    if (commit(p, &next, "uninstall", actor, remove_data ? "data removed" : "data kept",
               remove_data ? REG_PURGE_DATA : 0, err) < 0)
        return -1;
    if (remove_data)
        plugd_remove_data_folder(d, name);
    publish(d, EVT_UNLOADED, name, json_pack("{s:b}", "remove_data", remove_data));
    apply_status(p);
    return 0;
}

/* ------------------------------------------------------------ config */

struct config_change {
    struct plugin *p;
    json_t *config;
    char *actor;
    wk_done_fn done;
    void *ud;
};

static void on_config_applied(const struct plugd_error *err, void *ud)
{
    struct config_change *cc = ud;
    struct plugd_error e;
    struct reg_plugin next;
    if (err == NULL && begin_change(cc->p, &next, &e) == 0) {
        char *text = json_dumps(cc->config, JSON_COMPACT | JSON_SORT_KEYS);
        reg_set_str(&next.config, text);
        free(text);
        if (commit(cc->p, &next, "config", cc->actor, NULL, 0, &e) < 0)
            err = &e;
    }
    cc->done(err, cc->ud);
    json_decref(cc->config);
    free(cc->actor);
    free(cc);
}

void plugd_set_config(struct plugd *d, const char *name, json_t *config, const char *actor,
                      wk_done_fn done, void *ud)
{
    struct plugd_error err;
    struct plugin *p = find_or_fail(d, "config", name, &err);
    if (p != NULL && p->w == NULL)
        plugd_error_set(&err, PLUGD_E_WORKER_UNAVAILABLE, "config: %s has no loadable package",
                        name);
    struct config_change *cc = p && p->w ? calloc(1, sizeof(*cc)) : NULL;
    if (cc == NULL) {
        if (p != NULL && p->w != NULL)
            plugd_error_set(&err, PLUGD_E_NO_MEMORY, "config: no memory");
        done(&err, ud);
        return;
    }
    *cc = (struct config_change){
        .p = p, .config = json_incref(config), .actor = strdup(actor), .done = done, .ud = ud};
    worker_set_config(p->w, config, on_config_applied, cc);
}

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

/* True when folder `name` looks as it did at the last scan (and records
 * how it looks now). */
static bool is_unchanged(struct plugd *d, const char *name, const char *dir)
{
    char sig[128];
    folder_signature(dir, sig, sizeof(sig));
    for (size_t i = 0; i < d->n_scanned; i++) {
        if (strcmp(d->scanned[i].name, name) != 0)
            continue;
        if (strcmp(d->scanned[i].signature, sig) == 0)
            return true;
        snprintf(d->scanned[i].signature, sizeof(d->scanned[i].signature), "%s", sig);
        return false;
    }
    struct scan_entry *grown = realloc(d->scanned, (d->n_scanned + 1) * sizeof(*grown));
    if (grown == NULL)
        return true;
    d->scanned = grown;
    struct scan_entry *e = &d->scanned[d->n_scanned++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->signature, sizeof(e->signature), "%s", sig);
    return false;
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
    if (p == NULL || p->row.status == LC_UNINSTALLED)
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

void plugd_scan(struct plugd *d)
{
    if (d->plugins_dir == NULL)
        return;
    DIR *dh = opendir(d->plugins_dir);
    if (dh == NULL) {
        log_plugd("error", NULL, "cannot open the plugins folder %s: %s", d->plugins_dir,
                  strerror(errno));
        return;
    }
    char *names[PLUGD_MAX_PLUGINS];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && n < PLUGD_MAX_PLUGINS) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s/plugin.json", d->plugins_dir, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            names[n++] = strdup(e->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof(names[0]), compare_names);
    for (size_t i = 0; i < n; i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", d->plugins_dir, names[i]);
        if (!is_unchanged(d, names[i], dir))
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

void plugd_sweep_retention(struct plugd *d)
{
    double now = reg_now();
    for (size_t i = 0; i < d->n_plugins; i++) {
        struct plugin *p = d->plugins[i];
        if (p->row.status != LC_UNINSTALLED || now - p->row.uninstalled_at < d->data_retention)
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

/* ------------------------------------------------------------ open, close */

/* Brings back one plugin from its registry row. */
static void restore_plugin(const struct reg_plugin *row, void *ud)
{
    struct plugd *d = ud;
    struct plugd_error err;
    struct plugin *p = add_plugin(d, &err);
    if (p == NULL || reg_plugin_copy(&p->row, row) < 0) {
        log_plugd("error", row->name, "cannot restore: %s", p ? "no memory" : err.message);
        if (p != NULL)
            remove_last_plugin(d);
        return;
    }
    if (row->status == LC_UNINSTALLED)
        return;
    struct manifest *m = load_package(row->package_dir, row->config, &err);
    if (m == NULL) {
        log_plugd("error", row->name, "package %s cannot be loaded: %s", row->package_dir,
                  err.message);
        mark_error(p, err.message);
        return;
    }
    replace_worker_manifest(p, m);
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
        apply_status(d->plugins[d->n_started]);
    if (d->n_started < d->n_plugins && !d->is_stopping)
        return;
    ev_idle_stop(loop, w);
    if (d->is_stopping)
        return;
    plugd_scan(d);
    if (d->plugins_dir != NULL)
        ev_timer_start(loop, &d->scan_t);
    ev_timer_start(loop, &d->retention_t);
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
    if (d->state_dir == NULL || d->bus == NULL || (d->reg = reg_open(path, err)) == NULL) {
        if (d->state_dir == NULL || d->bus == NULL)
            plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory to open plugd");
        plugd_close(d);
        return -1;
    }
    d->services = (struct services){.reg = d->reg, .bus = d->bus};
    double interval = o->scan_interval > 0 ? o->scan_interval : PLUGD_SCAN_INTERVAL;
    ev_timer_init(&d->scan_t, on_scan_timer, interval, interval);
    ev_timer_init(&d->retention_t, on_retention_timer, PLUGD_RETENTION_PERIOD,
                  PLUGD_RETENTION_PERIOD);
    ev_idle_init(&d->start_w, on_start_batch);
    d->scan_t.data = d->retention_t.data = d->start_w.data = d;
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

void plugd_remove_data_folder(const struct plugd *d, const char *name)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/data/%s", d->state_dir, name);
    remove_tree(dir);
}

void plugd_close(struct plugd *d)
{
    if (d->loop != NULL) {
        ev_idle_stop(d->loop, &d->start_w);
        ev_timer_stop(d->loop, &d->scan_t);
        ev_timer_stop(d->loop, &d->retention_t);
    }
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

void plugd_stop_all(struct plugd *d)
{
    if (!d->is_stopping)
        log_plugd("info", NULL, "stopping %zu plugin(s)", d->n_plugins);
    d->is_stopping = true;
    ev_timer_stop(d->loop, &d->scan_t);
    ev_timer_stop(d->loop, &d->retention_t);
    for (size_t i = 0; i < d->n_plugins; i++)
        if (d->plugins[i]->w != NULL)
            worker_stop(d->plugins[i]->w);
    if (all_stopped(d))
        ev_break(d->loop, EVBREAK_ALL);
}
