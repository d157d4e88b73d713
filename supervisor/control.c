#include "control.h"

#include <errno.h>
#include <fcntl.h>
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
    char *in;
    size_t in_len, in_cap;
    bool is_discarding; /* the rest of a line that was too long */
    char *out;
    size_t out_off, out_len, out_cap;
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
    ev_io accept_w;
    struct client *clients;
    struct stat socket_file; /* what we bound, so we never unlink another's */
};

struct control_request {
    struct cmd_request r;
    struct client *c;
    json_t *id;
};

static void client_close(struct client *c);

/* ------------------------------------------------------------ output */

static size_t queued(const struct client *c)
{
    return c->out_len - c->out_off;
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
    }
    memcpy(c->out + c->out_len, text, n);
    c->out[c->out_len + n] = '\n';
    c->out_len += n + 1;
    free(text);
    ev_io_start(c->ctl->d->loop, &c->wio);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct client *c = w->data;
    bool was_congested = queued(c) > CONTROL_HIGH_WATER;
    while (queued(c) > 0) {
        ssize_t n = send(c->fd, c->out + c->out_off, queued(c), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            client_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    if (queued(c) == 0) {
        ev_io_stop(loop, &c->wio);
        c->out_off = c->out_len = 0;
    }
    if (was_congested && queued(c) <= CONTROL_HIGH_WATER / 2 && c->sub != NULL)
        ev_bus_sub_drain(c->sub);
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
    if (c->is_closed && c->pending == 0)
        client_close(c);
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
    reply_result((struct control_request *)r, json_from_msgpack(result));
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
    send_line(c, json_pack("{s:o}", "event", cmd_event_json(e)));
    return 0;
}

static void on_sub_dropped(struct ev_bus_sub *s, const char *why, void *ud)
{
    (void)s;
    struct client *c = ud;
    c->sub = NULL;
    log_plugd("warn", NULL, "control: %s's event subscription dropped: %s", c->actor, why);
    send_line(c, json_pack("{s:{s:I, s:s, s:n, s:{s:s}}}", "event", "seq",
                           (json_int_t)ev_bus_last_seq(c->ctl->d->bus), "name",
                           "subscriber.overflow", "plugin", "payload", "reason", why));
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
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "logs: too many followers");
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

/* Splits the input into lines; a line over CONTROL_LINE_MAX is refused
 * (line_too_long) and skipped up to its newline, the client stays. */
static void handle_input(struct client *c)
{
    size_t start = 0;
    for (size_t i = 0; i < c->in_len && !c->is_closed; i++) {
        if (c->in[i] != '\n')
            continue;
        if (!c->is_discarding && i > start)
            handle_line(c, c->in + start, i - start);
        c->is_discarding = false;
        start = i + 1;
    }
    if (c->is_closed)
        return;
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len > CONTROL_LINE_MAX) {
        if (!c->is_discarding)
            refuse_line(c, NULL, PLUGD_E_LINE_TOO_LONG, "a request line is longer than %d bytes",
                        CONTROL_LINE_MAX);
        c->is_discarding = true;
        c->in_len = 0;
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = w->data;
    if (c->in_cap - c->in_len < 65536) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
        if (cap > 2 * CONTROL_LINE_MAX + 65536)
            cap = 2 * CONTROL_LINE_MAX + 65536;
        char *grown = cap > c->in_cap ? realloc(c->in, cap) : c->in;
        if (grown == NULL) {
            client_close(c);
            return;
        }
        c->in = grown;
        c->in_cap = cap;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->in_len += (size_t)n;
    handle_input(c);
}

/* ------------------------------------------------------------ clients */

static void client_free(struct client *c)
{
    if (c->ctl != NULL) { /* NULL: orphaned by control_close */
        struct client **p = &c->ctl->clients;
        while (*p != c)
            p = &(*p)->next;
        *p = c->next;
    }
    free(c->in);
    free(c->out);
    free(c);
}

/* Ends the client now; its memory goes when its last pending request is
 * answered (the answer is dropped). */
static void client_close(struct client *c)
{
    if (!c->is_closed) {
        c->is_closed = true;
        ev_io_stop(c->ctl->d->loop, &c->rio);
        ev_io_stop(c->ctl->d->loop, &c->wio);
        close(c->fd);
        ev_bus_unsubscribe(c->sub);
        c->sub = NULL;
        if (c->is_following_logs)
            log_remove_listener(on_log_record, c);
        c->is_following_logs = false;
    }
    if (c->pending == 0)
        client_free(c);
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

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct control *ctl = w->data;
    int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        free(c);
        close(fd);
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
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(loop, &c->rio);
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
    ctl->o.path = strdup(o->path);
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", o->path);
    ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0117); /* the socket file is born 0660 */
    int rc = ctl->fd < 0 ? -1 : bind(ctl->fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc < 0 || chmod(o->path, 0660) < 0 || lstat(o->path, &ctl->socket_file) < 0 ||
        listen(ctl->fd, 64) < 0) {
        plugd_error_set(err, PLUGD_E_IO, "control socket %s: %s", o->path, strerror(errno));
        if (ctl->fd >= 0)
            close(ctl->fd);
        free((char *)ctl->o.path);
        free(ctl);
        return NULL;
    }
    ev_io_init(&ctl->accept_w, on_accept, ctl->fd, EV_READ);
    ctl->accept_w.data = ctl;
    ev_io_start(d->loop, &ctl->accept_w);
    return ctl;
}

void control_close(struct control *ctl)
{
    if (ctl == NULL)
        return;
    ev_io_stop(ctl->d->loop, &ctl->accept_w);
    close(ctl->fd);
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
        c->ctl = NULL;
    free((char *)ctl->o.path);
    free(ctl);
}
