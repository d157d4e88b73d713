#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "jsonpack.h"

struct client {
    struct control *ctl;
    int fd;
    ev_io rio, wio;
    ev_idle more_w; /* lines left over from a turn: handled at the next loop turn */
    char *in;
    size_t in_off, in_len, in_cap; /* [in_off, in_len) is not handled yet */
    bool is_discarding;            /* the rest of a line that was too long */
    bool may_have_line;            /* a complete line may be buffered */
    bool is_congested;             /* output past the high water: not read until the low */
    bool is_eof;                   /* it sent all it will: closed once answered */
    char *out;
    size_t out_off, out_len, out_cap;
    size_t held;    /* in_cap + out_cap, as counted in ctl->held */
    unsigned holds; /* callbacks of its own running: not freed under them */
    bool is_authorized;
    char actor[48];
    struct ev_bus_sub *sub;
    bool is_following_logs;
    char log_plugin[64]; /* "" for every plugin */
    unsigned pending;    /* requests answered later (call, config) */
    bool is_closed;      /* gone; freed when nothing is pending */
    struct client *next;
};

struct control {
    struct plugd *d;
    struct control_options o;
    int fd;
    int reserve_fd; /* spent to accept-and-refuse when out of fds */
    ev_io accept_w;
    ev_timer accept_pause_t; /* out of fds and no reserve: accepting waits */
    ev_prepare trim_w;       /* the clients hold too much: drop the greediest */
    struct client *clients;
    size_t n_clients;        /* open ones */
    size_t held;             /* bytes of all clients' buffers */
    struct stat socket_file; /* what we bound, so we never unlink another's */
};

struct control_request {
    struct cmd_request r;
    struct client *c;
    json_t *id;
};

static void client_close(struct client *c);
static void client_schedule(struct client *c);

/* ------------------------------------------------------------ memory */

/* Counts what the client's buffers hold now in the total of all clients;
 * past CONTROL_MEMORY_MAX the greediest goes (at the next loop turn, never
 * under a caller that is iterating clients or subscribers). */
static void account(struct client *c)
{
    size_t now = c->in_cap + c->out_cap;
    if (c->ctl == NULL) {
        c->held = now;
        return;
    }
    c->ctl->held = c->ctl->held - c->held + now;
    c->held = now;
    if (c->ctl->held > CONTROL_MEMORY_MAX)
        ev_prepare_start(c->ctl->d->loop, &c->ctl->trim_w);
}

static size_t queued(const struct client *c)
{
    return c->out_len - c->out_off;
}

/* An emptied output buffer goes back to the allocator when it grew. */
static void shrink_output(struct client *c)
{
    if (queued(c) != 0)
        return;
    c->out_off = c->out_len = 0;
    if (c->out_cap > 2 * CONTROL_READ_CHUNK) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
        account(c);
    }
}

/* Queues one JSON line (takes `msg`). */
static void send_line(struct client *c, json_t *msg)
{
    if (c->is_closed) {
        json_decref(msg);
        return;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    size_t n = text ? strlen(text) : 0;
    if (text == NULL || queued(c) + n + 1 > CONTROL_OUT_LIMIT) {
        free(text);
        client_close(c); /* it does not read what it asked for */
        return;
    }
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n + 1 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n + 1)
            cap *= 2;
        char *grown = realloc(c->out, cap);
        if (grown == NULL) {
            free(text);
            client_close(c);
            return;
        }
        c->out = grown;
        c->out_cap = cap;
        account(c);
    }
    memcpy(c->out + c->out_len, text, n);
    c->out[c->out_len + n] = '\n';
    c->out_len += n + 1;
    free(text);
    ev_io_start(c->ctl->d->loop, &c->wio);
}

