/* The lifecycle operations, executed from their rows of lc_ops
 * (lifecycle.c): each operator command checks the row's from-statuses,
 * builds the plugin's next registry row and its events' payloads, and
 * hands them to ops_run(), the one path every operation takes: commit the row
 * with its audit row (registry.c), publish plugin.status_changed and the
 * row's events (events.c), then do the row's worker action and apply the
 * status (worker.c). Worker outcomes come back through outcomes.c and
 * run rows too (load, fail). docs/lifecycle.md describes them. */
#include "operations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generations.h"
#include "package.h"

/* ------------------------------------------------------------ lookup */

static struct plugin *find_or_fail(struct plugd *d, const char *op, const char *name,
                                   struct plugd_error *err)
{
    struct plugin *p = plugd_find(d, name, strlen(name));
    if (p == NULL)
        plugd_error_set(err, PLUGD_E_PLUGIN_NOT_FOUND, "%s: no plugin named \"%s\"", op, name);
    return p;
}

/* A copy of the plugin's row to change, or -1 (no memory). */
int ops_begin_change(const struct plugin *p, struct reg_plugin *next, struct plugd_error *err)
{
    memset(next, 0, sizeof(*next));
    if (reg_plugin_copy(next, &p->row) < 0)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a transition");
    return 0;
}

/* ------------------------------------------------------------ workers */

/* A start that fails at once (the entrypoint cannot be run) is reported
 * here, not through on_worker_state. */
static void start_worker(struct plugin *p, struct instance *i)
{
    struct plugd_error err;
    if (p->d->is_stopping)
        return;
    if (worker_start(i->w, &err) < 0) {
        log_plugd("error", p->row.name, "cannot start: %s", err.message);
        ops_mark_error(p, err.message);
    }
}

void ops_apply_status(struct plugin *p)
{
    struct instance *i = plugin_serving_instance(p);
    if (i == NULL)
        return;
    bool should_run = lc_runs_worker(p->row.status);
    if (should_run && !plugin_is_draining(p))
        start_worker(p, i); /* else once the old instance has stopped */
    else if (!should_run)
        worker_stop(i->w);
}

/* A new instance runs the package the plugin's row names; the one that
 * served before retires (drains, losing at once the capabilities the new
 * one lacks, and stops; the new one starts after it). False, with the
 * plugin marked error, when that package cannot be loaded. */
static bool load_row_package(struct plugin *p)
{
    struct plugd_error err;
    struct manifest *m = pkg_load(p->row.package_dir, p->row.config, &err);
    if (m == NULL) {
        log_plugd("error", p->row.name, "package %s cannot be loaded: %s", p->row.package_dir,
                  err.message);
        ops_mark_error(p, err.message);
        return false;
    }
    struct instance *old = plugin_serving_instance(p);
    if (old != NULL)
        pkg_revoke_capabilities(old->w->m, m);
    if (instance_add(p, m, p->row.digest, ops_on_worker_state, ops_on_worker_health) == NULL)
        return false; /* the old one keeps serving */
    if (old != NULL)
        instance_retire(old);
    return true;
}

void ops_restore(struct plugin *p)
{
    if (!lc_is_removed(p->row.status))
        load_row_package(p);
}

static void do_worker_action(struct plugin *p, enum lc_worker_action a)
{
    if ((a == LC_WORKER_LOAD || (a == LC_WORKER_START && p->instances == NULL)) &&
        !load_row_package(p))
        return; /* the fail operation ran meanwhile */
    ops_apply_status(p);
}

/* ------------------------------------------------------------ run */

static void publish_status_change(struct plugd *d, const char *plugin, int from, enum lc_status to)
{
    if (!lc_changes_status(from, to))
        return;
    ev_bus_emit(
        d->bus, EVT_STATUS_CHANGED, plugin,
        json_pack("{s:o, s:s}", "previous_status",
                  from < 0 ? json_null() : json_string(lc_status_name((enum lc_status)from)),
                  "new_status", lc_status_name(to)));
}

/* The one path of every operation: commits `next` (the plugin's row after
 * it, taken over; its status is set from the row of lc_ops) with its
 * audit row; then makes it the plugin's row, publishes
 * plugin.status_changed (when the status changed) and the row's events,
 * does the row's worker action and applies the status. On failure nothing
 * changed. The caller has checked the row's from-statuses. */
