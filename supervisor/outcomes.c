/* What a worker's state and health changes mean for its plugin: the
 * events they publish and the lifecycle rows they run (load once it has
 * initialized, fail when plugd gave up on it), the known-good mark of its
 * generation, and the convergence rule once it stopped. instance.c
 * registers these with every instance's worker. */
#include "operations.h"

#include <string.h>

#include "generations.h"

/* → error, when the status still allows it (a disable or uninstall that
 * came meanwhile makes the failure moot). */
void ops_mark_error(struct plugin *p, const char *why)
{
    struct plugd_error err;
    struct reg_plugin next;
    if (!lc_op_runs_from(LC_OP_FAIL, p->row.status) || ops_begin_change(p, &next, &err) < 0)
        return;
    struct op_run r = {
        .op = LC_OP_FAIL, .actor = "plugd", .reason = why, .flags = REG_GEN(GEN_FAIL)};
    r.payloads[0] = json_pack("{s:s}", "error", why);
    if (reg_set_str(&next.last_error, why) < 0) {
        log_plugd("error", p->row.name, "fail: no memory for the reason %s", why);
        reg_plugin_clear(&next);
        json_decref(r.payloads[0]);
        return;
    }
    ops_run(p, &next, &r, &err);
}

/* installed → ready once the worker has initialized. */
static void mark_loaded(struct plugin *p)
{
    struct plugd_error err;
    struct reg_plugin next;
    if (!lc_op_runs_from(LC_OP_LOAD, p->row.status) || ops_begin_change(p, &next, &err) < 0)
        return;
    reg_set_str(&next.last_error, NULL);
    struct op_run r = {
        .op = LC_OP_LOAD, .actor = "plugd", .flags = REG_GEN(GEN_ACTIVATE) | REG_GEN_KNOWN_GOOD};
    r.payloads[0] = json_pack("{s:s}", "version", next.version);
    ops_run(p, &next, &r, &err);
}

/* The serving instance's worker runs initialized: the generation of its
 * package is known-good (docs/decisions.md: initialize, not the first
 * plugd.health, which comes only a health interval later). */
static void note_known_good(struct plugin *p, struct instance *i)
{
    struct plugd_error err;
    if (i->is_retiring || p->row.digest == NULL || strcmp(i->digest, p->row.digest) != 0 ||
        lc_is_removed(p->row.status))
        return;
    if (reg_mark_known_good(p->d->reg, p->row.name, i->digest, &err) < 0)
        log_plugd("error", p->row.name, "generation: %s", err.message);
}

void ops_on_worker_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)from;
    struct instance *i = ud;
    struct plugin *p = i->p;
    struct plugd *d = p->d;
    const char *name = p->row.name;
    switch (w->state) {
    case WK_RUNNING:
        ev_bus_emit(d->bus, EVT_WORKER_STARTED, name,
                    json_pack("{s:i, s:s}", "pid", (json_int_t)w->pid, "version", w->m->version));
        if (w->restarts > i->restarts_seen)
            ev_bus_emit(d->bus, EVT_WORKER_RESTARTED, name,
                        json_pack("{s:I}", "restarts", (json_int_t)w->restarts));
        i->restarts_seen = w->restarts;
        mark_loaded(p);
        note_known_good(p, i);
        break;
    case WK_BACKOFF:
        ev_bus_emit(d->bus, EVT_WORKER_CRASHED, name,
                    json_pack("{s:s, s:s}", "reason", w->last_error.message, "exit", w->last_exit));
        break;
    case WK_STOPPED:
        ev_bus_emit(d->bus, EVT_WORKER_STOPPED, name,
                    json_pack("{s:s, s:s}", "exit", w->last_exit, "reason",
                              w->is_failed ? w->last_error.message : "stopped"));
        if (i->is_retiring) {
            instances_reap_later(d); /* the old version is gone, however it ended */
            ops_apply_status(p);
        } else if (w->is_failed) {
            ops_mark_error(p, w->last_error.message); /* given up: it stays stopped */
        } else {
            /* the status decides, whatever was asked while it stopped: an
             * enable or a config restart starts it again, a disable not */
            ops_apply_status(p);
        }
        plugd_note_stopped(d);
        break;
    default:
        break;
    }
}

void ops_on_worker_health(struct worker *w, const char *why, void *ud)
{
    (void)w;
    struct plugin *p = ((struct instance *)ud)->p;
    if (why != NULL)
        ev_bus_emit(p->d->bus, EVT_HEALTH_DEGRADED, p->row.name, json_pack("{s:s}", "reason", why));
    else
        ev_bus_emit(p->d->bus, EVT_HEALTH_RECOVERED, p->row.name, NULL);
}
