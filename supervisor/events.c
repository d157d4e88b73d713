#include "events.h"

#include <assert.h>
#include <fnmatch.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonpack.h"
#include "logs.h"

struct sub_pattern {
    char *glob;
    json_t *filter; /* NULL: every event of the pattern */
};

struct ev_bus_sub {
    struct ev_bus *bus;
    ev_bus_deliver_fn deliver;
    ev_bus_drop_fn on_drop;
    void *ud;
    struct sub_pattern patterns[EV_BUS_MAX_PATTERNS];
    size_t n_patterns;
    /* events not yet taken by the channel, oldest first (a ring) */
    struct ev_bus_event *queue[EV_BUS_QUEUE];
    size_t head, count;
    bool is_dropped; /* dropped while the bus was iterating; freed after */
};

struct ev_bus {
    uint64_t seq;
    struct ev_bus_event *history[EV_BUS_HISTORY]; /* ring by seq */
    struct ev_bus_sub **subs;
    size_t n_subs, cap_subs;
    int publishing; /* depth: subscribers are only removed from the array at 0 */
    struct ev_bus_stats stats;
};

static void event_unref(struct ev_bus_event *e)
{
    if (e == NULL || --e->refs > 0)
        return;
    free(e->name);
    free(e->plugin);
    json_decref(e->payload);
    free(e->packed);
    free(e);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

json_t *ev_bus_event_json(const struct ev_bus_event *e)
{
    /* built by hand, not json_pack: this runs for every event published */
    json_t *v = json_object();
    if (v == NULL || json_object_set_new_nocheck(v, "seq", json_integer((json_int_t)e->seq)) < 0 ||
        json_object_set_new_nocheck(v, "time", json_real(e->time)) < 0 ||
        json_object_set_new_nocheck(v, "name", json_string_nocheck(e->name)) < 0 ||
        json_object_set_new_nocheck(v, "plugin",
                                    e->plugin ? json_string_nocheck(e->plugin) : json_null()) < 0 ||
        json_object_set_nocheck(v, "payload", e->payload) < 0) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* The msgpack form of ev_bus_event_json, packed once for every channel. */
static int pack_event(struct ev_bus_event *e)
{
    json_t *v = ev_bus_event_json(e);
    if (v == NULL)
        return -1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    jsonpack_pack(&pk, v);
    json_decref(v);
    e->packed = sb.data; /* taken over from the sbuffer */
    e->packed_len = sb.size;
    return e->packed ? 0 : -1;
}

/* A new event with one reference, packed; NULL when out of memory (the
 * payload is released either way). */
static struct ev_bus_event *event_new(uint64_t seq, const char *name, const char *plugin,
                                      json_t *payload)
{
    struct ev_bus_event *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        json_decref(payload);
        return NULL;
    }
    *e = (struct ev_bus_event){.refs = 1,
                               .seq = seq,
                               .time = wall_now(),
                               .name = strdup(name),
                               .plugin = plugin ? strdup(plugin) : NULL,
                               .payload = payload ? payload : json_object()};
    if (e->name == NULL || (plugin && e->plugin == NULL) || e->payload == NULL ||
        pack_event(e) < 0) {
        event_unref(e);
        return NULL;
    }
    return e;
}

/* A payload that does not match its row: a call site and event_table.c
 * disagree. */
static void check_row(enum evt_type t, const char *plugin, const json_t *payload)
{
    char why[160];
    json_t *none = payload ? NULL : json_object();
    if (payload == NULL && none == NULL)
        return; /* out of memory: nothing to check against */
    int rc = evt_check_payload(t, payload ? payload : none, why, sizeof(why));
    json_decref(none);
    if (rc == 0)
        return;
    log_plugd("error", plugin, "event %s does not match its row in event_table.c: %s",
              evt_table[t].name, why);
    assert(!"an event's payload does not match supervisor/event_table.c");
}

struct ev_bus *ev_bus_new(void)
{
    return calloc(1, sizeof(struct ev_bus));
}

static void sub_free(struct ev_bus_sub *s)
{
    for (size_t i = 0; i < s->n_patterns; i++) {
        free(s->patterns[i].glob);
        json_decref(s->patterns[i].filter);
    }
    for (size_t i = 0; i < s->count; i++)
        event_unref(s->queue[(s->head + i) % EV_BUS_QUEUE]);
    free(s);
}

void ev_bus_free(struct ev_bus *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n_subs; i++)
        sub_free(b->subs[i]);
    free(b->subs);
    for (size_t i = 0; i < EV_BUS_HISTORY; i++)
        event_unref(b->history[i]);
    free(b);
}