int ops_run(struct plugin *p, struct reg_plugin *next, struct op_run *r, struct plugd_error *err)
{
    const struct lc_op_row *op = &lc_ops[r->op];
    int from = p->row.name ? (int)p->row.status : -1;
    int rc = -1;
    if (op->to != LC_TO_KEEP)
        next->status = (enum lc_status)op->to;
    if (lc_check_change(op->command, from, next->status, err) < 0)
        goto out;
    next->updated_at = reg_now();
    struct reg_audit a = {.actor = r->actor, .action = op->audit, .reason = r->reason};
    if (reg_save_transition(p->d->reg, next, from, &a, r->flags, err) < 0) {
        log_plugd("error", next->name, "%s: %s", op->audit, err->message);
        goto out;
    }
    log_plugd("info", next->name, "%s by %s: %s -> %s%s%s", op->audit, r->actor,
              from < 0 ? "new" : lc_status_name((enum lc_status)from), lc_status_name(next->status),
              r->reason ? ": " : "", r->reason ? r->reason : "");
    reg_plugin_clear(&p->row);
    p->row = *next;
    memset(next, 0, sizeof(*next));
    if (r->flags & REG_PURGE_DATA)
        plugd_remove_data_folder(p->d, p->row.name);
    publish_status_change(p->d, p->row.name, from, p->row.status);
    for (size_t i = 0; i < op->n_events; i++) {
        ev_bus_emit(p->d->bus, op->events[i], p->row.name, r->payloads[i]);
        r->payloads[i] = NULL;
    }
    do_worker_action(p, op->worker);
    rc = 0;
out:
    reg_plugin_clear(next);
    for (size_t i = 0; i < LC_OP_EVENTS; i++)
        json_decref(r->payloads[i]);
    return rc;
}

/* ------------------------------------------------------------ install */

/* The fields of `next` that name the package (`slots`: version, digest,
 * folder, manifest), set from `pkg`. -1 on no memory. */
static int set_package(char **slots[4], const struct pkg *pkg)
{
    const char *values[4] = {pkg->m->version, pkg->digest, pkg->dir, pkg->manifest_json};
    for (int i = 0; i < 4; i++)
        if (reg_set_str(slots[i], values[i]) < 0)
            return -1;
    return 0;
}

int plugd_install(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err)
{
    struct pkg pkg;
    if (pkg_read(d->state_dir, src_dir, &pkg, err) < 0)
        return -1;
    const char *name = pkg.m->name;
    struct plugin *p = plugd_find(d, name, strlen(name));
    bool is_new = p == NULL;
    if (!is_new && !lc_is_removed(p->row.status) && strcmp(p->row.digest, pkg.digest) == 0) {
        pkg_clear(&pkg);
        return 0; /* this very package is installed already */
    }
    struct op_run r = {.op = is_new ? LC_OP_INSTALL : LC_OP_REINSTALL,
                       .actor = actor,
                       .flags = REG_GEN(GEN_CANDIDATE)};
    struct reg_plugin next = {0};
    if (lc_op_check(r.op, is_new ? -1 : (int)p->row.status, err) < 0 ||
        (is_new && (p = plugd_add_plugin(d, err)) == NULL) ||
        (!is_new && ops_begin_change(p, &next, err) < 0)) {
        pkg_clear(&pkg);
        return -1;
    }
    next.installed_at = reg_now();
    next.uninstalled_at = 0;
    char **slots[4] = {&next.version, &next.digest, &next.package_dir, &next.manifest};
    int rc = -1;
    if (reg_set_str(&next.name, name) < 0 || set_package(slots, &pkg) < 0 ||
        reg_set_str(&next.last_error, NULL) < 0 || reg_set_str(&next.diff, NULL) < 0) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "install: no memory");
        reg_plugin_clear(&next);
    } else {
        rc = ops_run(p, &next, &r, err);
    }
    pkg_clear(&pkg);
    if (rc < 0 && is_new)
        plugd_remove_last_plugin(d);
    return rc;
}

/* ------------------------------------------------------------ upgrade */

