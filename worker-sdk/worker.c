/* libplugd-worker: the worker side of docs/protocol.md on the ipc library. */
#include "plugd/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugd/ipc.h"

#define MAX_METHODS      128
#define MAX_CAPABILITIES 32
#define NAME_MAX_LEN     128
#define HELLO_TIMEOUT    10.0

struct method {
    char name[NAME_MAX_LEN];
    plugd_method_fn fn;
    void *ud;
};

struct plugd_worker {
    int fd;
    struct ev_loop *loop;
    struct ipc_conn *conn;
    struct method methods[MAX_METHODS];
    size_t n_methods;

    plugd_init_fn on_init;
    plugd_config_fn on_config, on_validate;
    plugd_health_fn on_health;
    plugd_shutdown_fn on_shutdown;
    plugd_event_fn on_event;
    void *init_ud, *config_ud, *validate_ud, *health_ud, *shutdown_ud, *event_ud;

    char plugin[NAME_MAX_LEN];
    char version[64];
    char capabilities[MAX_CAPABILITIES][NAME_MAX_LEN];
    size_t n_capabilities;

    size_t in_flight;                 /* requests handed to handlers, not yet answered */
    struct plugd_request *unanswered; /* those requests, freed with the worker */
    bool is_shutting_down;            /* plugd.shutdown received */
    uint32_t shutdown_msgid;
    ev_timer shutdown_deadline;
    bool is_done;
    int exit_status;
    struct host_call *begun_host_call; /* between begin_host_call and end_host_call */
};

struct plugd_request {
    struct plugd_worker *w;
    uint32_t msgid;
    struct plugd_request *prev, *next; /* the worker's unanswered requests */
};

/* ------------------------------------------------------------ helpers */

const msgpack_object *plugd_param(const msgpack_object *params, uint32_t index)
{
    if (params == NULL || params->type != MSGPACK_OBJECT_ARRAY || index >= params->via.array.size)
        return NULL;
    return &params->via.array.ptr[index];
}

const msgpack_object *plugd_map_get(const msgpack_object *map, const char *key)
{
    return ipc_map_get(map, key);
}

bool plugd_get_int(const msgpack_object *o, int64_t *out)
{
    if (o == NULL)
        return false;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    return false;
}

static void copy_str(char *dst, size_t size, const msgpack_object *o)
{
    dst[0] = '\0';
    if (o != NULL && o->type == MSGPACK_OBJECT_STR)
        snprintf(dst, size, "%.*s", (int)o->via.str.size, o->via.str.ptr);
}

