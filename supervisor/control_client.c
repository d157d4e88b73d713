/* One control-socket connection: its JSON lines in (framing, the per-turn
 * budget, backpressure), its answers out (queued in ipc's output buffer),
 * and the sink of its streams. docs/control.md is the contract. */
#include "control_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "jsonpack.h"

struct control_request {
    struct cmd_request r;
    struct client *c;
    json_t *id;
};

static void client_schedule(struct client *c);

/* ------------------------------------------------------------ memory */

/* Counts what the client's buffers hold now in the total of all clients;
 * past CONTROL_MEMORY_MAX the greediest goes (at the next loop turn, never
 * under a caller that is iterating clients or subscribers). */
static void account(struct client *c)
{
    size_t now = c->in_cap + c->out.held;
    if (c->ctl == NULL) {
        c->held = now;
        return;
    }
    c->ctl->held = c->ctl->held - c->held + now;
    c->held = now;
    if (c->ctl->held > CONTROL_MEMORY_MAX)
        ev_prepare_start(c->ctl->d->loop, &c->ctl->trim_w);
}

/* ------------------------------------------------------------ output */

size_t client_queued(const struct client *c)
{
    return c->out.pending;
}

static int dump_to_output(const char *buf, size_t size, void *data)
{
    return ipc_outbuf_append(data, buf, size);
}

/* `msg` as one JSON line, its newline included, in ctl's line buffer
 * (grown to fit, up to CONTROL_OUT_LIMIT): its length, or 0 when it does
 * not fit. One append then queues it: jansson's dump callback comes once
 * per token. */
static size_t dump_line(struct control *ctl, const json_t *msg)
{
    size_t n = json_dumpb(msg, ctl->line, ctl->line_cap, JSON_COMPACT);
    if (n == 0 || n + 1 > CONTROL_OUT_LIMIT)
        return 0;
    if (n + 1 > ctl->line_cap) {
        size_t cap = ctl->line_cap * 2 > n + 1 ? ctl->line_cap * 2 : n + 1;
        char *grown = realloc(ctl->line, cap);
        if (grown == NULL)
            return 0;
        ctl->line = grown;
        ctl->line_cap = cap;
        if (json_dumpb(msg, ctl->line, ctl->line_cap, JSON_COMPACT) != n)
            return 0;
    }
    ctl->line[n] = '\n';
    return n + 1;
}

/* Queues one JSON line (takes `msg`; NULL: out of memory). A client whose
 * unsent output would pass CONTROL_OUT_LIMIT does not read what it asked
 * for: it is closed. 0, or -1 when the client is closed. */
static int send_line(struct client *c, json_t *msg)
{
    if (c->is_closed || msg == NULL) {
        json_decref(msg);
        if (!c->is_closed)
            client_close(c);
        return -1;
    }
    ipc_outbuf_mark(&c->out);
    size_t n = dump_line(c->ctl, msg);
    int rc;
    if (n > 0) {
        rc = ipc_outbuf_append(&c->out, c->ctl->line, n);
    } else { /* no memory for the line: token by token */
        rc = json_dump_callback(msg, dump_to_output, &c->out, JSON_COMPACT);
        if (rc == 0)
            rc = ipc_outbuf_append(&c->out, "\n", 1);
    }
    json_decref(msg);
    if (rc < 0)
        ipc_outbuf_rollback(&c->out); /* the whole line, or none of it */
    account(c);
    if (rc < 0) {
        client_close(c);
        return -1;
    }
    ev_io_start(c->ctl->d->loop, &c->wio);
    return 0;
}

int client_flush(struct client *c)
{
    int rc = 0;
    while (client_queued(c) > 0) {
        ssize_t n = ipc_outbuf_write(&c->out, c->fd, true);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            rc = -1;
            break;
        }
    }
    account(c);
    return rc;
}

/* Writes what the socket takes; below half the high water, the events that
 * waited for it follow. */
static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct client *c = w->data;
    if (client_flush(c) < 0) {
        client_close(c);
        return;
    }
    if (client_queued(c) == 0)
        ev_io_stop(loop, &c->wio);
    c->holds++;
    if (client_queued(c) <= CONTROL_HIGH_WATER / 2)
        stream_drain(&c->stream);
    c->holds--;
    if (c->is_closed)
        client_close(c);
    else
        client_schedule(c);
}

