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

/* allowed[from][to]: exactly the table of ARCHITECTURE.md. */
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