/* Ends the worker's run: the loop stops and run() returns `status`. */
static void finish(struct plugd_worker *w, int status)
{
    if (w->is_done)
        return;
    w->is_done = true;
    w->exit_status = status;
    ev_timer_stop(w->loop, &w->shutdown_deadline);
    if (w->conn != NULL)
        ipc_conn_flush(w->conn, NULL);
    ev_break(w->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------ requests */

static void answer_shutdown_when_drained(struct plugd_worker *w)
{
    if (!w->is_shutting_down || w->in_flight > 0 || w->is_done)
        return;
    ipc_conn_reply(w->conn, w->shutdown_msgid, NULL, NULL);
    finish(w, 0);
}

static void request_done(struct plugd_request *req)
{
    struct plugd_worker *w = req->w;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        w->unanswered = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    free(req);
    w->in_flight--;
    answer_shutdown_when_drained(w);
}

struct plugd_worker *plugd_request_worker(const struct plugd_request *req)
{
    return req->w;
}

void plugd_request_reply(struct plugd_request *req, const msgpack_object *result)
{
    ipc_conn_reply(req->w->conn, req->msgid, result, NULL);
    request_done(req);
}

msgpack_packer *plugd_request_begin_reply(struct plugd_request *req)
{
    return ipc_conn_begin_reply(req->w->conn, req->msgid);
}

void plugd_request_end(struct plugd_request *req)
{
    ipc_conn_end(req->w->conn, NULL);
    request_done(req);
}

void plugd_request_fail(struct plugd_request *req, enum plugd_errc code, const char *fmt, ...)
{
    struct plugd_error e;
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(&e, code, fmt, ap);
    va_end(ap);
    ipc_conn_reply_error(req->w->conn, req->msgid, &e, NULL);
    request_done(req);
}

static void reply_error(struct plugd_worker *w, uint32_t msgid, enum plugd_errc code,
                        const char *message)
{
    struct plugd_error e = {.code = code};
    snprintf(e.message, sizeof(e.message), "%s", message);
    ipc_conn_reply_error(w->conn, msgid, &e, NULL);
}

/* ------------------------------------------------------------ plugd.* */

static void handle_initialize(struct plugd_worker *w, const struct ipc_message *msg)
{
    const msgpack_object *arg = ipc_param(msg, 0);
    copy_str(w->plugin, sizeof(w->plugin), plugd_map_get(arg, "plugin"));
    copy_str(w->version, sizeof(w->version), plugd_map_get(arg, "version"));
    const msgpack_object *caps = plugd_map_get(arg, "capabilities");
    w->n_capabilities = 0;
    for (uint32_t i = 0; caps && caps->type == MSGPACK_OBJECT_ARRAY && i < caps->via.array.size &&
                         w->n_capabilities < MAX_CAPABILITIES;
         i++)
        copy_str(w->capabilities[w->n_capabilities++], NAME_MAX_LEN, &caps->via.array.ptr[i]);

    struct plugd_error err = {0};
    if (w->on_init != NULL && w->on_init(w, plugd_map_get(arg, "config"), &err, w->init_ud) < 0) {
        ipc_conn_reply_error(w->conn, msg->msgid, &err, NULL);
        return;
    }
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, msg->msgid);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "methods");
    msgpack_pack_array(pk, w->n_methods);
    for (size_t i = 0; i < w->n_methods; i++)
        ipc_pack_str(pk, w->methods[i].name);
    ipc_pack_str(pk, "hooks");
    msgpack_pack_array(pk, (w->on_config != NULL) + (w->on_validate != NULL));
    if (w->on_config != NULL)
        ipc_pack_str(pk, "plugd.config_changed");
    if (w->on_validate != NULL)
        ipc_pack_str(pk, "plugd.validate_config");
    ipc_conn_end(w->conn, NULL);
}

static void handle_health(struct plugd_worker *w, const struct ipc_message *msg)
{
    static const char *const names[] = {"ok", "degraded", "error"};
    char why[200] = "";
    enum plugd_health_status s = PLUGD_HEALTH_OK;
    if (w->on_health != NULL)
        s = w->on_health(w, why, sizeof(why), w->health_ud);
    msgpack_packer *pk = ipc_conn_begin_reply(w->conn, msg->msgid);
    msgpack_pack_map(pk, s == PLUGD_HEALTH_OK ? 2 : 3);
    ipc_pack_str(pk, "status");
    ipc_pack_str(pk, names[s]);
    ipc_pack_str(pk, "diagnostics");
    msgpack_pack_map(pk, 1);
    ipc_pack_str(pk, "in_flight");
    msgpack_pack_uint64(pk, w->in_flight);
    if (s != PLUGD_HEALTH_OK) {
        ipc_pack_str(pk, "error");
        ipc_pack_str(pk, why[0] ? why : "no reason given");
    }
    ipc_conn_end(w->conn, NULL);
}

static void on_shutdown_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct plugd_worker *w = t->data;
    ipc_conn_reply(w->conn, w->shutdown_msgid, NULL, NULL);
    finish(w, 0);
}

