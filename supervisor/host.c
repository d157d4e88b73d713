/* The host channel: msgpack-rpc with the application that started plugd
 * (`plugd --host-fd N`). Its commands are a table; the control socket will
 * share it. When the host goes away, plugd stops gracefully. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpack.h"
#include "plugd.h"

struct host_command {
    const char *name;
    int (*run)(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg);
};

static int reply_error(struct ipc_conn *c, uint32_t msgid, enum plugd_errc code, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
static int reply_error(struct ipc_conn *c, uint32_t msgid, enum plugd_errc code, const char *fmt,
                       ...)
{
    struct plugd_error e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    ipc_conn_reply_error(c, msgid, &e, NULL);
    return -1;
}

/* A host call waiting for the worker's answer. The host connection may be
 * gone by then; the answer is dropped in that case. */
struct host_call {
    struct plugd *d;
    uint32_t msgid;
};

static void on_call_answered(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    struct host_call *hc = ud;
    struct ipc_conn *c = hc->d->host;
    if (c != NULL) {
        if (err != NULL)
            ipc_conn_reply_error(c, hc->msgid, err, NULL);
        else
            ipc_conn_reply(c, hc->msgid, result, NULL);
    }
    free(hc);
}

/* call {plugin, method, params?, timeout_ms?} → the worker's result. */
static int cmd_call(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    const msgpack_object *method = ipc_arg(msg, "method");
    const msgpack_object *params = ipc_arg(msg, "params");
    const msgpack_object *timeout = ipc_arg(msg, "timeout_ms");
    if (plugin == NULL || plugin->type != MSGPACK_OBJECT_STR)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"plugin\" must be a string");
    if (method == NULL || method->type != MSGPACK_OBJECT_STR || method->via.str.size == 0 ||
        method->via.str.size > 255)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"method\" must be a string of 1 to 255 bytes");
    if (params != NULL && params->type != MSGPACK_OBJECT_ARRAY)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"params\" must be an array");
    if (timeout != NULL && (timeout->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                            timeout->via.u64 == 0 || timeout->via.u64 > 86400000))
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "call: \"timeout_ms\" must be an integer from 1 to 86400000");
    struct worker *w = plugd_find_worker(d, plugin->via.str.ptr, plugin->via.str.size);
    if (w == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "no plugin named \"%.*s\"",
                           (int)plugin->via.str.size, plugin->via.str.ptr);
    struct host_call *hc = malloc(sizeof(*hc));
    if (hc == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_NO_MEMORY, "no memory for a call");
    *hc = (struct host_call){.d = d, .msgid = msg->msgid};
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)method->via.str.size, method->via.str.ptr);
    worker_call(w, name, params, timeout ? (double)timeout->via.u64 / 1000.0 : 0, on_call_answered,
                hc);
    return 0;
}

static void pack_worker_status(msgpack_packer *pk, const struct worker *w)
{
    msgpack_pack_map(pk, 12);
    ipc_pack_str(pk, "plugin");
    ipc_pack_str(pk, w->m->name);
    ipc_pack_str(pk, "version");
    ipc_pack_str(pk, w->m->version);
    ipc_pack_str(pk, "state");
    ipc_pack_str(pk, worker_state_name(w->state));
    ipc_pack_str(pk, "pid");
    msgpack_pack_int64(pk, w->pid);
    ipc_pack_str(pk, "failed");
    if (w->is_failed)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    ipc_pack_str(pk, "restarts");
    msgpack_pack_uint64(pk, w->restarts);
    ipc_pack_str(pk, "calls");
    msgpack_pack_uint64(pk, w->calls);
    ipc_pack_str(pk, "call_errors");
    msgpack_pack_uint64(pk, w->call_errors);
    ipc_pack_str(pk, "faults");
    msgpack_pack_uint64(pk, w->faults);
    ipc_pack_str(pk, "late_replies");
    msgpack_pack_uint64(pk,
                        w->late_replies + (w->conn ? ipc_conn_stats(w->conn)->late_replies : 0));
    ipc_pack_str(pk, "last_error");
    ipc_pack_str(pk, w->last_error.message);
    ipc_pack_str(pk, "last_exit");
    ipc_pack_str(pk, w->last_exit);
}