/* ------------------------------------------------------------ answers */

static json_t *error_json(const struct plugd_error *err)
{
    return json_pack("{s:s, s:s}", "code", plugd_errc_name(err->code), "message", err->message);
}

/* The request is answered: its client may go now if it left. */
static void request_done(struct control_request *cr)
{
    struct client *c = cr->c;
    json_decref(cr->id);
    free(cr);
    c->pending--;
    if (c->is_closed)
        client_close(c);
    else
        client_schedule(c);
}

static void reply_result(struct control_request *cr, json_t *result)
{
    send_line(cr->c, json_pack("{s:O, s:b, s:o}", "id", cr->id, "ok", 1, "result",
                               result ? result : json_null()));
    request_done(cr);
}

static void ctl_reply_json(struct cmd_request *r, json_t *result)
{
    reply_result((struct control_request *)r, result);
}

static void ctl_reply_msgpack(struct cmd_request *r, const msgpack_object *result)
{
    reply_result((struct control_request *)r, jsonpack_from_msgpack(result));
}

static void ctl_fail(struct cmd_request *r, const struct plugd_error *err)
{
    struct control_request *cr = (struct control_request *)r;
    send_line(cr->c, json_pack("{s:O, s:b, s:o}", "id", cr->id, "ok", 0, "error", error_json(err)));
    request_done(cr);
}

static struct stream *ctl_stream(struct cmd_request *r)
{
    return &((struct control_request *)r)->c->stream;
}

static const struct cmd_transport control_transport = {
    .reply_json = ctl_reply_json,
    .reply_msgpack = ctl_reply_msgpack,
    .fail = ctl_fail,
    .stream = ctl_stream,
};

