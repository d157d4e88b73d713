#include "stream.h"

#include <stdio.h>
#include <string.h>

#include "jsonpack.h"
#include "logs.h"

void stream_init(struct stream *s, struct ev_bus *bus, const struct stream_sink_ops *ops,
                 void *sink, const char *who, const char *plugin)
{
    *s = (struct stream){.ops = ops, .sink = sink, .bus = bus};
    snprintf(s->who, sizeof(s->who), "%s", who);
    snprintf(s->plugin, sizeof(s->plugin), "%s", plugin ? plugin : "");
}

/* ------------------------------------------------------------ events */

/* The bus's side of the sink (an ev_bus_deliver_fn). */
static int deliver_event(const struct ev_bus_event *e, void *ud)
{
    struct stream *s = ud;
    switch (s->ops->room(s->sink)) {
    case STREAM_GONE:
        return -1;
    case STREAM_BUSY:
        return 1; /* the bus queues it, in order, until stream_drain */
    case STREAM_READY:
        break;
    }
    return s->ops->write_event(s->sink, e) == 0 ? 0 : -1;
}

/* The bus dropped the subscription: the client is told why with the
 * subscriber.overflow notice, and the log says so. The notice is written
 * last of all that touches `s`: the write may close the client, and the
 * stream with it. */
static void on_sub_dropped(struct ev_bus_sub *sub, const char *why, void *ud)
{
    (void)sub;
    struct stream *s = ud;
    char who[STREAM_WHO_MAX], plugin[sizeof(s->plugin)];
    snprintf(who, sizeof(who), "%s", s->who);
    snprintf(plugin, sizeof(plugin), "%s", s->plugin);
    s->sub = NULL; /* the bus frees it */
    if (s->ops->room(s->sink) != STREAM_GONE) {
        struct ev_bus_event *e = ev_bus_notice_new(ev_bus_last_seq(s->bus), EVT_SUBSCRIBER_OVERFLOW,
                                                   json_pack("{s:s}", "reason", why));
        if (e != NULL)
            s->ops->write_event(s->sink, e);
        ev_bus_event_unref(e);
    }
    log_plugd("warn", plugin[0] ? plugin : NULL, "%s: event subscription dropped: %s", who, why);
}

int stream_subscribe(struct stream *s, const char *pattern, json_t *filter, int64_t since,
                     struct stream_start *start, struct plugd_error *err)
{
    bool is_new = s->sub == NULL;
    if (is_new && (s->sub = ev_bus_subscribe(s->bus, deliver_event, on_sub_dropped, s)) == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "subscribe: no memory for a subscription");
    if (ev_bus_sub_add(s->sub, pattern, filter, err) < 0) {
        if (is_new) {
            ev_bus_unsubscribe(s->sub);
            s->sub = NULL;
        }
        return -1;
    }
    start->seq = ev_bus_last_seq(s->bus);
    start->has_gap = since >= 0 && ev_bus_has_forgotten(s->bus, (uint64_t)since);
    return 0;
}

void stream_replay(struct stream *s, int64_t since)
{
    /* nothing is published between stream_subscribe and here (one loop,
     * the caller only answers): the replay ends where live events begin */
    if (since >= 0 && s->sub != NULL)
        ev_bus_sub_replay(s->sub, (uint64_t)since);
}

void stream_drain(struct stream *s)
{
    if (s->sub != NULL)
        ev_bus_sub_drain(s->sub);
}

/* ------------------------------------------------------------ logs */

/* A log record was written (a log_listener_fn). */
static void on_log_record(const json_t *rec, void *ud)
{
    struct stream *s = ud;
    if (s->log_plugin[0] != 0) {
        const char *plugin = json_string_value(json_object_get(rec, "plugin"));
        if (plugin == NULL || strcmp(plugin, s->log_plugin) != 0)
            return;
    }
    if (s->ops->room(s->sink) != STREAM_READY)
        return; /* a sink that does not read loses log records, never plugd's memory */
    s->ops->write_log(s->sink, rec);
}

int stream_follow_logs(struct stream *s, const char *plugin, struct plugd_error *err)
{
    if (!s->is_following_logs && log_add_listener(on_log_record, s) < 0)
        return plugd_error_set(err, PLUGD_E_LIMIT_REACHED,
                               "logs: at most %d clients follow the log at once "
                               "(LOG_LISTENERS); end another follower first",
                               LOG_LISTENERS);
    s->is_following_logs = true;
    snprintf(s->log_plugin, sizeof(s->log_plugin), "%s", plugin ? plugin : "");
    return 0;
}

void stream_close(struct stream *s)
{
    ev_bus_unsubscribe(s->sub); /* the owner asked: no notice */
    s->sub = NULL;
    if (s->is_following_logs)
        log_remove_listener(on_log_record, s);
    s->is_following_logs = false;
}

/* ------------------------------------------------------------ msgpack-rpc sink */

static enum stream_room ipc_room(void *sink)
{
    struct ipc_conn *c = *(struct ipc_conn **)sink;
    if (c == NULL || !ipc_conn_is_open(c))
        return STREAM_GONE;
    return ipc_conn_is_congested(c) ? STREAM_BUSY : STREAM_READY;
}

static int ipc_write_event(void *sink, const struct ev_bus_event *e)
{
    struct ipc_conn *c = *(struct ipc_conn **)sink;
    if (c == NULL)
        return -1;
    msgpack_packer *pk = ipc_conn_begin_notify(c, "plugd.event");
    msgpack_pack_array(pk, 1);
    pk->callback(pk->data, e->packed, e->packed_len); /* the map packed once by the bus */
    return ipc_conn_end(c, NULL) == 0 ? 0 : -1;
}

static int ipc_write_log(void *sink, const json_t *rec)
{
    struct ipc_conn *c = *(struct ipc_conn **)sink;
    if (c == NULL)
        return -1;
    msgpack_packer *pk = ipc_conn_begin_notify(c, "plugd.log");
    msgpack_pack_array(pk, 1);
    jsonpack_pack(pk, rec);
    return ipc_conn_end(c, NULL) == 0 ? 0 : -1;
}

const struct stream_sink_ops stream_ipc_sink = {
    .room = ipc_room,
    .write_event = ipc_write_event,
    .write_log = ipc_write_log,
};