static void handle_shutdown(struct plugd_worker *w, const struct ipc_message *msg)
{
    if (w->is_shutting_down) {
        reply_error(w, msg->msgid, PLUGD_E_INVALID_REQUEST, "already shutting down");
        return;
    }
    w->is_shutting_down = true;
    w->shutdown_msgid = msg->msgid;
    int64_t deadline_ms = 10000;
    plugd_get_int(plugd_map_get(ipc_param(msg, 0), "deadline_ms"), &deadline_ms);
    if (deadline_ms < 1)
        deadline_ms = 1;
    if (w->on_shutdown != NULL)
        w->on_shutdown(w, w->shutdown_ud);
    /* Answer a little before plugd's deadline so it never has to escalate. */
    ev_timer_set(&w->shutdown_deadline, (double)deadline_ms / 1000.0 * 0.9, 0.);
    ev_timer_start(w->loop, &w->shutdown_deadline);
    answer_shutdown_when_drained(w);
}

static void handle_config(struct plugd_worker *w, const struct ipc_message *msg, plugd_config_fn fn,
                          void *ud)
{
    const msgpack_object *config = plugd_map_get(ipc_param(msg, 0), "config");
    struct plugd_error err = {0};
    if (fn == NULL)
        reply_error(w, msg->msgid, PLUGD_E_METHOD_NOT_FOUND, "hook not implemented");
    else if (fn(w, config, &err, ud) < 0)
        ipc_conn_reply_error(w->conn, msg->msgid, &err, NULL);
    else
        ipc_conn_reply(w->conn, msg->msgid, NULL, NULL);
}

/* ------------------------------------------------------------ dispatch */

static void handle_config_changed(struct plugd_worker *w, const struct ipc_message *msg)
{
    handle_config(w, msg, w->on_config, w->config_ud);
}

static void handle_validate_config(struct plugd_worker *w, const struct ipc_message *msg)
{
    handle_config(w, msg, w->on_validate, w->validate_ud);
}

/* plugd's own methods, answered by the SDK. */
static const struct {
    const char *name;
    void (*handle)(struct plugd_worker *w, const struct ipc_message *msg);
} plugd_methods[] = {
    {"plugd.initialize", handle_initialize},
    {"plugd.health", handle_health},
    {"plugd.shutdown", handle_shutdown},
    {"plugd.config_changed", handle_config_changed},
    {"plugd.validate_config", handle_validate_config},
};

static void call_method(struct plugd_worker *w, const struct method *m,
                        const struct ipc_message *msg)
{
    struct plugd_request *req = malloc(sizeof(*req));
    if (req == NULL) {
        reply_error(w, msg->msgid, PLUGD_E_NO_MEMORY, "worker out of memory");
        return;
    }
    *req = (struct plugd_request){.w = w, .msgid = msg->msgid, .next = w->unanswered};
    if (w->unanswered != NULL)
        w->unanswered->prev = req;
    w->unanswered = req;
    w->in_flight++;
    m->fn(req, msg->params, m->ud);
}

static void on_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct plugd_worker *w = ud;
    for (size_t i = 0; i < sizeof(plugd_methods) / sizeof(plugd_methods[0]); i++) {
        if (ipc_str_equals(msg->method, msg->method_len, plugd_methods[i].name)) {
            plugd_methods[i].handle(w, msg);
            return;
        }
    }
    if (w->is_shutting_down) {
        reply_error(w, msg->msgid, PLUGD_E_WORKER_UNAVAILABLE, "worker is shutting down");
        return;
    }
    for (size_t i = 0; i < w->n_methods; i++) {
        if (ipc_str_equals(msg->method, msg->method_len, w->methods[i].name)) {
            call_method(w, &w->methods[i], msg);
            return;
        }
    }
    char text[200];
    snprintf(text, sizeof(text), "no method \"%.*s\"", (int)msg->method_len, msg->method);
    reply_error(w, msg->msgid, PLUGD_E_METHOD_NOT_FOUND, text);
}

static void on_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct plugd_worker *w = ud;
    if (!ipc_str_equals(msg->method, msg->method_len, "plugd.event") || w->on_event == NULL)
        return;
    const msgpack_object *arg = ipc_param(msg, 0);
    const msgpack_object *name = plugd_map_get(arg, "name");
    if (name == NULL || name->type != MSGPACK_OBJECT_STR)
        return;
    w->on_event(w, name->via.str.ptr, name->via.str.size, plugd_map_get(arg, "payload"),
                w->event_ud);
}