/* An answer to a line that never became a request. */
static void refuse_line(struct client *c, json_t *id, enum plugd_errc code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse_line(struct client *c, json_t *id, enum plugd_errc code, const char *fmt, ...)
{
    struct plugd_error e;
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(&e, code, fmt, ap);
    va_end(ap);
    send_line(c, json_pack("{s:O, s:b, s:o}", "id", id ? id : json_null(), "ok", 0, "error",
                           error_json(&e)));
}

/* ------------------------------------------------------------ the sink */

/* Busy past CONTROL_HIGH_WATER of unsent output: events wait in the bus,
 * log records are dropped (docs/control.md, "Streams"). */
static enum stream_room sink_room(void *sink)
{
    const struct client *c = sink;
    if (c->is_closed)
        return STREAM_GONE;
    return client_queued(c) > CONTROL_HIGH_WATER ? STREAM_BUSY : STREAM_READY;
}

static int sink_write_event(void *sink, const struct ev_bus_event *e)
{
    return send_line(sink, json_pack("{s:o}", "event", ev_bus_event_json(e)));
}

static int sink_write_log(void *sink, const json_t *rec)
{
    return send_line(sink, json_pack("{s:O}", "log", rec));
}

static const struct stream_sink_ops control_sink = {
    .room = sink_room,
    .write_event = sink_write_event,
    .write_log = sink_write_log,
};

/* ------------------------------------------------------------ requests */

/* One request line: {"id": any, "cmd": "name", ...arguments}. */
static void handle_line(struct client *c, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL) {
        refuse_line(c, NULL, PLUGD_E_INVALID_JSON, "not JSON: %s (column %d)", jerr.text,
                    jerr.column);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    const char *cmd = json_string_value(json_object_get(msg, "cmd"));
    if (!json_is_object(msg) || cmd == NULL) {
        refuse_line(c, id, PLUGD_E_INVALID_ARGUMENT,
                    "a request is an object with \"cmd\" (a string) and an optional \"id\"");
        json_decref(msg);
        return;
    }
    if (!c->is_authorized) {
        refuse_line(c, id, PLUGD_E_PERMISSION_DENIED,
                    "%s may not use this control socket (allowed: root, plugd's user, "
                    "--allow-uid, --allow-gid)",
                    c->actor);
        json_decref(msg);
        return;
    }
    struct control_request *cr = calloc(1, sizeof(*cr));
    if (cr == NULL) {
        refuse_line(c, id, PLUGD_E_NO_MEMORY, "no memory for a request");
        json_decref(msg);
        return;
    }
    char name[64];
    snprintf(name, sizeof(name), "%s", cmd);
    cr->c = c;
    cr->id = json_incref(id ? id : json_null());
    cr->r = (struct cmd_request){
        .d = c->ctl->d, .t = &control_transport, .client = c, .actor = c->actor};
    json_object_del(msg, "id");
    json_object_del(msg, "cmd");
    c->pending++;
    cmd_dispatch(&cr->r, name, msg);
    json_decref(msg);
}

/* Handles up to CONTROL_LINES_PER_TURN complete lines, fewer when the
 * client blocks (it does not read its answers, or has too many requests
 * out): one client never holds the loop, so workers' health checks and
 * other clients run between its turns. A line longer than CONTROL_LINE_MAX
 * bytes (its newline not counted), whole or in pieces, is refused
 * (line_too_long) and skipped up to its newline; the client stays. */
static void handle_some_lines(struct client *c)
{
    for (int n = 0; n < CONTROL_LINES_PER_TURN; n++) {
        if (c->is_closed || c->is_congested || c->pending >= CONTROL_MAX_PENDING)
            return;
        char *line = c->in + c->in_off;
        char *nl = memchr(line, '\n', c->in_len - c->in_off);
        if (nl == NULL)
            break;
        size_t len = (size_t)(nl - line);
        c->in_off += len + 1;
        if (c->is_discarding)
            c->is_discarding = false; /* the end of a line refused already */
        else if (len > CONTROL_LINE_MAX)
            refuse_line(c, NULL, PLUGD_E_LINE_TOO_LONG,
                        "a request line is longer than %d bytes (this one has %zu)",
                        CONTROL_LINE_MAX, len);
        else if (len > 0)
            handle_line(c, line, len);
        if (n + 1 == CONTROL_LINES_PER_TURN)
            return; /* budget spent: lines may be left */
    }
    if (c->is_closed)
        return;
    c->may_have_line = false;
    if (c->in_len - c->in_off > CONTROL_LINE_MAX) {
        if (!c->is_discarding)
            refuse_line(c, NULL, PLUGD_E_LINE_TOO_LONG, "a request line is longer than %d bytes",
                        CONTROL_LINE_MAX);
        c->is_discarding = true;
        c->in_off = c->in_len;
    }
}

/* Reads when the client may send more: its output below the marks, not
 * too many requests out, and no complete line left over (that one is
 * handled when the loop is idle). */
static void client_schedule(struct client *c)
{
    if (c->is_closed)
        return;
    struct ev_loop *loop = c->ctl->d->loop;
    if (client_queued(c) > CONTROL_HIGH_WATER)
        c->is_congested = true;
    else if (client_queued(c) <= CONTROL_LOW_WATER)
        c->is_congested = false;
    if (c->is_eof && !c->may_have_line && c->pending == 0 && client_queued(c) == 0) {
        client_close(c);
        return;
    }
    bool is_blocked = c->is_congested || c->pending >= CONTROL_MAX_PENDING;
    if (is_blocked || c->may_have_line || c->is_eof)
        ev_io_stop(loop, &c->rio);
    else
        ev_io_start(loop, &c->rio);
    if (!is_blocked && c->may_have_line)
        ev_idle_start(loop, &c->more_w);
    else
        ev_idle_stop(loop, &c->more_w);
}

/* One turn of the client's input, its memory safe from its own answers. */
static void client_turn(struct client *c)
{
    c->holds++;
    handle_some_lines(c);
    c->holds--;
    if (c->is_closed) {
        client_close(c);
        return;
    }
    client_schedule(c);
    /* the answers leave in this loop turn, not after the next poll: a
     * client that waits for them sends its next requests sooner */
    if (client_queued(c) > 0)
        ev_feed_event(c->ctl->d->loop, &c->wio, EV_WRITE);
}

static void on_more_lines(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    client_turn(w->data);
}

/* Room for one more read: the handled part is dropped first, and the
 * buffer holds at most a longest line and a read. */
static int make_room(struct client *c)
{
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_len == 0 && c->in_cap > 2 * CONTROL_READ_CHUNK) {
        free(c->in); /* a long line went: so does its memory */
        c->in = NULL;
        c->in_cap = 0;
    }
    if (c->in_cap - c->in_len < CONTROL_READ_CHUNK) {
        size_t cap = c->in_cap ? c->in_cap * 2 : CONTROL_READ_CHUNK;
        if (cap > CONTROL_LINE_MAX + CONTROL_READ_CHUNK)
            cap = CONTROL_LINE_MAX + CONTROL_READ_CHUNK;
        if (cap > c->in_cap) {
            char *grown = realloc(c->in, cap);
            if (grown == NULL)
                return -1;
            c->in = grown;
            c->in_cap = cap;
        }
    }
    account(c);
    return 0;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = w->data;
    if (make_room(c) < 0) {
        client_close(c);
        return;
    }
    size_t room = c->in_cap - c->in_len;
    ssize_t n =
        read(c->fd, c->in + c->in_len, room < CONTROL_READ_CHUNK ? room : CONTROL_READ_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        client_close(c);
        return;
    }
    if (n == 0) {
        c->is_eof = true; /* answers still owed go out first */
        client_schedule(c);
        return;
    }
    c->in_len += (size_t)n;
    c->may_have_line = true;
    client_turn(c);
}

