/* What daemon.c and scan.c share with operations.c: the plugins' table
 * (daemon.c) and the two entry points into the operations that are not
 * operator commands (a restored plugin's package, the convergence rule).
 * The operations themselves are plugd.h's plugd_install ... plugd_set_config. */
#ifndef PLUGD_OPERATIONS_H
#define PLUGD_OPERATIONS_H

#include "plugd.h"

/* daemon.c: a new, empty plugin at the end of d->plugins, or NULL with err
 * (plugd holds PLUGD_MAX_PLUGINS, or no memory). */
struct plugin *plugd_add_plugin(struct plugd *d, struct plugd_error *err);
/* daemon.c: takes back the plugin plugd_add_plugin just added. */
void plugd_remove_last_plugin(struct plugd *d);
/* daemon.c: a worker stopped; when plugd is stopping and it was the last,
 * the loop ends. */
void plugd_note_stopped(struct plugd *d);

/* The worker of a plugin runs exactly when its status says so
 * (lc_runs_worker): started, or stopped gracefully. Called after every
 * status change and every time the worker stops, so that the two converge
 * whatever order operations came in. */
void ops_apply_status(struct plugin *p);

/* Gives a restored plugin (its row read from the registry) a worker for
 * the package its row names; when that package cannot be loaded, the
 * plugin becomes error (the fail operation) and has none. */
void ops_restore(struct plugin *p);

/* One operation on one plugin, as ops_run takes it. */
struct op_run {
    enum lc_op op;
    const char *actor, *reason;
    unsigned flags;                 /* of reg_save_transition */
    json_t *payloads[LC_OP_EVENTS]; /* of the row's events, in order (owned) */
};

/* A copy of the plugin's row to change, or -1 (no memory). */
int ops_begin_change(const struct plugin *p, struct reg_plugin *next, struct plugd_error *err);

/* The one path of every operation (operations.c): commits `next` (taken
 * over) with its audit row, publishes, does the row's worker action and
 * applies the status. 0, or -1 with err and nothing changed. */
int ops_run(struct plugin *p, struct reg_plugin *next, struct op_run *r, struct plugd_error *err);

/* outcomes.c: an instance's worker changed state or health. */
void ops_on_worker_state(struct worker *w, enum wk_state from, void *ud);
void ops_on_worker_health(struct worker *w, const char *why, void *ud);

/* outcomes.c: → error (the fail row), when the status still allows it. */
void ops_mark_error(struct plugin *p, const char *why);

#endif