/* status {plugin?} → [worker status, ...] */
static int cmd_status(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    struct worker *only = NULL;
    if (plugin != NULL) {
        if (plugin->type != MSGPACK_OBJECT_STR)
            return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                               "status: \"plugin\" must be a string");
        only = plugd_find_worker(d, plugin->via.str.ptr, plugin->via.str.size);
        if (only == NULL)
            return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "no plugin named \"%.*s\"",
                               (int)plugin->via.str.size, plugin->via.str.ptr);
    }
    msgpack_packer *pk = ipc_conn_begin_reply(c, msg->msgid);
    msgpack_pack_array(pk, only ? 1 : d->n_workers);
    for (size_t i = 0; i < d->n_workers; i++)
        if (only == NULL || only == d->workers[i])
            pack_worker_status(pk, d->workers[i]);
    ipc_conn_end(c, NULL);
    return 0;
}

/* shutdown → nil; then every worker stops gracefully and plugd exits. */
static int cmd_shutdown(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    ipc_conn_reply(c, msg->msgid, NULL, NULL);
    plugd_stop_all(d);
    return 0;
}

static void on_config_done(const struct plugd_error *err, void *ud)
{
    struct host_call *hc = ud;
    if (hc->d->host != NULL) {
        if (err != NULL)
            ipc_conn_reply_error(hc->d->host, hc->msgid, err, NULL);
        else
            ipc_conn_reply(hc->d->host, hc->msgid, NULL, NULL);
    }
    free(hc);
}

/* config {plugin, config: map} → nil once applied (hot or by a restart). */
static int cmd_config(struct plugd *d, struct ipc_conn *c, const struct ipc_message *msg)
{
    const msgpack_object *plugin = ipc_arg(msg, "plugin");
    const msgpack_object *config = ipc_arg(msg, "config");
    if (plugin == NULL || plugin->type != MSGPACK_OBJECT_STR)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "config: \"plugin\" must be a string");
    if (config == NULL || config->type != MSGPACK_OBJECT_MAP)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST,
                           "config: \"config\" must be a map");
    struct worker *w = plugd_find_worker(d, plugin->via.str.ptr, plugin->via.str.size);
    if (w == NULL)
        return reply_error(c, msg->msgid, PLUGD_E_INVALID_REQUEST, "no plugin named \"%.*s\"",
                           (int)plugin->via.str.size, plugin->via.str.ptr);
    struct host_call *hc = malloc(sizeof(*hc));
    json_t *value = json_from_msgpack(config);
    if (hc == NULL || value == NULL) {
        free(hc);
        json_decref(value);
        return reply_error(c, msg->msgid, PLUGD_E_NO_MEMORY, "no memory for a config change");
    }
    *hc = (struct host_call){.d = d, .msgid = msg->msgid};
    worker_set_config(w, value, on_config_done, hc);
    json_decref(value);
    return 0;
}

static const struct host_command host_commands[] = {
    {"call", cmd_call},
    {"status", cmd_status},
    {"config", cmd_config},
    {"shutdown", cmd_shutdown},
};

static void on_host_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    struct plugd *d = ud;
    for (size_t i = 0; i < sizeof(host_commands) / sizeof(host_commands[0]); i++) {
        if (ipc_str_equals(msg->method, msg->method_len, host_commands[i].name)) {
            host_commands[i].run(d, c, msg);
            return;
        }
    }
    reply_error(c, msg->msgid, PLUGD_E_METHOD_NOT_FOUND, "unknown command \"%.*s\"",
                (int)msg->method_len, msg->method);
}

static void on_host_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    struct plugd *d = ud;
    log_plugd("info", NULL, "host channel closed (%s): stopping",
              why ? why->message : "closed locally");
    d->host = NULL;
    ipc_conn_free(c);
    plugd_stop_all(d);
}

int host_channel_open(struct plugd *d, int fd, struct plugd_error *err)
{
    struct ipc_handlers h = {.on_request = on_host_request, .on_close = on_host_close};
    d->host = ipc_conn_new(d->loop, fd, fd, NULL, &h, d, err);
    return d->host ? 0 : -1;
}