/* plugin.upgraded / plugin.upgrade_pending: the versions and the
 * capability change (`diff_text`, the row's diff) of the upgrade. */
static json_t *upgrade_payload(const char *from, const char *to, const char *diff_text)
{
    json_t *diff = diff_text ? json_loads(diff_text, 0, NULL) : NULL;
    json_t *added = json_object_get(diff, "added"), *removed = json_object_get(diff, "removed");
    json_t *v = json_pack("{s:s, s:s, s:o, s:o}", "from_version", from, "to_version", to, "added",
                          json_is_array(added) ? json_incref(added) : json_array(), "removed",
                          json_is_array(removed) ? json_incref(removed) : json_array());
    json_decref(diff);
    return v;
}

/* The manifest `pkg` is diffed against: the serving instance's, else the
 * row's package (`*loaded`, for the caller to free). */
static const struct manifest *upgrade_base(struct plugin *p, struct manifest **loaded,
                                           struct plugd_error *err)
{
    *loaded = NULL;
    struct instance *i = plugin_serving_instance(p);
    if (i != NULL)
        return i->w->m;
    return *loaded = pkg_load(p->row.package_dir, NULL, err);
}

/* The next row of an upgrade to `pkg` with capability diff `diff_text`:
 * the running version's fields, or the pending ones when it waits for
 * approval. -1 on no memory. */
static int set_upgrade(struct reg_plugin *next, const struct pkg *pkg, const char *diff_text,
                       bool needs_approval)
{
    char **slots[4] = {&next->version, &next->digest, &next->package_dir, &next->manifest};
    if (needs_approval) {
        slots[0] = &next->pending_version;
        slots[1] = &next->pending_digest;
        slots[2] = &next->pending_dir;
        slots[3] = &next->pending_manifest;
    }
    if (reg_set_str(&next->diff, diff_text) < 0 || reg_set_str(&next->last_error, NULL) < 0)
        return -1;
    return set_package(slots, pkg);
}

/* An upgrade (`op`) takes a newer version only, a reload the same one. */
static int check_version(const struct plugin *p, const struct pkg *pkg, enum lc_op op,
                         struct plugd_error *err)
{
    const char *name = pkg->m->name, *to = pkg->m->version, *from = p->row.version;
    int order = semver_compare(to, from);
    if (op == LC_OP_RELOAD && order != 0)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "reload: %s %s is not the installed %s (a new version goes "
                               "through upgrade)",
                               name, to, from);
    if (op == LC_OP_UPGRADE && order <= 0)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "upgrade: %s %s is not newer than the installed %s%s", name, to,
                               from, order == 0 ? " (a rebuild of it goes through reload)" : "");
    return 0;
}

/* `op`: LC_OP_UPGRADE or LC_OP_RELOAD, the row run unless capabilities
 * are added (then upgrade_pending, for both). */
static int upgrade_to(struct plugin *p, const struct pkg *pkg, const struct manifest *base,
                      enum lc_op op, const char *actor, struct plugd_error *err)
{
    if (strcmp(p->row.digest, pkg->digest) == 0)
        return 0; /* this very package runs already */
    if (check_version(p, pkg, op, err) < 0)
        return -1;
    json_t *diff = pkg_capability_diff(base, pkg->m);
    char *diff_text = diff ? json_dumps(diff, JSON_COMPACT) : NULL;
    bool needs_approval = json_array_size(json_object_get(diff, "added")) > 0;
    json_decref(diff);
    struct op_run r = {.op = needs_approval ? LC_OP_UPGRADE_PENDING : op,
                       .actor = actor,
                       .reason = diff_text,
                       .flags = REG_GEN(needs_approval ? GEN_CANDIDATE : GEN_SWITCH)};
    struct reg_plugin next;
    int rc = -1;
    if (diff_text == NULL)
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "upgrade: no memory");
    else if (lc_op_check(r.op, (int)p->row.status, err) < 0 || ops_begin_change(p, &next, err) < 0)
        ;
    else if (set_upgrade(&next, pkg, diff_text, needs_approval) < 0 ||
             (r.payloads[0] = upgrade_payload(p->row.version, pkg->m->version, diff_text)) ==
                 NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "upgrade: no memory");
        reg_plugin_clear(&next);
    } else {
        rc = ops_run(p, &next, &r, err);
    }
    free(diff_text);
    return rc;
}