/* Sends what is queued without waiting; -1 when the client is gone. */
static int flush_some(struct client *c)
{
    while (queued(c) > 0) {
        ssize_t n = send(c->fd, c->out + c->out_off, queued(c), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        c->out_off += (size_t)n;
    }
    return 0;
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct client *c = w->data;
    bool was_congested = queued(c) > CONTROL_HIGH_WATER;
    if (flush_some(c) < 0) {
        client_close(c);
        return;
    }
    if (queued(c) == 0) {
        ev_io_stop(loop, &c->wio);
        shrink_output(c);
    }
    c->holds++;
    if (was_congested && queued(c) <= CONTROL_HIGH_WATER / 2 && c->sub != NULL)
        ev_bus_sub_drain(c->sub);
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

/* ------------------------------------------------------------ streams */

static int deliver_event(const struct ev_bus_event *e, void *ud)
{
    struct client *c = ud;
    if (c->is_closed)
        return -1;
    if (queued(c) > CONTROL_HIGH_WATER)
        return 1;
    send_line(c, json_pack("{s:o}", "event", ev_bus_event_json(e)));
    return 0;
}

static void on_sub_dropped(struct ev_bus_sub *s, const char *why, void *ud)
{
    (void)s;
    struct client *c = ud;
    c->sub = NULL;
    log_plugd("warn", NULL, "control: %s's event subscription dropped: %s", c->actor, why);
    struct ev_bus_event *e =
        ev_bus_notice_new(ev_bus_last_seq(c->ctl->d->bus), EVT_SUBSCRIBER_OVERFLOW,
                          json_pack("{s:s}", "reason", why));
    if (e == NULL)
        return;
    send_line(c, json_pack("{s:o}", "event", ev_bus_event_json(e)));
    ev_bus_event_unref(e);
}

static int ctl_subscribe(struct cmd_request *r, const char *pattern, json_t *filter, int64_t since,
                         json_t *answer, struct plugd_error *err)
{
    struct client *c = ((struct control_request *)r)->c;
    struct ev_bus *bus = r->d->bus;
    if (c->sub == NULL &&
        (c->sub = ev_bus_subscribe(bus, deliver_event, on_sub_dropped, c)) == NULL) {
        json_decref(answer);
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "subscribe: no memory");
    }
    if (ev_bus_sub_add(c->sub, pattern, filter, err) < 0) {
        json_decref(answer);
        return -1;
    }
    struct ev_bus_sub *sub = c->sub;
    ctl_reply_json(r, answer); /* the answer goes before the replayed events */
    if (since >= 0 && !c->is_closed)
        ev_bus_sub_replay(sub, (uint64_t)since);
    return 0;
}

static void on_log_record(const json_t *rec, void *ud)
{
    struct client *c = ud;
    const char *plugin = json_string_value(json_object_get(rec, "plugin"));
    if (c->is_closed || queued(c) > CONTROL_HIGH_WATER)
        return; /* followed log lines are dropped for a client that does not read */
    if (c->log_plugin[0] && (plugin == NULL || strcmp(plugin, c->log_plugin) != 0))
        return;
    send_line(c, json_pack("{s:O}", "log", rec));
}

static int ctl_follow_logs(struct cmd_request *r, const char *plugin, struct plugd_error *err)
{
    struct client *c = ((struct control_request *)r)->c;
    snprintf(c->log_plugin, sizeof(c->log_plugin), "%s", plugin ? plugin : "");
    if (c->is_following_logs)
        return 0;
    if (log_add_listener(on_log_record, c) < 0)
        return plugd_error_set(err, PLUGD_E_LIMIT_REACHED,
                               "logs: at most %d clients follow the log at once; "
                               "end another follower first",
                               LOG_LISTENERS);
    c->is_following_logs = true;
    return 0;
}

static const struct cmd_transport control_transport = {
    .reply_json = ctl_reply_json,
    .reply_msgpack = ctl_reply_msgpack,
    .fail = ctl_fail,
    .subscribe = ctl_subscribe,
    .follow_logs = ctl_follow_logs,
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
    if (queued(c) > CONTROL_HIGH_WATER)
        c->is_congested = true;
    else if (queued(c) <= CONTROL_LOW_WATER)
        c->is_congested = false;
    if (c->is_eof && !c->may_have_line && c->pending == 0 && queued(c) == 0) {
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
    if (c->is_closed)
        client_close(c);
    else
        client_schedule(c);
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

/* ------------------------------------------------------------ clients */

static void client_free(struct client *c)
{
    if (c->ctl != NULL) { /* NULL: orphaned by control_close */
        struct client **p = &c->ctl->clients;
        while (*p != c)
            p = &(*p)->next;
        *p = c->next;
        c->ctl->held -= c->held;
    }
    free(c->in);
    free(c->out);
    free(c);
}

/* Ends the client now; its memory goes when its last pending request is
 * answered (the answer is dropped) and no callback of its own runs. */
static void client_close(struct client *c)
{
    if (!c->is_closed) {
        c->is_closed = true;
        ev_io_stop(c->ctl->d->loop, &c->rio);
        ev_io_stop(c->ctl->d->loop, &c->wio);
        ev_idle_stop(c->ctl->d->loop, &c->more_w);
        close(c->fd);
        c->ctl->n_clients--;
        ev_bus_unsubscribe(c->sub);
        c->sub = NULL;
        if (c->is_following_logs)
            log_remove_listener(on_log_record, c);
        c->is_following_logs = false;
    }
    if (c->pending == 0 && c->holds == 0)
        client_free(c);
}

/* The client holding the most memory when all of them hold more than
 * CONTROL_MEMORY_MAX: it is told why, and disconnected. */
static void on_trim(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct control *ctl = w->data;
    ev_prepare_stop(loop, w);
    while (ctl->held > CONTROL_MEMORY_MAX) {
        struct client *greediest = NULL;
        for (struct client *c = ctl->clients; c != NULL; c = c->next)
            if (!c->is_closed && (greediest == NULL || c->held > greediest->held))
                greediest = c;
        if (greediest == NULL)
            return;
        struct client *c = greediest;
        size_t total = ctl->held, own = c->held;
        log_plugd("warn", NULL,
                  "control: clients hold %zu MiB, over the cap of %d MiB: %s holds the most "
                  "(%zu MiB) and is disconnected",
                  total >> 20, CONTROL_MEMORY_MAX >> 20, c->actor, own >> 20);
        c->out_off = c->out_len = 0; /* what it did not read is dropped: the error goes now */
        refuse_line(c, NULL, PLUGD_E_BUFFER_FULL,
                    "control clients hold %zu MiB, over plugd's cap of %d MiB, and this "
                    "connection holds the most (%zu MiB): disconnected; read the answers "
                    "before sending more requests",
                    total >> 20, CONTROL_MEMORY_MAX >> 20, own >> 20);
        flush_some(c);
        free(c->in); /* its memory goes now, even with a request out */
        free(c->out);
        c->in = c->out = NULL;
        c->in_off = c->in_len = c->in_cap = c->out_off = c->out_len = c->out_cap = 0;
        account(c);
        client_close(c);
    }
}

static bool is_allowed(const struct control *ctl, const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == getuid())
        return true;
    for (size_t i = 0; i < ctl->o.n_allow_uids; i++)
        if (ctl->o.allow_uids[i] == cred->uid)
            return true;
    for (size_t i = 0; i < ctl->o.n_allow_gids; i++)
        if (ctl->o.allow_gids[i] == cred->gid)
            return true;
    return false;
}

/* A connection plugd does not take: one error line, then closed. */
static void refuse_connection(int fd, enum plugd_errc code, const char *message)
{
    json_t *msg = json_pack("{s:n, s:b, s:{s:s, s:s}}", "id", "ok", 0, "error", "code",
                            plugd_errc_name(code), "message", message);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (text != NULL) {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves room: its NUL becomes the newline */
        ssize_t ignored = send(fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)ignored;
        free(text);
    }
    close(fd);
}

static void add_client(struct control *ctl, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        free(c);
        refuse_connection(fd, PLUGD_E_NO_MEMORY, "plugd has no memory for another client");
        return;
    }
    *c = (struct client){.ctl = ctl, .fd = fd, .next = ctl->clients};
    c->is_authorized = is_allowed(ctl, &cred);
    snprintf(c->actor, sizeof(c->actor), "uid:%u", (unsigned)cred.uid);
    if (!c->is_authorized) {
        log_plugd("warn", NULL, "control: refused uid %u gid %u pid %d (not allowed)",
                  (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
    }
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
}

static void on_accept_pause_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct control *ctl = t->data;
    if (ctl->reserve_fd < 0)
        ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_start(loop, &ctl->accept_w);
}

/* Out of fds: the reserve fd makes room to accept the connection and tell
 * it so; without one, accepting pauses (the listening socket would wake
 * the loop for ever). Returns true when the loop may go on accepting. */
static bool accept_without_fds(struct control *ctl)
{
    struct ev_loop *loop = ctl->d->loop;
    if (ctl->reserve_fd >= 0) {
        close(ctl->reserve_fd);
        ctl->reserve_fd = -1;
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            refuse_connection(fd, PLUGD_E_IO,
                              "plugd is out of file descriptors (RLIMIT_NOFILE): try again when "
                              "clients or workers have closed theirs");
        ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && ctl->reserve_fd >= 0)
            return true;
    }
    log_plugd("warn", NULL, "control: out of file descriptors: not accepting for %.0f ms",
              CONTROL_ACCEPT_PAUSE * 1000);
    ev_io_stop(loop, &ctl->accept_w);
    ev_timer_set(&ctl->accept_pause_t, CONTROL_ACCEPT_PAUSE, 0.);
    ev_timer_start(loop, &ctl->accept_pause_t);
    return false;
}

/* Takes every waiting connection: a burst of connects finds the backlog
 * emptied at each wake-up. */
static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct control *ctl = w->data;
    for (;;) {
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            if (!accept_without_fds(ctl))
                return;
            continue;
        }
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EPROTO))
            continue;
        if (fd < 0)
            return; /* EAGAIN: none left; ENOBUFS, ENOMEM: the next wake-up tries again */
        if (ctl->n_clients >= CONTROL_MAX_CLIENTS) {
            char why[160];
            snprintf(why, sizeof(why),
                     "plugd serves at most %d control clients at once: try again when one has "
                     "left",
                     CONTROL_MAX_CLIENTS);
            refuse_connection(fd, PLUGD_E_BUFFER_FULL, why);
            continue;
        }
        add_client(ctl, fd);
    }
}

