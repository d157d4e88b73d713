/* A msgpack-rpc connection on a libev loop: reads and dispatches messages,
 * queues and flushes output, and keeps the table of calls awaiting a reply. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugd/ipc.h"
#include "plugd/outbuf.h"

#define MIN_CALL_SLOTS 64
#define READS_PER_WAKE 8 /* reads before yielding to other watchers */

/* A call awaiting its reply. Allocated once and recycled through a free
 * list, since its timer must not move while libev holds it. */
struct pending_call {
    struct pending_call *next_free;
    struct ipc_conn *conn;
    uint32_t msgid;
    ipc_reply_fn on_reply;
    void *ud;
    double timeout;
    ev_timer deadline;
};

enum building { BUILD_NONE, BUILD_CALL, BUILD_NOTIFY, BUILD_REPLY, BUILD_DISCARD };

struct ipc_conn {
    struct ev_loop *loop;
    int rfd, wfd;
    bool is_socket;
    ev_io read_w, write_w;
    ev_prepare flush_w; /* flushes output once per loop iteration */
    struct ipc_decoder *dec;
    struct ipc_outbuf out;
    struct ipc_options opt;
    struct ipc_handlers h;
    void *ud;

    msgpack_packer pk;      /* writes into out */
    msgpack_packer null_pk; /* discards: what begin hands out on a closed connection */
    enum building building;
    struct pending_call *building_call;

    /* Calls awaiting replies, indexed by msgid & (slots_len - 1); kept at
     * most half full, so a free slot is always near. */
    struct pending_call **slots;
    uint32_t slots_len;
    size_t calls_pending;
    uint32_t next_msgid;
    struct pending_call *free_calls;

    bool is_open;
    bool is_congested;
    bool free_requested;
    int busy; /* callbacks on the stack: freeing waits until they return */
    struct ipc_stats stats;
};

void ipc_options_default(struct ipc_options *opt)
{
    *opt = (struct ipc_options){
        .max_message = IPC_DEFAULT_MAX_MESSAGE,
        .out_high_water = IPC_DEFAULT_OUT_HIGH_WATER,
        .out_limit = IPC_DEFAULT_OUT_LIMIT,
        .default_call_timeout = IPC_DEFAULT_CALL_TIMEOUT,
        .first_msgid = 1,
    };
}

static void conn_destroy(struct ipc_conn *c);
static void shut_down(struct ipc_conn *c, const struct plugd_error *why);

/* ----------------------------------------------------------- reentrancy */

static void enter(struct ipc_conn *c)
{
    c->busy++;
}