static void on_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    struct plugd_worker *w = ud;
    if (!w->is_done && !w->is_shutting_down && why != NULL)
        fprintf(stderr, "plugd-worker: channel closed: %s\n", why->message);
    finish(w, w->is_shutting_down ? 0 : 1);
}

static void on_hello_answer(struct ipc_conn *c, const struct plugd_error *err,
                            const msgpack_object *result, void *ud)
{
    (void)c;
    (void)result;
    struct plugd_worker *w = ud;
    if (err != NULL) {
        fprintf(stderr, "plugd-worker: plugd refused the handshake: %s\n", err->message);
        finish(w, 1);
    }
}

/* ------------------------------------------------------------ lifetime */

/* The reason into `err`, or on stderr when the caller gave no `err` (the
 * examples and docs/sdk.md's hello do not): run by hand, the program must
 * say what it is and how it is run, not fail later with a riddle. */
static int not_started_by_plugd(struct plugd_error *err, const char *why)
{
    struct plugd_error own;
    plugd_error_set(err != NULL ? err : &own, PLUGD_E_INVALID_REQUEST,
                    "not started by plugd (%s): plugd runs a plugin; install its folder with "
                    "`plugctl install DIR` and call it with `plugctl call PLUGIN METHOD [ARG...]`",
                    why);
    if (err == NULL)
        fprintf(stderr, "plugd-worker: %s\n", own.message);
    return -1;
}

/* The channel plugd gives every worker: the stream socket at fd $PLUGD_FD.
 * Anything else (no variable, a closed fd, a terminal, a file, a pipe, a
 * datagram socket) means the program was not started by plugd. */
static int channel_fd(struct plugd_error *err)
{
    const char *env = getenv("PLUGD_FD");
    char why[96];
    if (env == NULL)
        return not_started_by_plugd(err, "PLUGD_FD is not set");
    char *end = NULL;
    long fd = strtol(env, &end, 10);
    if (*env == '\0' || *end != '\0' || fd < 0 || fd > 65535) {
        snprintf(why, sizeof(why), "PLUGD_FD=\"%.40s\" is not a fd number", env);
        return not_started_by_plugd(err, why);
    }
    struct stat st;
    int type = 0;
    socklen_t len = sizeof(type);
    if (fstat((int)fd, &st) < 0)
        snprintf(why, sizeof(why), "fd %ld is not open", fd);
    else if (!S_ISSOCK(st.st_mode))
        snprintf(why, sizeof(why), "fd %ld is not a socket", fd);
    else if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        snprintf(why, sizeof(why), "fd %ld is not a stream socket", fd);
    else
        return (int)fd;
    return not_started_by_plugd(err, why);
}

struct plugd_worker *plugd_worker_new(struct plugd_error *err)
{
    int fd = channel_fd(err);
    if (fd < 0)
        return NULL;
    struct plugd_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the worker");
        return NULL;
    }
    w->fd = fd;
    ev_init(&w->shutdown_deadline, on_shutdown_deadline);
    w->shutdown_deadline.data = w;
    return w;
}

void plugd_worker_free(struct plugd_worker *w)
{
    if (w == NULL)
        return;
    if (w->loop != NULL)
        ev_timer_stop(w->loop, &w->shutdown_deadline);
    if (w->conn != NULL)
        ipc_conn_free(w->conn);
    while (w->unanswered != NULL) {
        struct plugd_request *next = w->unanswered->next;
        free(w->unanswered);
        w->unanswered = next;
    }
    free(w);
}

int plugd_worker_method(struct plugd_worker *w, const char *name, plugd_method_fn fn, void *ud)
{
    if (w == NULL || fn == NULL || strlen(name) == 0 || strlen(name) >= NAME_MAX_LEN ||
        strncmp(name, "plugd.", 6) == 0 || w->n_methods == MAX_METHODS)
        return -1;
    for (size_t i = 0; i < w->n_methods; i++)
        if (strcmp(w->methods[i].name, name) == 0)
            return -1;
    struct method *m = &w->methods[w->n_methods++];
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->fn = fn;
    m->ud = ud;
    return 0;
}

