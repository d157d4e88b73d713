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

#endif
