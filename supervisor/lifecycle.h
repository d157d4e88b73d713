/* The plugin lifecycle as data (docs/lifecycle.md; ../shared/ARCHITECTURE.md
 * "Lifecycle"): the persisted statuses, the one table of allowed
 * transitions, the one table of operations (lc_ops: what each may start
 * from, where it goes, what it publishes, audits and does to the worker),
 * and the predicates that say what a status means. No other file compares
 * statuses; operations.c executes lc_ops rows. */
#ifndef PLUGD_LIFECYCLE_H
#define PLUGD_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>

#include "event_table.h"
#include "plugd/error.h"

enum lc_status {
    LC_INSTALLED,
    LC_READY,
    LC_DISABLED,
    LC_ERROR,
    LC_UPGRADE_PENDING,
    LC_UNINSTALLED,
    LC_STATUS_COUNT
};

/* "upgrade_pending" */
const char *lc_status_name(enum lc_status s);

/* Looks up a status by name; -1 when there is none. */
int lc_status_from_name(const char *name, enum lc_status *s);

bool lc_is_allowed(enum lc_status from, enum lc_status to);

/* 0 when `from` → `to` is in the table; otherwise -1 with err
 * invalid_transition naming both states and the operation. */
int lc_check(const char *operation, enum lc_status from, enum lc_status to,
             struct plugd_error *err);

/* True when a row that was `from` (< 0: a new plugin) and is now `to`
 * changed status: plugin.status_changed is published then. */
bool lc_changes_status(int from, enum lc_status to);

/* lc_check for an operation's change of a plugin's row: a new plugin
 * (`from` < 0) or a status that stays (a config change) needs no
 * transition. */
int lc_check_change(const char *operation, int from, enum lc_status to, struct plugd_error *err);

/* What a status means. The worker of a plugin runs exactly when
 * lc_runs_worker (ops_apply_status in operations.c holds it to that); calls
 * reach it only when lc_serves_calls; a removed plugin keeps its row (and,
 * for the retention, its data) but no package is loaded for it. */
bool lc_runs_worker(enum lc_status s);
bool lc_serves_calls(enum lc_status s);
bool lc_is_removed(enum lc_status s);

/* ---------------------------------------------------------- operations */

enum lc_op {
    LC_OP_INSTALL,
    LC_OP_REINSTALL,
    LC_OP_LOAD,
    LC_OP_FAIL,
    LC_OP_ENABLE,
    LC_OP_DISABLE,
    LC_OP_UPGRADE,
    LC_OP_UPGRADE_PENDING,
    LC_OP_RELOAD,
    LC_OP_APPROVE,
    LC_OP_REJECT,
    LC_OP_UNINSTALL,
    LC_OP_CONFIG,
    LC_OP_COUNT
};

/* What an operation does to the plugin's worker once its row is committed
 * and its events are published. Whatever it is, ops_apply_status (the status
 * decides) runs last. */
enum lc_worker_action {
    LC_WORKER_KEEP,   /* nothing more: the status decides */
    LC_WORKER_START,  /* load the row's package if the plugin has no worker yet */
    LC_WORKER_STOP,   /* nothing more: the status stops it (drained, then stopped) */
    LC_WORKER_LOAD,   /* the row's package becomes the worker's: the old one drains
                         (losing removed capabilities at once), then the new one runs */
    LC_WORKER_CONFIG, /* the worker took the config before the commit (hot, or restarted) */
    LC_WORKER_ACTION_COUNT
};

/* "keep", "start", "stop", "load", "config": as docs/lifecycle.md writes them */
const char *lc_worker_action_name(enum lc_worker_action a);

#define LC_FROM(s)   (1u << (s))
#define LC_FROM_NEW  (1u << LC_STATUS_COUNT) /* no plugin of that name yet */
#define LC_TO_KEEP   (-1)                    /* lc_op_row.to: the status stays */
#define LC_OP_EVENTS 2                       /* at most, per row */

struct lc_op_row {
    const char *name;    /* the row's name in docs/lifecycle.md */
    const char *command; /* what refusals start with ("install:") */
    const char *audit;   /* the audit row's action */
    unsigned from;       /* LC_FROM() mask of the statuses it runs from */
    unsigned unchanged;  /* LC_FROM() mask it accepts doing nothing from */
    int to;              /* an lc_status, or LC_TO_KEEP */
    size_t n_events;     /* published in order after plugin.status_changed (which
                            comes first whenever the status changes) */
    enum evt_type events[LC_OP_EVENTS];
    enum lc_worker_action worker;
    const char *refusal; /* after "<command>: a plugin that is <status> " when
                            refused; NULL: "cannot become <to>" */
};

extern const struct lc_op_row lc_ops[LC_OP_COUNT];

/* Results of lc_op_check. */
#define LC_OP_RUNS    1 /* the operation runs from this status */
#define LC_OP_NOTHING 0 /* accepted with nothing to do */

/* Whether `op` runs from `from` (-1: no plugin yet): LC_OP_RUNS,
 * LC_OP_NOTHING, or -1 with err invalid_transition naming the status and
 * the row's target. */
int lc_op_check(enum lc_op op, int from, struct plugd_error *err);

/* True when `op` runs from `s` (a shorthand of lc_op_check for plugd's own
 * operations, whose refusals are silent). */
bool lc_op_runs_from(enum lc_op op, enum lc_status s);

#endif
