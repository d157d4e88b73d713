#include "event_table.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STR      EVT_STRING
#define STR_NULL (EVT_STRING | EVT_NULL)

/* docs/events.md describes when each one is sent. */
const struct evt_row evt_table[EVT_COUNT] = {
    [EVT_STATUS_CHANGED] = {"plugin.status_changed",
                            {{"previous_status", STR_NULL}, {"new_status", STR}}},
    [EVT_LOADED] = {"plugin.loaded", {{"version", STR}}},
    [EVT_ENABLED] = {"plugin.enabled", {{NULL, 0}}},
    [EVT_DISABLED] = {"plugin.disabled", {{"reason", STR_NULL}}},
    [EVT_ERROR] = {"plugin.error", {{"error", STR}}},
    [EVT_UPGRADE_PENDING] = {"plugin.upgrade_pending",
                             {{"from_version", STR},
                              {"to_version", STR},
                              {"added", EVT_ARRAY},
                              {"removed", EVT_ARRAY}}},
    [EVT_UPGRADED] = {"plugin.upgraded",
                      {{"from_version", STR},
                       {"to_version", STR},
                       {"added", EVT_ARRAY},
                       {"removed", EVT_ARRAY}}},
    [EVT_UPGRADE_REJECTED] = {"plugin.upgrade_rejected",
                              {{"version", STR}, {"rejected_version", STR}}},
    [EVT_UNLOADED] = {"plugin.unloaded", {{"remove_data", EVT_BOOLEAN}}},
    [EVT_WORKER_STARTED] = {"plugin.worker_started", {{"pid", EVT_INTEGER}, {"version", STR}}},
    [EVT_WORKER_STOPPED] = {"plugin.worker_stopped", {{"exit", STR}, {"reason", STR}}},
    [EVT_WORKER_CRASHED] = {"plugin.worker_crashed", {{"exit", STR}, {"reason", STR}}},
    [EVT_WORKER_RESTARTED] = {"plugin.worker_restarted", {{"restarts", EVT_INTEGER}}},
    [EVT_SANDBOX_VIOLATION] = {"plugin.sandbox_violation",
                               {{"syscall", STR}, {"pid", EVT_INTEGER}, {"action", STR}}},
    [EVT_HEALTH_DEGRADED] = {"plugin.health_degraded", {{"reason", STR}}},
    [EVT_HEALTH_RECOVERED] = {"plugin.health_recovered", {{NULL, 0}}},
    [EVT_SUBSCRIBER_OVERFLOW] = {"subscriber.overflow", {{"reason", STR}}},
};

const struct evt_row *evt_find(const char *name)
{
    for (size_t i = 0; i < EVT_COUNT; i++)
        if (strcmp(evt_table[i].name, name) == 0)
            return &evt_table[i];
    return NULL;
}

static unsigned type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return EVT_STRING;
    case JSON_INTEGER:
        return EVT_INTEGER;
    case JSON_TRUE:
    case JSON_FALSE:
        return EVT_BOOLEAN;
    case JSON_ARRAY:
        return EVT_ARRAY;
    case JSON_NULL:
        return EVT_NULL;
    default:
        return 0; /* objects and reals: no row has them */
    }
}

const char *evt_types_name(unsigned types, char *buf, size_t size)
{
    static const char *const names[] = {"string", "integer", "boolean", "array", "nil"};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(types & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? " or " : "", names[i]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, size, "an object or a real");
    return buf;
}

int evt_check_payload(enum evt_type t, const json_t *payload, char *why, size_t size)
{
    const struct evt_row *row = &evt_table[t];
    if (!json_is_object(payload)) {
        snprintf(why, size, "the payload is not an object");
        return -1;
    }
    size_t n = 0;
    for (const struct evt_key *k = row->keys; k->name != NULL; k++, n++) {
        const json_t *v = json_object_get(payload, k->name);
        char want[64], have[64];
        if (v == NULL) {
            snprintf(why, size, "key \"%s\" is missing", k->name);
            return -1;
        }
        if (!(type_of(v) & k->types)) {
            snprintf(why, size, "key \"%s\" is %s, not %s", k->name,
                     evt_types_name(type_of(v), have, sizeof(have)),
                     evt_types_name(k->types, want, sizeof(want)));
            return -1;
        }
    }
    if (json_object_size(payload) != n) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)payload, key, v)
        {
            bool is_known = false;
            for (const struct evt_key *k = row->keys; k->name != NULL && !is_known; k++)
                is_known = strcmp(k->name, key) == 0;
            if (!is_known) {
                snprintf(why, size, "key \"%s\" is not in its row", key);
                return -1;
            }
        }
    }
    return 0;
}
