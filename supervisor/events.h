/* The event bus: lifecycle and plugin events, each with a monotonic
 * sequence number, delivered in order to every subscriber whose pattern and
 * filter match (evaluated here, so filtered-out events never cross a
 * channel). A subscriber that cannot keep up gets a bounded queue; when it
 * overflows the subscriber is dropped and its owner told, and plugd never
 * waits. The newest events are kept so a subscriber can resume from a
 * sequence number. docs/events.md is the contract. */
#ifndef PLUGD_EVENTS_H
#define PLUGD_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event_table.h"
#include "plugd/error.h"

#define EV_BUS_HISTORY      1024 /* events kept for resuming */
#define EV_BUS_QUEUE        1024 /* events queued per subscriber before it is dropped */
#define EV_BUS_MAX_PATTERNS 16   /* per subscriber */
#define EV_BUS_MAX_NAME     255

struct ev_bus;
struct ev_bus_sub;

struct ev_bus_event {
    unsigned refs;
    uint64_t seq;
    double time;     /* wall clock, seconds */
    char *name;      /* "plugin.status_changed", "plugin.counter.changed" */
    char *plugin;    /* the plugin it concerns (or that emitted it); NULL for none */
    json_t *payload; /* an object */
    /* the msgpack map {seq, time, name, plugin, payload}, packed once for
     * every channel it goes to */
    char *packed;
    size_t packed_len;
};

/* Hands `e` to the subscriber's channel: 0 when delivered, 1 when the
 * channel is busy (the event is queued and offered again after
 * ev_bus_sub_drain), -1 when the channel is gone (the subscriber is
 * dropped). */
typedef int (*ev_bus_deliver_fn)(const struct ev_bus_event *e, void *ud);

/* The bus dropped subscriber `s` (`why` says why); it is freed right after
 * this returns, so the owner forgets its pointer here. */
typedef void (*ev_bus_drop_fn)(struct ev_bus_sub *s, const char *why, void *ud);

struct ev_bus *ev_bus_new(void);
void ev_bus_free(struct ev_bus *b);

/* Publishes an event (takes ownership of `payload`, which may be NULL for
 * an empty object). Returns its sequence number. plugd's own events go
 * through ev_bus_emit; this is for the events plugins emit. */
uint64_t ev_bus_publish(struct ev_bus *b, const char *name, const char *plugin, json_t *payload);

/* Publishes plugd's event `t` (event_table.c), taking ownership of
 * `payload` (NULL: none). A payload that does not match the event's row is
 * a bug in plugd: logged, and an assertion in debug builds, so every test
 * that makes plugd emit an event checks its shape. */
uint64_t ev_bus_emit(struct ev_bus *b, enum evt_type t, const char *plugin, json_t *payload);

/* An event of the table that is not published: it takes no sequence number
 * (its seq is `seq`, the newest the subscriber could have seen) and is not
 * kept. The subscriber.overflow notice for the one subscriber being
 * dropped. Takes ownership of `payload`; NULL when out of memory. Release
 * with ev_bus_event_unref. */
struct ev_bus_event *ev_bus_notice_new(uint64_t seq, enum evt_type t, json_t *payload);
void ev_bus_event_unref(struct ev_bus_event *e);

/* The event as JSON, {seq, time, name, plugin, payload} (a new reference;
 * NULL when out of memory): the one encoding, which the control socket
 * sends as a line and `packed` holds as msgpack. */
json_t *ev_bus_event_json(const struct ev_bus_event *e);

/* The sequence number of the newest event (0 before the first). */
uint64_t ev_bus_last_seq(const struct ev_bus *b);

struct ev_bus_sub *ev_bus_subscribe(struct ev_bus *b, ev_bus_deliver_fn deliver,
                                    ev_bus_drop_fn on_drop, void *ud);

/* Adds a name pattern (glob: "*" matches any run of characters, "?" one;
 * at most EV_BUS_MAX_PATTERNS, then limit_reached) and an optional filter (a JSON object, borrowed:
 * every key must equal the event's field of that name: "name", "plugin", or a payload field). */
int ev_bus_sub_add(struct ev_bus_sub *s, const char *pattern, json_t *filter,
                   struct plugd_error *err);

/* Offers the kept events newer than `since` that match (after the patterns
 * are added). Returns true when events after `since` were already
 * forgotten (a gap), false when the replay is complete. */
bool ev_bus_sub_replay(struct ev_bus_sub *s, uint64_t since);

/* True when events newer than `since` were already forgotten: a replay
 * from `since` would have a gap. */
bool ev_bus_has_forgotten(const struct ev_bus *b, uint64_t since);

/* The subscriber's channel can take more: offers queued events in order. */
void ev_bus_sub_drain(struct ev_bus_sub *s);

/* Removes the subscriber (its queue is discarded). NULL is a no-op. */
void ev_bus_unsubscribe(struct ev_bus_sub *s);

struct ev_bus_stats {
    uint64_t published, delivered, queued_now, dropped_subscribers;
    size_t subscribers;
};
void ev_bus_stats(const struct ev_bus *b, struct ev_bus_stats *out);

/* True when `name` is a valid event name: 1..255 bytes of [a-z0-9_.-],
 * dot-separated, no empty part. */
bool ev_bus_is_valid_name(const char *name);

#endif