/* Returns true when the connection was freed and must not be touched. */
static bool leave(struct ipc_conn *c)
{
    if (--c->busy == 0 && c->free_requested) {
        conn_destroy(c);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ call table */

static int grow_slots(struct ipc_conn *c)
{
    uint32_t len = c->slots_len ? c->slots_len * 2 : MIN_CALL_SLOTS;
    struct pending_call **slots = calloc(len, sizeof(*slots));
    if (slots == NULL)
        return -1;
    /* Distinct msgids that differed modulo the old size still differ modulo
     * the doubled one, so re-inserting never collides. */
    for (uint32_t i = 0; i < c->slots_len; i++) {
        struct pending_call *call = c->slots[i];
        if (call != NULL)
            slots[call->msgid & (len - 1)] = call;
    }
    free(c->slots);
    c->slots = slots;
    c->slots_len = len;
    return 0;
}

/* Registers a new call under a fresh msgid. msgids count up and wrap; one
 * still in use by a long call is skipped. */
static struct pending_call *call_add(struct ipc_conn *c, ipc_reply_fn on_reply, void *ud)
{
    if ((c->calls_pending + 1) * 2 > c->slots_len && grow_slots(c) < 0)
        return NULL;
    struct pending_call *call = c->free_calls;
    if (call != NULL) {
        c->free_calls = call->next_free;
    } else if ((call = malloc(sizeof(*call))) == NULL) {
        return NULL;
    }
    *call = (struct pending_call){.conn = c, .on_reply = on_reply, .ud = ud};
    for (;;) {
        uint32_t id = c->next_msgid++;
        struct pending_call **slot = &c->slots[id & (c->slots_len - 1)];
        if (*slot == NULL) {
            *slot = call;
            call->msgid = id;
            break;
        }
    }
    c->calls_pending++;
    return call;
}

static struct pending_call *call_find(struct ipc_conn *c, uint32_t msgid)
{
    if (c->slots_len == 0)
        return NULL;
    struct pending_call *call = c->slots[msgid & (c->slots_len - 1)];
    return call != NULL && call->msgid == msgid ? call : NULL;
}

static void call_remove(struct ipc_conn *c, struct pending_call *call)
{
    ev_timer_stop(c->loop, &call->deadline);
    c->slots[call->msgid & (c->slots_len - 1)] = NULL;
    c->calls_pending--;
    call->next_free = c->free_calls;
    c->free_calls = call;
}

/* Completes a call exactly once: it leaves the table before its callback
 * runs, so nothing the callback does can complete it again. */
static void call_complete(struct ipc_conn *c, struct pending_call *call,
                          const struct plugd_error *err, const msgpack_object *result)
{
    ipc_reply_fn on_reply = call->on_reply;
    void *ud = call->ud;
    call_remove(c, call);
    if (on_reply != NULL)
        on_reply(c, err, result, ud);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct pending_call *call =
        (struct pending_call *)((char *)w - offsetof(struct pending_call, deadline));
    struct ipc_conn *c = call->conn;
    struct plugd_error err;
    plugd_error_set(&err, PLUGD_E_TIMEOUT, "no reply to call %u within %.3f s", call->msgid,
                    call->timeout);
    c->stats.calls_timed_out++;
    enter(c);
    call_complete(c, call, &err, NULL);
    leave(c);
}

static void fail_all_calls(struct ipc_conn *c, const struct plugd_error *why)
{
    struct plugd_error err;
    plugd_error_set(&err, PLUGD_E_CONNECTION_CLOSED, "connection closed before the reply: %s",
                    why ? why->message : "closed locally");
    for (uint32_t i = 0; i < c->slots_len && c->calls_pending > 0; i++) {
        if (c->slots[i] != NULL)
            call_complete(c, c->slots[i], &err, NULL);
    }
}

/* ----------------------------------------------------------------- output */

static void update_congestion(struct ipc_conn *c)
{
    if (!c->is_congested && c->out.pending >= c->opt.out_high_water) {
        c->is_congested = true;
    } else if (c->is_congested && c->out.pending <= c->opt.out_high_water / 2) {
        c->is_congested = false;
        if (c->h.on_drain != NULL)
            c->h.on_drain(c, c->ud);
    }
}

/* Writes what the fd takes; arms the write watcher for the rest. */
static int write_out(struct ipc_conn *c, struct plugd_error *err)
{
    while (c->out.pending > 0) {
        ssize_t w = ipc_outbuf_write(&c->out, c->wfd, c->is_socket);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            plugd_error_set(err, PLUGD_E_IO, "write failed: %s", strerror(errno));
            shut_down(c, err);
            return -1;
        }
        c->stats.bytes_out += (uint64_t)w;
    }
    if (c->out.pending > 0)
        ev_io_start(c->loop, &c->write_w);
    else
        ev_io_stop(c->loop, &c->write_w);
    update_congestion(c);
    return 0;
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct ipc_conn *c = w->data;
    struct plugd_error err;
    enter(c);
    write_out(c, &err);
    leave(c);
}

static void on_prepare_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct ipc_conn *c = w->data;
    struct plugd_error err;
    ev_prepare_stop(loop, w);
    enter(c);
    write_out(c, &err);
    leave(c);
}

int ipc_conn_flush(struct ipc_conn *c, struct plugd_error *err)
{
    if (!c->is_open)
        return plugd_error_set(err, PLUGD_E_CONNECTION_CLOSED, "connection is closed");
    ev_prepare_stop(c->loop, &c->flush_w);
    enter(c);
    int r = write_out(c, err);
    leave(c);
    return r;
}

static int pack_to_outbuf(void *data, const char *buf, size_t len)
{
    return ipc_outbuf_append(data, buf, len);
}

static int pack_to_nowhere(void *data, const char *buf, size_t len)
{
    (void)data;
    (void)buf;
    (void)len;
    return 0;
}

static msgpack_packer *begin(struct ipc_conn *c, enum building kind)
{
    /* begin without end is a bug in the caller, not an input error. */
    if (c->building != BUILD_NONE)
        abort();
    if (!c->is_open) {
        c->building = BUILD_DISCARD;
        return &c->null_pk;
    }
    c->building = kind;
    ipc_outbuf_mark(&c->out);
    return &c->pk;
}

void ipc_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