void plugd_worker_on_initialize(struct plugd_worker *w, plugd_init_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_init = fn;
    w->init_ud = ud;
}

void plugd_worker_on_config_changed(struct plugd_worker *w, plugd_config_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_config = fn;
    w->config_ud = ud;
}

void plugd_worker_on_validate_config(struct plugd_worker *w, plugd_config_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_validate = fn;
    w->validate_ud = ud;
}

void plugd_worker_on_health(struct plugd_worker *w, plugd_health_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_health = fn;
    w->health_ud = ud;
}

void plugd_worker_on_shutdown(struct plugd_worker *w, plugd_shutdown_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_shutdown = fn;
    w->shutdown_ud = ud;
}

void plugd_worker_on_event(struct plugd_worker *w, plugd_event_fn fn, void *ud)
{
    if (w == NULL)
        return;
    w->on_event = fn;
    w->event_ud = ud;
}

int plugd_worker_attach(struct plugd_worker *w, struct ev_loop *loop, struct plugd_error *err)
{
    struct ipc_handlers h = {
        .on_request = on_request, .on_notify = on_notify, .on_close = on_close};
    w->loop = loop;
    w->conn = ipc_conn_new(loop, w->fd, w->fd, NULL, &h, w, err);
    if (w->conn == NULL)
        return -1;
    msgpack_packer *pk =
        ipc_conn_begin_call(w->conn, "plugd.hello", HELLO_TIMEOUT, on_hello_answer, w);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "protocol");
    msgpack_pack_int(pk, PLUGD_PROTOCOL_VERSION);
    ipc_pack_str(pk, "sdk");
    ipc_pack_str(pk, "libplugd-worker/" PLUGD_WORKER_SDK_VERSION);
    return ipc_conn_end(w->conn, err);
}

int plugd_worker_run(struct plugd_worker *w)
{
    if (w == NULL)
        return PLUGD_WORKER_EXIT_NO_CHANNEL; /* plugd_worker_new said why */
    struct plugd_error err;
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (plugd_worker_attach(w, loop, &err) < 0) {
        fprintf(stderr, "plugd-worker: cannot attach the channel (fd %d): %s\n", w->fd,
                err.message);
        return 1;
    }
    ev_run(loop, 0);
    return w->exit_status;
}

bool plugd_worker_is_done(const struct plugd_worker *w)
{
    return w->is_done;
}

int plugd_worker_fd(const struct plugd_worker *w)
{
    return w->fd;
}

struct ev_loop *plugd_worker_loop(const struct plugd_worker *w)
{
    return w->loop;
}

const char *plugd_worker_plugin(const struct plugd_worker *w)
{
    return w->plugin;
}

const char *plugd_worker_version(const struct plugd_worker *w)
{
    return w->version;
}