/* ------------------------------------------------------------ the socket */

/* A socket file nobody listens on is left over from a plugd that died. */
static bool is_live_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    bool is_live = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return is_live;
}

struct control *control_open(struct plugd *d, const struct control_options *o,
                             struct plugd_error *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(o->path) >= sizeof(addr.sun_path)) {
        plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT,
                        "control socket path %s is longer than %zu bytes", o->path,
                        sizeof(addr.sun_path) - 1);
        return NULL;
    }
    if (is_live_socket(o->path)) {
        plugd_error_set(err, PLUGD_E_IO, "control socket %s: another plugd is listening there",
                        o->path);
        return NULL;
    }
    unlink(o->path);
    struct control *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the control socket");
        return NULL;
    }
    ctl->d = d;
    ctl->o = *o;
    if ((ctl->o.path = strdup(o->path)) == NULL) {
        free(ctl);
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the control socket");
        return NULL;
    }
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", o->path);
    ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0117); /* the socket file is born 0660 */
    int rc = ctl->fd < 0 ? -1 : bind(ctl->fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc < 0 || chmod(o->path, 0660) < 0 || lstat(o->path, &ctl->socket_file) < 0 ||
        listen(ctl->fd, CONTROL_BACKLOG) < 0) {
        plugd_error_set(err, PLUGD_E_IO, "control socket %s: %s", o->path, strerror(errno));
        if (ctl->fd >= 0)
            close(ctl->fd);
        free((char *)ctl->o.path);
        free(ctl);
        return NULL;
    }
    ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_init(&ctl->accept_w, on_accept, ctl->fd, EV_READ);
    ev_init(&ctl->accept_pause_t, on_accept_pause_end);
    ev_prepare_init(&ctl->trim_w, on_trim);
    ctl->accept_w.data = ctl->accept_pause_t.data = ctl->trim_w.data = ctl;
    ev_io_start(d->loop, &ctl->accept_w);
    log_plugd("info", NULL, "control: listening on %s", o->path);
    return ctl;
}