msgpack_packer *ipc_conn_begin_call(struct ipc_conn *c, const char *method, double timeout,
                                    ipc_reply_fn on_reply, void *ud)
{
    msgpack_packer *pk = begin(c, BUILD_CALL);
    if (c->building != BUILD_CALL)
        return pk;
    struct pending_call *call = call_add(c, on_reply, ud);
    if (call == NULL) {
        c->out.overflow = true; /* end() reports it; nothing is sent */
        c->building_call = NULL;
        return pk;
    }
    c->building_call = call;
    call->timeout = timeout > 0 ? timeout : c->opt.default_call_timeout;
    ev_timer_init(&call->deadline, on_deadline, call->timeout, 0.);
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint8(pk, IPC_REQUEST);
    msgpack_pack_uint32(pk, call->msgid);
    ipc_pack_str(pk, method);
    return pk;
}

msgpack_packer *ipc_conn_begin_notify(struct ipc_conn *c, const char *method)
{
    msgpack_packer *pk = begin(c, BUILD_NOTIFY);
    if (c->building == BUILD_NOTIFY) {
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint8(pk, IPC_NOTIFY);
        ipc_pack_str(pk, method);
    }
    return pk;
}

msgpack_packer *ipc_conn_begin_reply(struct ipc_conn *c, uint32_t msgid)
{
    msgpack_packer *pk = begin(c, BUILD_REPLY);
    if (c->building == BUILD_REPLY) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint8(pk, IPC_RESPONSE);
        msgpack_pack_uint32(pk, msgid);
        msgpack_pack_nil(pk);
    }
    return pk;
}

/* Ends the message being built (its kind returned, its call into `call`):
 * begin and end come in pairs, so an end without a begin is our defect. */
static enum building take_building(struct ipc_conn *c, struct pending_call **call)
{
    enum building kind = c->building;
    *call = c->building_call;
    c->building = BUILD_NONE;
    c->building_call = NULL;
    if (kind == BUILD_NONE)
        abort();
    return kind;
}

int ipc_conn_end(struct ipc_conn *c, struct plugd_error *err)
{
    struct pending_call *call;
    enum building kind = take_building(c, &call);
    if (kind == BUILD_DISCARD)
        return plugd_error_set(err, PLUGD_E_CONNECTION_CLOSED, "connection is closed");

    size_t size = ipc_outbuf_message_size(&c->out);
    bool is_out_of_memory = c->out.is_out_of_memory;
    if (ipc_outbuf_commit(&c->out) < 0) {
        if (call != NULL)
            call_remove(c, call);
        if (kind == BUILD_CALL && call == NULL)
            return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for another call");
        if (is_out_of_memory)
            return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory to queue a %zu-byte message",
                                   size);
        if (size >= c->opt.max_message)
            return plugd_error_set(err, PLUGD_E_MESSAGE_TOO_LARGE,
                                   "message exceeds the %zu-byte limit", c->opt.max_message);
        return plugd_error_set(err, PLUGD_E_BUFFER_FULL,
                               "output queue full (%zu bytes queued, limit %zu): the peer is not "
                               "reading",
                               c->out.pending, c->opt.out_limit);
    }
    if (call != NULL)
        ev_timer_start(c->loop, &call->deadline);
    c->stats.messages_out++;
    if (!ev_is_active(&c->write_w))
        ev_prepare_start(c->loop, &c->flush_w);
    if (!c->is_congested && c->out.pending >= c->opt.out_high_water)
        c->is_congested = true;
    return 0;
}

void ipc_conn_cancel(struct ipc_conn *c)
{
    struct pending_call *call;
    if (take_building(c, &call) == BUILD_DISCARD)
        return;
    ipc_outbuf_rollback(&c->out);
    if (call != NULL)
        call_remove(c, call);
}

static void pack_params(msgpack_packer *pk, const msgpack_object *params)
{
    if (params != NULL)
        msgpack_pack_object(pk, *params);
    else
        msgpack_pack_array(pk, 0);
}

int ipc_conn_call(struct ipc_conn *c, const char *method, const msgpack_object *params,
                  double timeout, ipc_reply_fn on_reply, void *ud, struct plugd_error *err)
{
    pack_params(ipc_conn_begin_call(c, method, timeout, on_reply, ud), params);
    return ipc_conn_end(c, err);
}

int ipc_conn_notify(struct ipc_conn *c, const char *method, const msgpack_object *params,
                    struct plugd_error *err)
{
    pack_params(ipc_conn_begin_notify(c, method), params);
    return ipc_conn_end(c, err);
}

int ipc_conn_reply(struct ipc_conn *c, uint32_t msgid, const msgpack_object *result,
                   struct plugd_error *err)
{
    msgpack_packer *pk = ipc_conn_begin_reply(c, msgid);
    if (result != NULL)
        msgpack_pack_object(pk, *result);
    else
        msgpack_pack_nil(pk);
    return ipc_conn_end(c, err);
}