/* upgrade (`name` NULL: the package's) or reload (`name` must be the
 * package's) of the plugin to the package in `src_dir`. */
static int upgrade_from(struct plugd *d, enum lc_op op, const char *name, const char *src_dir,
                        const char *actor, struct plugd_error *err)
{
    struct pkg pkg;
    if (pkg_read(d->state_dir, src_dir, &pkg, err) < 0)
        return -1;
    const char *command = lc_ops[op].command;
    struct plugin *p = NULL;
    if (name != NULL && strcmp(name, pkg.m->name) != 0)
        plugd_error_set(err, PLUGD_E_INVALID_REQUEST, "%s: %s holds %s, not %s", command, src_dir,
                        pkg.m->name, name);
    else
        p = find_or_fail(d, command, pkg.m->name, err);
    struct manifest *loaded = NULL;
    const struct manifest *base = NULL;
    int rc = -1;
    /* the from-statuses of the row (its upgrade_pending one has fewer) */
    if (p != NULL && lc_op_check(op, (int)p->row.status, err) == LC_OP_RUNS &&
        (base = upgrade_base(p, &loaded, err)) != NULL)
        rc = upgrade_to(p, &pkg, base, op, actor, err);
    manifest_free(loaded);
    pkg_clear(&pkg);
    return rc;
}

int plugd_upgrade(struct plugd *d, const char *src_dir, const char *actor, struct plugd_error *err)
{
    return upgrade_from(d, LC_OP_UPGRADE, NULL, src_dir, actor, err);
}

int plugd_reload(struct plugd *d, const char *name, const char *src_dir, const char *actor,
                 struct plugd_error *err)
{
    return upgrade_from(d, LC_OP_RELOAD, name, src_dir, actor, err);
}

/* upgrade_pending → ready on the pending version (approve) or on the one
 * that ran before (reject). */
static int settle_upgrade(struct plugd *d, const char *name, enum lc_op op, const char *actor,
                          struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, lc_ops[op].command, name, err);
    struct reg_plugin next;
    if (p == NULL || lc_op_check(op, (int)p->row.status, err) < 0 ||
        ops_begin_change(p, &next, err) < 0)
        return -1;
    struct op_run r = {.op = op,
                       .actor = actor,
                       .flags = REG_GEN(op == LC_OP_APPROVE ? GEN_ACTIVATE : GEN_REJECT)};
    char **pending[4] = {&next.pending_version, &next.pending_digest, &next.pending_dir,
                         &next.pending_manifest};
    char **current[4] = {&next.version, &next.digest, &next.package_dir, &next.manifest};
    if (op == LC_OP_APPROVE) {
        r.payloads[0] = upgrade_payload(p->row.version, p->row.pending_version, p->row.diff);
        for (int i = 0; i < 4; i++) {
            free(*current[i]);
            *current[i] = *pending[i];
            *pending[i] = NULL;
        }
    } else {
        r.payloads[0] = json_pack("{s:s, s:s}", "version", p->row.version, "rejected_version",
                                  p->row.pending_version);
        for (int i = 0; i < 4; i++)
            reg_set_str(pending[i], NULL);
    }
    return ops_run(p, &next, &r, err);
}

int plugd_approve(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    return settle_upgrade(d, name, LC_OP_APPROVE, actor, err);
}

int plugd_reject(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    return settle_upgrade(d, name, LC_OP_REJECT, actor, err);
}

/* ------------------------------------------------------------ enable, disable, uninstall */

int plugd_enable(struct plugd *d, const char *name, const char *actor, struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "enable", name, err);
    struct reg_plugin next;
    int check = p ? lc_op_check(LC_OP_ENABLE, (int)p->row.status, err) : -1;
    if (check != LC_OP_RUNS)
        return check; /* LC_OP_NOTHING: enabled already (or loading) */
    if (ops_begin_change(p, &next, err) < 0)
        return -1;
    reg_set_str(&next.last_error, NULL);
    struct op_run r = {.op = LC_OP_ENABLE, .actor = actor};
    return ops_run(p, &next, &r, err);
}

