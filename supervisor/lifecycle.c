#include "lifecycle.h"

#include <string.h>

static const char *const status_names[LC_STATUS_COUNT] = {
    [LC_INSTALLED] = "installed",
    [LC_READY] = "ready",
    [LC_DISABLED] = "disabled",
    [LC_ERROR] = "error",
    [LC_UPGRADE_PENDING] = "upgrade_pending",
    [LC_UNINSTALLED] = "uninstalled",
};

/* allowed[from][to]: exactly the table of ARCHITECTURE.md; every row of
 * lc_ops keeps to it (test_operations.c). */
static const bool allowed[LC_STATUS_COUNT][LC_STATUS_COUNT] = {
    [LC_INSTALLED] = {[LC_READY] = true, [LC_ERROR] = true, [LC_UNINSTALLED] = true},
    [LC_READY] = {[LC_READY] = true,
                  [LC_DISABLED] = true,
                  [LC_ERROR] = true,
                  [LC_UPGRADE_PENDING] = true,
                  [LC_UNINSTALLED] = true},
    [LC_DISABLED] = {[LC_READY] = true, [LC_UNINSTALLED] = true},
    [LC_ERROR] = {[LC_READY] = true, [LC_UNINSTALLED] = true},
    [LC_UPGRADE_PENDING] = {[LC_READY] = true, [LC_ERROR] = true, [LC_UNINSTALLED] = true},
    [LC_UNINSTALLED] = {[LC_INSTALLED] = true},
};

const char *lc_status_name(enum lc_status s)
{
    return (unsigned)s < LC_STATUS_COUNT ? status_names[s] : "unknown";
}

int lc_status_from_name(const char *name, enum lc_status *s)
{
    for (int i = 0; i < LC_STATUS_COUNT; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *s = (enum lc_status)i;
            return 0;
        }
    }
    return -1;
}

bool lc_is_allowed(enum lc_status from, enum lc_status to)
{
    return (unsigned)from < LC_STATUS_COUNT && (unsigned)to < LC_STATUS_COUNT && allowed[from][to];
}

int lc_check(const char *operation, enum lc_status from, enum lc_status to, struct plugd_error *err)
{
    if (lc_is_allowed(from, to))
        return 0;
    return plugd_error_set(err, PLUGD_E_INVALID_TRANSITION,
                           "%s: a plugin that is %s cannot become %s", operation,
                           lc_status_name(from), lc_status_name(to));
}

bool lc_changes_status(int from, enum lc_status to)
{
    return from != (int)to;
}

int lc_check_change(const char *operation, int from, enum lc_status to, struct plugd_error *err)
{
    if (from < 0 || !lc_changes_status(from, to))
        return 0;
    return lc_check(operation, (enum lc_status)from, to, err);
}

bool lc_runs_worker(enum lc_status s)
{
    return s == LC_INSTALLED || s == LC_READY;
}

bool lc_serves_calls(enum lc_status s)
{
    return s == LC_READY;
}

bool lc_is_removed(enum lc_status s)
{
    return s == LC_UNINSTALLED;
}

/* ------------------------------------------------------------ operations */

#define FROM_ANY_BUT_UNINSTALLED                                                                   \
    (LC_FROM(LC_INSTALLED) | LC_FROM(LC_READY) | LC_FROM(LC_DISABLED) | LC_FROM(LC_ERROR) |        \
     LC_FROM(LC_UPGRADE_PENDING))

/* docs/lifecycle.md "Operations" is this table (test_operations.c checks
 * the two against each other); operations.c runs its rows. */