int ipc_conn_reply_error(struct ipc_conn *c, uint32_t msgid, const struct plugd_error *e,
                         struct plugd_error *err)
{
    msgpack_packer *pk = begin(c, BUILD_REPLY);
    if (c->building == BUILD_REPLY) {
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint8(pk, IPC_RESPONSE);
        msgpack_pack_uint32(pk, msgid);
        msgpack_pack_map(pk, 2);
        ipc_pack_str(pk, "code");
        ipc_pack_str(pk, plugd_errc_name(e->code));
        ipc_pack_str(pk, "message");
        ipc_pack_str(pk, e->message);
        msgpack_pack_nil(pk);
    }
    return ipc_conn_end(c, err);
}

/* ------------------------------------------------------------------ input */

bool ipc_str_equals(const char *s, size_t len, const char *cstr)
{
    return strlen(cstr) == len && memcmp(s, cstr, len) == 0;
}

const msgpack_object *ipc_param(const struct ipc_message *msg, uint32_t index)
{
    if (msg->params == NULL || index >= msg->params->via.array.size)
        return NULL;
    return &msg->params->via.array.ptr[index];
}

const msgpack_object *ipc_map_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR &&
            ipc_str_equals(kv->key.via.str.ptr, kv->key.via.str.size, key))
            return &kv->val;
    }
    return NULL;
}

const msgpack_object *ipc_arg(const struct ipc_message *msg, const char *key)
{
    return ipc_map_get(ipc_param(msg, 0), key);
}

static void handle_response(struct ipc_conn *c, const struct ipc_message *msg)
{
    struct pending_call *call = call_find(c, msg->msgid);
    if (call == NULL) {
        c->stats.late_replies++; /* its deadline passed, or the peer made it up */
        return;
    }
    if (msg->error->type == MSGPACK_OBJECT_NIL) {
        call_complete(c, call, NULL, msg->result);
        return;
    }
    struct plugd_error err;
    ipc_error_from_object(msg->error, &err);
    call_complete(c, call, &err, NULL);
}

static void dispatch(struct ipc_conn *c, const struct ipc_message *msg)
{
    c->stats.messages_in++;
    switch (msg->type) {
    case IPC_RESPONSE:
        handle_response(c, msg);
        break;
    case IPC_REQUEST:
        if (c->h.on_request != NULL) {
            c->h.on_request(c, msg, c->ud);
        } else {
            struct plugd_error e;
            plugd_error_set(&e, PLUGD_E_METHOD_NOT_FOUND, "this end serves no methods");
            ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        }
        break;
    case IPC_NOTIFY:
        if (c->h.on_notify != NULL)
            c->h.on_notify(c, msg, c->ud);
        break;
    }
}

/* Hands every complete message to its handler; a bad one closes. */
static void dispatch_buffered(struct ipc_conn *c)
{
    struct ipc_message msg;
    struct plugd_error err;
    int r;
    while (c->is_open && (r = ipc_decoder_next(c->dec, &msg, &err)) != 0) {
        if (r < 0) {
            shut_down(c, &err);
            return;
        }
        dispatch(c, &msg);
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct ipc_conn *c = w->data;
    struct plugd_error err;
    enter(c);
    for (int i = 0; i < READS_PER_WAKE && c->is_open; i++) {
        size_t space;
        char *p = ipc_decoder_space(c->dec, &space);
        if (p == NULL) {
            plugd_error_set(&err, PLUGD_E_NO_MEMORY, "no memory for the read buffer");
            shut_down(c, &err);
            break;
        }
        ssize_t n = read(c->rfd, p, space);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            if (n == 0 && ipc_decoder_buffered(c->dec) == 0)
                plugd_error_set(&err, PLUGD_E_CONNECTION_CLOSED, "peer closed the connection");
            else if (n == 0)
                plugd_error_set(&err, PLUGD_E_CONNECTION_CLOSED,
                                "peer closed the connection in the middle of a message");
            else
                plugd_error_set(&err, PLUGD_E_IO, "read failed: %s", strerror(errno));
            shut_down(c, &err);
            break;
        }
        ipc_decoder_commit(c->dec, (size_t)n);
        c->stats.bytes_in += (uint64_t)n;
        dispatch_buffered(c);
        if ((size_t)n < space)
            break; /* the fd is most likely drained; don't pay for an EAGAIN */
    }
    leave(c);
}

/* ---------------------------------------------------------------- lifetime */

static int own_fd(int fd, struct plugd_error *err)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return plugd_error_set(err, PLUGD_E_IO, "cannot make fd %d non-blocking: %s", fd,
                               strerror(errno));
    return 0;
}