int plugd_disable(struct plugd *d, const char *name, const char *reason, const char *actor,
                  struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "disable", name, err);
    struct reg_plugin next;
    if (p == NULL || lc_op_check(LC_OP_DISABLE, (int)p->row.status, err) < 0 ||
        ops_begin_change(p, &next, err) < 0)
        return -1;
    struct op_run r = {.op = LC_OP_DISABLE, .actor = actor, .reason = reason};
    r.payloads[0] = json_pack("{s:s?}", "reason", reason);
    return ops_run(p, &next, &r, err);
}

int plugd_uninstall(struct plugd *d, const char *name, bool remove_data, const char *actor,
                    struct plugd_error *err)
{
    struct plugin *p = find_or_fail(d, "uninstall", name, err);
    struct reg_plugin next;
    if (p == NULL || lc_op_check(LC_OP_UNINSTALL, (int)p->row.status, err) < 0 ||
        ops_begin_change(p, &next, err) < 0)
        return -1;
    next.uninstalled_at = reg_now();
    reg_set_str(&next.pending_version, NULL);
    reg_set_str(&next.pending_digest, NULL);
    reg_set_str(&next.pending_dir, NULL);
    reg_set_str(&next.pending_manifest, NULL);
    struct op_run r = {.op = LC_OP_UNINSTALL,
                       .actor = actor,
                       .reason = remove_data ? "data removed" : "data kept",
                       .flags = (remove_data ? REG_PURGE_DATA : 0) | REG_GEN(GEN_END)};
    r.payloads[0] = json_pack("{s:b}", "remove_data", remove_data);
    return ops_run(p, &next, &r, err);
}

/* ------------------------------------------------------------ config */

struct config_change {
    struct plugin *p;
    json_t *config;
    char *actor;
    wk_done_fn done;
    void *ud;
};

/* The worker took the config (or refused it: then nothing is stored). */
static void on_config_applied(const struct plugd_error *err, void *ud)
{
    struct config_change *cc = ud;
    struct plugd_error e;
    struct reg_plugin next;
    char *text = NULL;
    if (err == NULL && ops_begin_change(cc->p, &next, &e) == 0) {
        struct instance *i = plugin_serving_instance(cc->p);
        bool is_running = i != NULL && i->w->state == WK_RUNNING; /* it took the config */
        struct op_run r = {.op = LC_OP_CONFIG,
                           .actor = cc->actor,
                           .flags = REG_GEN(GEN_SWITCH) | (is_running ? REG_GEN_KNOWN_GOOD : 0)};
        text = json_dumps(cc->config, JSON_COMPACT | JSON_SORT_KEYS);
        if (text == NULL || reg_set_str(&next.config, text) < 0) {
            plugd_error_set(&e, PLUGD_E_NO_MEMORY, "config: no memory");
            reg_plugin_clear(&next);
            err = &e;
        } else if (ops_run(cc->p, &next, &r, &e) < 0) {
            err = &e;
        }
    } else if (err == NULL) {
        err = &e;
    }
    cc->done(err, cc->ud);
    free(text);
    json_decref(cc->config);
    free(cc->actor);
    free(cc);
}

void plugd_set_config(struct plugd *d, const char *name, json_t *config, const char *actor,
                      wk_done_fn done, void *ud)
{
    struct plugd_error err;
    struct plugin *p = find_or_fail(d, "config", name, &err);
    struct config_change *cc = NULL;
    if (p != NULL && lc_op_check(LC_OP_CONFIG, (int)p->row.status, &err) < 0)
        p = NULL;
    struct instance *i = p ? plugin_serving_instance(p) : NULL;
    if (p != NULL && i == NULL)
        plugd_error_set(&err, PLUGD_E_WORKER_UNAVAILABLE, "config: %s has no loadable package",
                        name);
    else if (p != NULL &&
             ((cc = calloc(1, sizeof(*cc))) == NULL || (cc->actor = strdup(actor)) == NULL))
        plugd_error_set(&err, PLUGD_E_NO_MEMORY, "config: no memory");
    if (cc == NULL || cc->actor == NULL) {
        free(cc);
        done(&err, ud);
        return;
    }
    cc->p = p;
    cc->config = json_incref(config);
    cc->done = done;
    cc->ud = ud;
    worker_set_config(i->w, config, on_config_applied, cc);
}