bool plugd_worker_has_capability(const struct plugd_worker *w, const char *capability)
{
    for (size_t i = 0; i < w->n_capabilities; i++)
        if (strcmp(w->capabilities[i], capability) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ host services */

struct host_call {
    struct plugd_worker *w;
    plugd_host_reply_fn on_reply;
    void *ud;
};

static void on_host_answer(struct ipc_conn *c, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)c;
    struct host_call *hc = ud;
    if (hc->on_reply != NULL)
        hc->on_reply(hc->w, err, result, hc->ud);
    free(hc);
}

/* Starts a host call; the caller packs the params into the returned
 * packer and ends it with end_host_call. */
static msgpack_packer *begin_host_call(struct plugd_worker *w, const char *method, double timeout,
                                       plugd_host_reply_fn on_reply, void *ud)
{
    struct host_call *hc = malloc(sizeof(*hc));
    if (hc != NULL)
        *hc = (struct host_call){.w = w, .on_reply = on_reply, .ud = ud};
    w->begun_host_call = hc;
    return ipc_conn_begin_call(w->conn, method, timeout, on_host_answer, hc);
}

/* Sends the call begun. Without memory for its record it is dropped, not
 * sent: on_reply could never run for it. */
static int end_host_call(struct plugd_worker *w, struct plugd_error *err)
{
    struct host_call *hc = w->begun_host_call;
    w->begun_host_call = NULL;
    if (hc == NULL) {
        ipc_conn_cancel(w->conn);
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a host call");
    }
    if (ipc_conn_end(w->conn, err) < 0) {
        free(hc); /* on_reply never runs for a call that was not sent */
        return -1;
    }
    return 0;
}

int plugd_worker_call_host(struct plugd_worker *w, const char *method, const msgpack_object *params,
                           double timeout, plugd_host_reply_fn on_reply, void *ud,
                           struct plugd_error *err)
{
    if (w->conn == NULL)
        return plugd_error_set(err, PLUGD_E_CONNECTION_CLOSED, "worker is not attached");
    struct host_call *hc = malloc(sizeof(*hc));
    if (hc == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a host call");
    *hc = (struct host_call){.w = w, .on_reply = on_reply, .ud = ud};
    if (ipc_conn_call(w->conn, method, params, timeout, on_host_answer, hc, err) < 0) {
        free(hc);
        return -1;
    }
    return 0;
}

int plugd_worker_emit(struct plugd_worker *w, const char *event, const msgpack_object *payload,
                      plugd_host_reply_fn on_reply, void *ud, struct plugd_error *err)
{
    if (w->conn == NULL)
        return plugd_error_set(err, PLUGD_E_CONNECTION_CLOSED, "worker is not attached");
    char name[2 * NAME_MAX_LEN + 16];
    snprintf(name, sizeof(name), "plugin.%s.%s", w->plugin, event);
    msgpack_packer *pk = begin_host_call(w, "events.emit", 0, on_reply, ud);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    ipc_pack_str(pk, "name");
    ipc_pack_str(pk, name);
    ipc_pack_str(pk, "payload");
    if (payload != NULL)
        msgpack_pack_object(pk, *payload);
    else
        msgpack_pack_nil(pk);
    return end_host_call(w, err);
}

int plugd_worker_subscribe(struct plugd_worker *w, const char *pattern,
                           plugd_host_reply_fn on_reply, void *ud, struct plugd_error *err)
{
    return plugd_worker_subscribe_filtered(w, pattern, NULL, 0, on_reply, ud, err);
}

int plugd_worker_subscribe_filtered(struct plugd_worker *w, const char *pattern,
                                    const msgpack_object *filter, uint64_t since,
                                    plugd_host_reply_fn on_reply, void *ud, struct plugd_error *err)
{
    if (w->conn == NULL)
        return plugd_error_set(err, PLUGD_E_CONNECTION_CLOSED, "worker is not attached");
    msgpack_packer *pk = begin_host_call(w, "events.subscribe", 0, on_reply, ud);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1 + (filter != NULL) + (since > 0));
    ipc_pack_str(pk, "pattern");
    ipc_pack_str(pk, pattern);
    if (filter != NULL) {
        ipc_pack_str(pk, "filter");
        msgpack_pack_object(pk, *filter);
    }
    if (since > 0) {
        ipc_pack_str(pk, "since");
        msgpack_pack_uint64(pk, since);
    }
    return end_host_call(w, err);
}

void plugd_worker_log(struct plugd_worker *w, enum plugd_log_level level,
                      const msgpack_object *fields, const char *fmt, ...)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    if (w->conn == NULL)
        return;
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msgpack_packer *pk = ipc_conn_begin_notify(w->conn, "log");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, fields ? 3 : 2);
    ipc_pack_str(pk, "level");
    ipc_pack_str(pk, levels[level <= PLUGD_LOG_ERROR ? level : PLUGD_LOG_INFO]);
    ipc_pack_str(pk, "message");
    ipc_pack_str(pk, text);
    if (fields != NULL) {
        ipc_pack_str(pk, "fields");
        msgpack_pack_object(pk, *fields);
    }
    ipc_conn_end(w->conn, NULL);
}