static void close_fds(struct ipc_conn *c)
{
    if (c->rfd >= 0)
        close(c->rfd);
    if (c->wfd >= 0 && c->wfd != c->rfd)
        close(c->wfd);
    c->rfd = c->wfd = -1;
}

struct ipc_conn *ipc_conn_new(struct ev_loop *loop, int rfd, int wfd, const struct ipc_options *opt,
                              const struct ipc_handlers *h, void *ud, struct plugd_error *err)
{
    struct ipc_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a connection");
        goto fail_fds;
    }
    c->loop = loop;
    c->rfd = rfd;
    c->wfd = wfd;
    if (opt != NULL)
        c->opt = *opt;
    else
        ipc_options_default(&c->opt);
    /* Zero fields mean the default. */
    if (c->opt.max_message == 0)
        c->opt.max_message = IPC_DEFAULT_MAX_MESSAGE;
    if (c->opt.out_high_water == 0)
        c->opt.out_high_water = IPC_DEFAULT_OUT_HIGH_WATER;
    if (c->opt.out_limit == 0)
        c->opt.out_limit = IPC_DEFAULT_OUT_LIMIT;
    if (c->opt.default_call_timeout <= 0)
        c->opt.default_call_timeout = IPC_DEFAULT_CALL_TIMEOUT;
    if (h != NULL)
        c->h = *h;
    c->ud = ud;
    c->next_msgid = c->opt.first_msgid;

    if (own_fd(rfd, err) < 0 || own_fd(wfd, err) < 0)
        goto fail;
    struct stat st;
    c->is_socket = fstat(wfd, &st) == 0 && S_ISSOCK(st.st_mode);
    c->dec = ipc_decoder_new(c->opt.max_message);
    if (c->dec == NULL || grow_slots(c) < 0) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a connection");
        goto fail;
    }
    ipc_outbuf_init(&c->out, c->opt.out_limit, c->opt.max_message);
    msgpack_packer_init(&c->pk, &c->out, pack_to_outbuf);
    msgpack_packer_init(&c->null_pk, NULL, pack_to_nowhere);

    ev_io_init(&c->read_w, on_readable, rfd, EV_READ);
    ev_io_init(&c->write_w, on_writable, wfd, EV_WRITE);
    ev_prepare_init(&c->flush_w, on_prepare_flush);
    c->read_w.data = c->write_w.data = c->flush_w.data = c;
    ev_io_start(loop, &c->read_w);
    c->is_open = true;
    return c;

fail:
    ipc_decoder_free(c->dec);
    free(c->slots);
    free(c);
fail_fds:
    close(rfd);
    if (wfd != rfd)
        close(wfd);
    return NULL;
}

/* Closes once: watchers stop, fds close, calls fail, on_close runs. */
static void shut_down(struct ipc_conn *c, const struct plugd_error *why)
{
    if (!c->is_open)
        return;
    c->is_open = false;
    ev_io_stop(c->loop, &c->read_w);
    ev_io_stop(c->loop, &c->write_w);
    ev_prepare_stop(c->loop, &c->flush_w);
    close_fds(c);
    ipc_outbuf_destroy(&c->out);
    enter(c);
    fail_all_calls(c, why);
    if (c->h.on_close != NULL)
        c->h.on_close(c, why, c->ud);
    leave(c);
}

void ipc_conn_close(struct ipc_conn *c, const struct plugd_error *why)
{
    enter(c);
    shut_down(c, why);
    leave(c);
}

static void conn_destroy(struct ipc_conn *c)
{
    while (c->free_calls != NULL) {
        struct pending_call *next = c->free_calls->next_free;
        free(c->free_calls);
        c->free_calls = next;
    }
    free(c->slots);
    ipc_decoder_free(c->dec);
    free(c);
}

void ipc_conn_free(struct ipc_conn *c)
{
    if (c == NULL)
        return;
    c->free_requested = true;
    enter(c);
    shut_down(c, NULL);
    leave(c);
}

bool ipc_conn_is_open(const struct ipc_conn *c)
{
    return c->is_open;
}

void *ipc_conn_userdata(const struct ipc_conn *c)
{
    return c->ud;
}

void ipc_conn_set_userdata(struct ipc_conn *c, void *ud)
{
    c->ud = ud;
}

size_t ipc_conn_out_pending(const struct ipc_conn *c)
{
    return c->out.pending;
}

bool ipc_conn_is_congested(const struct ipc_conn *c)
{
    return c->is_congested;
}

size_t ipc_conn_calls_pending(const struct ipc_conn *c)
{
    return c->calls_pending;
}

const struct ipc_stats *ipc_conn_stats(const struct ipc_conn *c)
{
    return &c->stats;
}