const struct lc_op_row lc_ops[LC_OP_COUNT] = {
    [LC_OP_INSTALL] = {"install",
                       "install",
                       "install",
                       LC_FROM_NEW,
                       0,
                       LC_INSTALLED,
                       0,
                       {0},
                       LC_WORKER_LOAD,
                       NULL},
    [LC_OP_REINSTALL] = {"reinstall",
                         "install",
                         "reinstall",
                         LC_FROM(LC_UNINSTALLED),
                         0,
                         LC_INSTALLED,
                         0,
                         {0},
                         LC_WORKER_LOAD,
                         "cannot become installed (upgrade it, or uninstall it first)"},
    [LC_OP_LOAD] = {"load",
                    "load",
                    "load",
                    LC_FROM(LC_INSTALLED),
                    0,
                    LC_READY,
                    1,
                    {EVT_LOADED},
                    LC_WORKER_KEEP,
                    NULL},
    [LC_OP_FAIL] = {"fail",
                    "fail",
                    "fail",
                    LC_FROM(LC_INSTALLED) | LC_FROM(LC_READY) | LC_FROM(LC_UPGRADE_PENDING),
                    0,
                    LC_ERROR,
                    1,
                    {EVT_ERROR},
                    LC_WORKER_STOP,
                    NULL},
    [LC_OP_ENABLE] = {"enable",
                      "enable",
                      "enable",
                      LC_FROM(LC_DISABLED) | LC_FROM(LC_ERROR),
                      LC_FROM(LC_READY) | LC_FROM(LC_INSTALLED),
                      LC_READY,
                      1,
                      {EVT_ENABLED},
                      LC_WORKER_START,
                      "cannot become ready by enable (approve or reject an upgrade_pending one; "
                      "install an uninstalled one)"},
    [LC_OP_DISABLE] = {"disable",
                       "disable",
                       "disable",
                       LC_FROM(LC_READY),
                       0,
                       LC_DISABLED,
                       1,
                       {EVT_DISABLED},
                       LC_WORKER_STOP,
                       NULL},
    [LC_OP_UPGRADE] = {"upgrade",
                       "upgrade",
                       "upgrade",
                       LC_FROM(LC_READY) | LC_FROM(LC_ERROR),
                       0,
                       LC_READY,
                       1,
                       {EVT_UPGRADED},
                       LC_WORKER_LOAD,
                       "cannot be upgraded (only a ready or error one can; enable it first)"},
    [LC_OP_UPGRADE_PENDING] = {"upgrade_pending",
                               "upgrade",
                               "upgrade",
                               LC_FROM(LC_READY),
                               0,
                               LC_UPGRADE_PENDING,
                               1,
                               {EVT_UPGRADE_PENDING},
                               LC_WORKER_STOP,
                               NULL},
    [LC_OP_RELOAD] = {"reload",
                      "reload",
                      "reload",
                      LC_FROM(LC_READY) | LC_FROM(LC_ERROR),
                      0,
                      LC_READY,
                      1,
                      {EVT_UPGRADED},
                      LC_WORKER_LOAD,
                      "cannot be reloaded (only a ready or error one can; enable it first)"},
    [LC_OP_APPROVE] = {"approve",
                       "approve",
                       "approve",
                       LC_FROM(LC_UPGRADE_PENDING),
                       0,
                       LC_READY,
                       1,
                       {EVT_UPGRADED},
                       LC_WORKER_LOAD,
                       "has no upgrade to approve"},
    [LC_OP_REJECT] = {"reject",
                      "reject",
                      "reject",
                      LC_FROM(LC_UPGRADE_PENDING),
                      0,
                      LC_READY,
                      1,
                      {EVT_UPGRADE_REJECTED},
                      LC_WORKER_LOAD,
                      "has no upgrade to reject"},
    [LC_OP_UNINSTALL] = {"uninstall",
                         "uninstall",
                         "uninstall",
                         FROM_ANY_BUT_UNINSTALLED,
                         0,
                         LC_UNINSTALLED,
                         1,
                         {EVT_UNLOADED},
                         LC_WORKER_STOP,
                         NULL},
    [LC_OP_CONFIG] = {"config",
                      "config",
                      "config",
                      FROM_ANY_BUT_UNINSTALLED | LC_FROM(LC_UNINSTALLED),
                      0,
                      LC_TO_KEEP,
                      0,
                      {0},
                      LC_WORKER_CONFIG,
                      NULL},
};

static const char *const worker_action_names[LC_WORKER_ACTION_COUNT] = {
    [LC_WORKER_KEEP] = "keep", [LC_WORKER_START] = "start",   [LC_WORKER_STOP] = "stop",
    [LC_WORKER_LOAD] = "load", [LC_WORKER_CONFIG] = "config",
};

const char *lc_worker_action_name(enum lc_worker_action a)
{
    return (unsigned)a < LC_WORKER_ACTION_COUNT ? worker_action_names[a] : "unknown";
}

static unsigned from_bit(int from)
{
    return from < 0 ? LC_FROM_NEW : LC_FROM((unsigned)from);
}

int lc_op_check(enum lc_op op, int from, struct plugd_error *err)
{
    const struct lc_op_row *row = &lc_ops[op];
    if (row->from & from_bit(from))
        return LC_OP_RUNS;
    if (row->unchanged & from_bit(from))
        return LC_OP_NOTHING;
    const char *status = from < 0 ? "new" : lc_status_name((enum lc_status)from);
    if (row->refusal != NULL)
        return plugd_error_set(err, PLUGD_E_INVALID_TRANSITION, "%s: a plugin that is %s %s",
                               row->command, status, row->refusal);
    return plugd_error_set(
        err, PLUGD_E_INVALID_TRANSITION, "%s: a plugin that is %s cannot become %s", row->command,
        status, row->to == LC_TO_KEEP ? status : lc_status_name((enum lc_status)row->to));
}

bool lc_op_runs_from(enum lc_op op, enum lc_status s)
{
    return (lc_ops[op].from & LC_FROM(s)) != 0;
}