uint64_t ev_bus_last_seq(const struct ev_bus *b)
{
    return b->seq;
}

/* ------------------------------------------------------------ matching */

static const json_t *event_field(const struct ev_bus_event *e, const char *key, json_t **tmp)
{
    if (strcmp(key, "name") == 0)
        return *tmp = json_string(e->name);
    if (strcmp(key, "plugin") == 0)
        return *tmp = e->plugin ? json_string(e->plugin) : json_null();
    return json_object_get(e->payload, key);
}

static bool filter_matches(const json_t *filter, const struct ev_bus_event *e)
{
    const char *key;
    json_t *want;
    json_object_foreach((json_t *)filter, key, want)
    {
        json_t *tmp = NULL;
        const json_t *have = event_field(e, key, &tmp);
        bool is_equal = have != NULL && json_equal((json_t *)have, want);
        json_decref(tmp);
        if (!is_equal)
            return false;
    }
    return true;
}

static bool sub_matches(const struct ev_bus_sub *s, const struct ev_bus_event *e)
{
    for (size_t i = 0; i < s->n_patterns; i++) {
        const struct sub_pattern *p = &s->patterns[i];
        if (fnmatch(p->glob, e->name, 0) == 0 &&
            (p->filter == NULL || filter_matches(p->filter, e)))
            return true;
    }
    return false;
}

bool ev_bus_is_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > EV_BUS_MAX_NAME || name[0] == '.' || name[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  (c == '.' && name[i + 1] != '.');
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ delivery */

static void drop(struct ev_bus_sub *s, const char *why)
{
    if (s->is_dropped)
        return;
    s->is_dropped = true;
    s->bus->stats.dropped_subscribers++;
    if (s->on_drop)
        s->on_drop(s, why, s->ud);
}

/* Removes dropped subscribers from the array once nobody iterates it. */
static void sweep(struct ev_bus *b)
{
    if (b->publishing > 0)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < b->n_subs; i++) {
        if (b->subs[i]->is_dropped)
            sub_free(b->subs[i]);
        else
            b->subs[kept++] = b->subs[i];
    }
    b->n_subs = kept;
}

/* Gives `e` to `s` in order: straight to the channel when nothing is
 * queued and it takes it, into the queue otherwise. */
static void offer(struct ev_bus_sub *s, struct ev_bus_event *e)
{
    if (s->is_dropped)
        return;
    if (s->count == 0) {
        int rc = s->deliver(e, s->ud);
        if (rc == 0) {
            s->bus->stats.delivered++;
            return;
        }
        if (rc < 0) {
            drop(s, "its channel is closed");
            return;
        }
    }
    if (s->count == EV_BUS_QUEUE) {
        drop(s, "its queue overflowed (it does not read its events fast enough)");
        return;
    }
    e->refs++;
    s->queue[(s->head + s->count++) % EV_BUS_QUEUE] = e;
}

uint64_t ev_bus_publish(struct ev_bus *b, const char *name, const char *plugin, json_t *payload)
{
    struct ev_bus_event *e = event_new(b->seq + 1, name, plugin, payload);
    if (e == NULL)
        return 0;
    b->seq++;
    b->stats.published++;
    size_t slot = e->seq % EV_BUS_HISTORY;
    event_unref(b->history[slot]);
    b->history[slot] = e; /* the history holds the first reference */

    b->publishing++;
    size_t n = b->n_subs; /* subscribers added by a callback see later events only */
    for (size_t i = 0; i < n; i++)
        if (sub_matches(b->subs[i], e))
            offer(b->subs[i], e);
    b->publishing--;
    sweep(b);
    return e->seq;
}

uint64_t ev_bus_emit(struct ev_bus *b, enum evt_type t, const char *plugin, json_t *payload)
{
    check_row(t, plugin, payload);
    return ev_bus_publish(b, evt_table[t].name, plugin, payload);
}

struct ev_bus_event *ev_bus_notice_new(uint64_t seq, enum evt_type t, json_t *payload)
{
    check_row(t, NULL, payload);
    return event_new(seq, evt_table[t].name, NULL, payload);
}

