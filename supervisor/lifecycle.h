/* The plugin lifecycle: the persisted statuses and the one table of allowed
 * transitions (docs/lifecycle.md; ../shared/ARCHITECTURE.md "Lifecycle").
 * Every status change in plugd is checked here and nowhere else. */
#ifndef PLUGD_LIFECYCLE_H
#define PLUGD_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