/* ------------------------------------------------------------ a client's life */

struct client *client_new(struct control *ctl, int fd, const struct ucred *cred)
{
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    *c = (struct client){.ctl = ctl, .fd = fd, .next = ctl->clients};
    ipc_outbuf_init(&c->out, CONTROL_OUT_LIMIT, CONTROL_OUT_LIMIT);
    snprintf(c->actor, sizeof(c->actor), "uid:%u", (unsigned)cred->uid);
    char who[STREAM_WHO_MAX];
    snprintf(who, sizeof(who), "control client %s", c->actor);
    stream_init(&c->stream, ctl->d->bus, &control_sink, c, who, NULL);
    ctl->clients = c;
    ctl->n_clients++;
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    ev_idle_init(&c->more_w, on_more_lines);
    /* an idle watcher of the top priority runs every loop turn, beside
     * whatever else is pending: at the default priority, a loop always
     * busy with workers would never get to this client's lines */
    ev_set_priority(&c->more_w, EV_MAXPRI);
    c->rio.data = c->wio.data = c->more_w.data = c;
    ev_io_start(ctl->d->loop, &c->rio);
    return c;
}

static void client_free(struct client *c)
{
    if (c->ctl != NULL) {
        struct client **p = &c->ctl->clients;
        while (*p != c)
            p = &(*p)->next;
        *p = c->next;
        c->ctl->held -= c->held;
    }
    free(c->in);
    ipc_outbuf_destroy(&c->out);
    free(c);
}

void client_close(struct client *c)
{
    if (!c->is_closed) {
        c->is_closed = true;
        ev_io_stop(c->ctl->d->loop, &c->rio);
        ev_io_stop(c->ctl->d->loop, &c->wio);
        ev_idle_stop(c->ctl->d->loop, &c->more_w);
        close(c->fd);
        c->ctl->n_clients--;
        stream_close(&c->stream);
    }
    if (c->pending == 0 && c->holds == 0)
        client_free(c);
}

void client_evict(struct client *c, const char *why)
{
    c->holds++;                  /* the error line may close it: it is freed below, once */
    ipc_outbuf_destroy(&c->out); /* what it did not read is dropped: the error goes now */
    refuse_line(c, NULL, PLUGD_E_BUFFER_FULL, "%s", why);
    client_flush(c);
    free(c->in); /* its memory goes now, even with a request out */
    c->in = NULL;
    c->in_off = c->in_len = c->in_cap = 0;
    ipc_outbuf_destroy(&c->out);
    account(c);
    c->holds--;
    client_close(c);
}
