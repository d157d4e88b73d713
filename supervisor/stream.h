/* What plugd streams to a client: the events it subscribed to and the log
 * records it follows. One implementation for every transport (the control
 * socket, the host channel, workers); a transport only supplies a sink, three
 * functions that say whether it takes more and write one event or record.
 *
 * The guarantees, the same on every transport (docs/events.md, "Subscribing"
 * and "Slow subscribers"; docs/control.md, "Streams"):
 * - events arrive in sequence order, each once: the kept events newer than
 *   `since` first (after the subscription's answer), then live ones, with no
 *   gap and no duplicate between the two;
 * - while the sink is busy, events wait in the subscriber's bounded queue of
 *   the bus (EV_BUS_QUEUE); when it overflows the subscriber is told with
 *   one subscriber.overflow event, its subscription ends and plugd logs it;
 *   the stream stays and may subscribe again;
 * - while the sink is busy, followed log records are dropped, never queued;
 * - at most LOG_LISTENERS streams follow the log at once; the next one is
 *   refused with limit_reached.
 * A slow sink never holds plugd or another stream. */
#ifndef PLUGD_STREAM_H
#define PLUGD_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "events.h"
#include "plugd/error.h"
#include "plugd/ipc.h"

enum stream_room {
    STREAM_READY, /* takes more now */
    STREAM_BUSY,  /* past its high-water mark: events wait, log records are dropped */
    STREAM_GONE,  /* its channel is closed */
};

/* A transport's side of a stream. `sink` is the pointer given to
 * stream_init. The writes take the item whatever the room (the overflow
 * notice goes to a busy sink: it says why nothing more comes) and return 0,
 * or -1 when the channel is gone. */
struct stream_sink_ops {
    enum stream_room (*room)(void *sink);
    int (*write_event)(void *sink, const struct ev_bus_event *e);
    int (*write_log)(void *sink, const json_t *rec);
};

#define STREAM_WHO_MAX 96

/* One client's streams; embedded in the transport's client (zeroed memory
 * is a stream that streams nothing, which stream_close accepts). */
struct stream {
    const struct stream_sink_ops *ops;
    void *sink;
    struct ev_bus *bus;
    char who[STREAM_WHO_MAX]; /* for plugd's log: "control client uid:1000", "the host" */
    char plugin[64];          /* the plugin whose log those lines go to; "" for none */
    struct ev_bus_sub *sub;   /* NULL until it subscribes, and after a drop */
    bool is_following_logs;   /* registered with logs.c */
    char log_plugin[64];      /* the followed plugin's records only; "" for every record */
};

/* Readies `s` for the client behind `sink` (borrowed; it must outlive the
 * stream's use). `plugin` (NULL: none) is the plugin its log lines concern. */
void stream_init(struct stream *s, struct ev_bus *bus, const struct stream_sink_ops *ops,
                 void *sink, const char *who, const char *plugin);

/* Where a subscription starts: the answer to a subscribe request. */
struct stream_start {
    uint64_t seq; /* the newest event's sequence number now */
    bool has_gap; /* events newer than `since` were already forgotten */
};

/* Adds a pattern and filter (borrowed) to the stream's subscription
 * (creating it), and says where it starts. Events matching it flow from now
 * on; the kept ones newer than `since` (< 0: none) wait for stream_replay,
 * which the caller calls right after sending its answer, so the answer
 * precedes every event it describes. 0, or -1 with err (nothing changes). */
int stream_subscribe(struct stream *s, const char *pattern, json_t *filter, int64_t since,
                     struct stream_start *start, struct plugd_error *err);

/* Offers the kept events newer than `since` (< 0: none) that match, before
 * any event published after this call. */
void stream_replay(struct stream *s, int64_t since);

/* Streams every log record written from now on (of `plugin` only; NULL:
 * every record). Following again changes the plugin. 0, or -1 with
 * limit_reached when LOG_LISTENERS streams follow already. */
int stream_follow_logs(struct stream *s, const char *plugin, struct plugd_error *err);

/* The sink takes more again: the events waiting for it go, in order. */
void stream_drain(struct stream *s);

/* Ends the subscription (its queue is discarded, no notice) and the log
 * following. The stream may subscribe again later. Safe on a stream
 * streaming nothing, and from the sink's own write (the client closing). */
void stream_close(struct stream *s);

/* The sink of a msgpack-rpc channel (the host channel, a worker): events go
 * as plugd.event notifications, log records as plugd.log; busy while the
 * channel is congested. Its `sink` is the address of the channel pointer
 * (`&d->host`, `&w->conn`), so a channel released later reads as gone. */
extern const struct stream_sink_ops stream_ipc_sink;

#endif