/* At exit: what clients are owed (the shutdown answer, the last events
 * and log records) goes out, waiting at most CONTROL_EXIT_FLUSH s in all. */
static void flush_all(struct control *ctl)
{
    double until = ev_time() + CONTROL_EXIT_FLUSH;
    for (;;) {
        struct pollfd fds[CONTROL_MAX_CLIENTS];
        nfds_t n = 0;
        for (struct client *c = ctl->clients; c != NULL && n < CONTROL_MAX_CLIENTS; c = c->next) {
            if (c->is_closed || queued(c) == 0)
                continue;
            if (flush_some(c) < 0) {
                c->out_off = c->out_len; /* gone: nothing more is owed */
                continue;
            }
            if (queued(c) > 0)
                fds[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
        }
        double left = until - ev_time();
        if (n == 0 || left <= 0 || poll(fds, n, (int)(left * 1000) + 1) <= 0)
            return;
    }
}

void control_close(struct control *ctl)
{
    if (ctl == NULL)
        return;
    ev_io_stop(ctl->d->loop, &ctl->accept_w);
    ev_timer_stop(ctl->d->loop, &ctl->accept_pause_t);
    ev_prepare_stop(ctl->d->loop, &ctl->trim_w);
    close(ctl->fd);
    if (ctl->reserve_fd >= 0)
        close(ctl->reserve_fd);
    flush_all(ctl);
    struct stat now;
    if (lstat(ctl->o.path, &now) == 0 && now.st_ino == ctl->socket_file.st_ino &&
        now.st_dev == ctl->socket_file.st_dev)
        unlink(ctl->o.path);
    for (struct client *c = ctl->clients, *next; c != NULL; c = next) {
        next = c->next;
        client_close(c); /* frees it unless a request is still out */
    }
    /* a client still waiting for an answer goes when the answer comes */
    for (struct client *c = ctl->clients; c != NULL; c = c->next)
        c->ctl = NULL; /* closed already: only client_free looks at ctl */
    free((char *)ctl->o.path);
    free(ctl);
}
