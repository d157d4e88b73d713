/* The events plugd itself emits: one row per event, its name and its
 * payload keys with their JSON types. Call sites publish by row
 * (ev_bus_emit), which checks the payload against the row;
 * tests/supervisor/test_event_table.c checks docs/events.md against it.
 * Adding an event is one row here, its call site and its line in the doc.
 *
 * Names: plugd's own events have two parts, "plugin.<what>_<happened>"
 * (words joined by "_"); a plugin's own events have three or more,
 * "plugin.<its name>.<event>" (services.c), so neither can pass for the
 * other and "plugin.*.changed" matches plugins' events only. Payload keys
 * are snake_case. */
#ifndef PLUGD_EVENT_TABLE_H
#define PLUGD_EVENT_TABLE_H

#include <jansson.h>
#include <stddef.h>

enum evt_type {
    EVT_STATUS_CHANGED,
    EVT_LOADED,
    EVT_ENABLED,
    EVT_DISABLED,
    EVT_ERROR,
    EVT_UPGRADE_PENDING,
    EVT_UPGRADED,
    EVT_UPGRADE_REJECTED,
    EVT_UNLOADED,
    EVT_WORKER_STARTED,
    EVT_WORKER_STOPPED,
    EVT_WORKER_CRASHED,
    EVT_WORKER_RESTARTED,
    EVT_SANDBOX_VIOLATION,
    EVT_HEALTH_DEGRADED,
    EVT_HEALTH_RECOVERED,
    EVT_SUBSCRIBER_OVERFLOW,
    EVT_COUNT
};

/* A key's JSON types, a mask: EVT_STRING | EVT_NULL is "string or nil". */
enum {
    EVT_STRING = 1 << 0,
    EVT_INTEGER = 1 << 1,
    EVT_BOOLEAN = 1 << 2,
    EVT_ARRAY = 1 << 3,
    EVT_NULL = 1 << 4,
};

#define EVT_MAX_KEYS 4

struct evt_key {
    const char *name; /* NULL ends the row's keys */
    unsigned types;
};

struct evt_row {
    const char *name;
    struct evt_key keys[EVT_MAX_KEYS + 1];
};

extern const struct evt_row evt_table[EVT_COUNT];

/* The row of the event called `name`, NULL when plugd emits none so named. */
const struct evt_row *evt_find(const char *name);

/* 0 when `payload` is an object with exactly the row's keys, each of one of
 * its types; -1 otherwise, with what differs in `why` ("key \"pid\" is a
 * string, not integer"). */
int evt_check_payload(enum evt_type t, const json_t *payload, char *why, size_t size);

/* "string", "integer", "string or nil", ... as docs/events.md writes them. */
const char *evt_types_name(unsigned types, char *buf, size_t size);

#endif
