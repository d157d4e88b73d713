/* The host channel: msgpack-rpc with the application that started plugd
 * (`plugd --host-fd N`). Requests are the shared command table
 * (commands.c): the method is the command, params[0] its arguments. Events
 * arrive as plugd.event notifications, followed log records as plugd.log.
 * When the host goes away, plugd stops gracefully. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "jsonpack.h"

struct host_request {
    struct cmd_request r;
    uint32_t msgid;
};

/* The request's answer goes to the host if it is still there. */
static struct ipc_conn *host_of(struct cmd_request *r)
{
    return r->d->host;
}

static void host_reply_msgpack(struct cmd_request *r, const msgpack_object *result)
{
    struct host_request *hr = (struct host_request *)r;
    if (host_of(r) != NULL)
        ipc_conn_reply(host_of(r), hr->msgid, result, NULL);
    free(hr);
}

static void host_reply_json(struct cmd_request *r, json_t *result)
{
    struct host_request *hr = (struct host_request *)r;
    if (host_of(r) != NULL) {
        msgpack_packer *pk = ipc_conn_begin_reply(host_of(r), hr->msgid);
        if (result != NULL)
            jsonpack_pack(pk, result);
        else
            msgpack_pack_nil(pk);
        ipc_conn_end(host_of(r), NULL);
    }
    json_decref(result);
    free(hr);
}

static void host_fail(struct cmd_request *r, const struct plugd_error *err)
{
    struct host_request *hr = (struct host_request *)r;
    if (host_of(r) != NULL)
        ipc_conn_reply_error(host_of(r), hr->msgid, err, NULL);
    free(hr);
}

/* The host's streams, behind the msgpack-rpc sink (stream.c). */
static struct stream *host_stream(struct cmd_request *r)
{
    return &r->d->host_stream;
}

static const struct cmd_transport host_transport = {
    .reply_json = host_reply_json,
    .reply_msgpack = host_reply_msgpack,
    .fail = host_fail,
    .stream = host_stream,
};

/* serve {methods: [name, ...]} → nil: the host's services from now on
 * (replacing the last list); plugins with host.call call them as host.NAME. */
static void serve_host_methods(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *arg = ipc_param(msg, 0);
    json_t *args = arg != NULL ? jsonpack_from_msgpack(arg) : NULL;
    struct plugd_error err;
    if (!json_is_object(args) || json_object_size(args) != 1 ||
        json_object_get(args, "methods") == NULL) {
        plugd_error_set(&err, PLUGD_E_INVALID_ARGUMENT, "serve takes {\"methods\": [name, ...]}");
        ipc_conn_reply_error(c, msg->msgid, &err, NULL);
    } else if (services_set_host_methods(&d->services, json_object_get(args, "methods"), &err) <
               0) {
        ipc_conn_reply_error(c, msg->msgid, &err, NULL);
    } else {
        log_plugd("info", NULL, "the host application serves %zu method(s)",
                  d->services.n_host_methods);
        ipc_conn_reply(c, msg->msgid, NULL, NULL);
    }
    json_decref(args);
}

static void on_host_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct plugd *d = ud;
    if (ipc_str_equals(msg->method, msg->method_len, "serve")) {
        serve_host_methods(d, c, msg);
        return;
    }
    struct host_request *hr = calloc(1, sizeof(*hr));
    if (hr == NULL) {
        struct plugd_error e;
        plugd_error_set(&e, PLUGD_E_NO_MEMORY, "no memory for a request");
        ipc_conn_reply_error(c, msg->msgid, &e, NULL);
        return;
    }
    const msgpack_object *arg = ipc_param(msg, 0);
    hr->msgid = msg->msgid;
    hr->r = (struct cmd_request){.d = d,
                                 .t = &host_transport,
                                 .client = c,
                                 .actor = "host",
                                 .raw = arg && arg->type == MSGPACK_OBJECT_MAP ? arg : NULL};
    json_t *args = arg != NULL ? jsonpack_from_msgpack(arg) : json_object();
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)msg->method_len, msg->method);
    cmd_dispatch(&hr->r, name, args);
    json_decref(args);
}

/* The host's dropped notifications: one host channel per plugd. */
static uint64_t host_dropped;
static struct log_budget host_notice_pace;

/* plugd serves no notification from the host (commands are requests): say
 * so in the log rather than drop it unseen. */
static void on_host_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    (void)ud;
    struct plugd_error why;
    plugd_error_set(&why, PLUGD_E_METHOD_NOT_FOUND,
                    "plugd serves no notification \"%.*s\"; commands are requests",
                    (int)msg->method_len, msg->method);
    services_note_dropped(&host_notice_pace, &host_dropped, NULL, "the host", &why);
}

/* Forgets the channel; calls forwarded to the host are answered
 * worker_unavailable as the channel is freed. */
static void release_host(struct plugd *d)
{
    struct ipc_conn *c = d->host;
    d->host = NULL;
    d->services.host = NULL;
    ipc_conn_free(c);
}

static void on_host_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    struct plugd *d = ud;
    log_plugd("info", NULL, "host channel closed (%s): stopping",
              why ? why->message : "closed locally");
    stream_close(&d->host_stream);
    release_host(d);
    plugd_stop_all(d);
}

static void on_host_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    stream_drain(&((struct plugd *)ud)->host_stream);
}

int host_channel_open(struct plugd *d, int fd, struct plugd_error *err)
{
    struct ipc_handlers h = {.on_request = on_host_request,
                             .on_notify = on_host_notify,
                             .on_close = on_host_close,
                             .on_drain = on_host_drain};
    d->host = ipc_conn_new(d->loop, fd, fd, NULL, &h, d, err);
    d->services.host = d->host;
    stream_init(&d->host_stream, d->bus, &stream_ipc_sink, &d->host, "the host", NULL);
    return d->host ? 0 : -1;
}

void host_channel_close(struct plugd *d)
{
    if (d->host == NULL)
        return;
    ipc_conn_flush(d->host, NULL); /* answers queued in the last iteration */
    stream_close(&d->host_stream);
    release_host(d);
}