void ev_bus_event_unref(struct ev_bus_event *e)
{
    event_unref(e);
}

struct ev_bus_sub *ev_bus_subscribe(struct ev_bus *b, ev_bus_deliver_fn deliver,
                                    ev_bus_drop_fn on_drop, void *ud)
{
    if (b->n_subs == b->cap_subs) {
        size_t cap = b->cap_subs ? 2 * b->cap_subs : 16;
        struct ev_bus_sub **subs = realloc(b->subs, cap * sizeof(*subs));
        if (subs == NULL)
            return NULL;
        b->subs = subs;
        b->cap_subs = cap;
    }
    struct ev_bus_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    *s = (struct ev_bus_sub){.bus = b, .deliver = deliver, .on_drop = on_drop, .ud = ud};
    b->subs[b->n_subs++] = s;
    return s;
}

int ev_bus_sub_add(struct ev_bus_sub *s, const char *pattern, json_t *filter,
                   struct plugd_error *err)
{
    if (s->n_patterns == EV_BUS_MAX_PATTERNS)
        return plugd_error_set(err, PLUGD_E_LIMIT_REACHED,
                               "subscribe: a subscription takes at most %d patterns "
                               "(EV_BUS_MAX_PATTERNS); this one has them all",
                               EV_BUS_MAX_PATTERNS);
    size_t n = strlen(pattern);
    if (n == 0 || n > EV_BUS_MAX_NAME)
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "subscribe: \"pattern\" must be 1 to %d bytes", EV_BUS_MAX_NAME);
    if (filter != NULL && !json_is_object(filter))
        return plugd_error_set(err, PLUGD_E_INVALID_REQUEST,
                               "subscribe: \"filter\" must be a map of field to value");
    char *glob = strdup(pattern);
    if (glob == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "subscribe: no memory for a pattern");
    s->patterns[s->n_patterns++] =
        (struct sub_pattern){.glob = glob, .filter = filter ? json_incref(filter) : NULL};
    return 0;
}

/* The oldest event still kept (1 before any is forgotten). */
static uint64_t oldest_kept(const struct ev_bus *b)
{
    return b->seq > EV_BUS_HISTORY ? b->seq - EV_BUS_HISTORY + 1 : 1;
}

bool ev_bus_has_forgotten(const struct ev_bus *b, uint64_t since)
{
    return since + 1 < oldest_kept(b);
}

bool ev_bus_sub_replay(struct ev_bus_sub *s, uint64_t since)
{
    struct ev_bus *b = s->bus;
    uint64_t oldest = oldest_kept(b);
    bool has_gap = ev_bus_has_forgotten(b, since);
    b->publishing++;
    for (uint64_t seq = has_gap ? oldest : since + 1; seq <= b->seq && !s->is_dropped; seq++) {
        struct ev_bus_event *e = b->history[seq % EV_BUS_HISTORY];
        if (e != NULL && e->seq == seq && sub_matches(s, e))
            offer(s, e);
    }
    b->publishing--;
    sweep(b);
    return has_gap;
}

void ev_bus_sub_drain(struct ev_bus_sub *s)
{
    struct ev_bus *b = s->bus;
    b->publishing++;
    while (s->count > 0 && !s->is_dropped) {
        struct ev_bus_event *e = s->queue[s->head];
        int rc = s->deliver(e, s->ud);
        if (rc > 0)
            break;
        s->head = (s->head + 1) % EV_BUS_QUEUE;
        s->count--;
        event_unref(e);
        if (rc < 0)
            drop(s, "its channel is closed");
        else
            b->stats.delivered++;
    }
    b->publishing--;
    sweep(b);
}

void ev_bus_unsubscribe(struct ev_bus_sub *s)
{
    if (s == NULL)
        return;
    s->on_drop = NULL; /* the owner asked: no notice */
    s->is_dropped = true;
    sweep(s->bus);
}

void ev_bus_stats(const struct ev_bus *b, struct ev_bus_stats *out)
{
    *out = b->stats;
    out->subscribers = 0;
    out->queued_now = 0;
    for (size_t i = 0; i < b->n_subs; i++) {
        if (!b->subs[i]->is_dropped) {
            out->subscribers++;
            out->queued_now += b->subs[i]->count;
        }
    }
}
