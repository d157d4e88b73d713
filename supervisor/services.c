#include "services.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonpack.h"

/* Answers `msgid` (when the worker asked for an answer) with an error. */
static void refuse(struct worker *w, const uint32_t *msgid, enum plugd_errc code, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
static void refuse(struct worker *w, const uint32_t *msgid, enum plugd_errc code, const char *fmt,
                   ...)
{
    if (msgid == NULL)
        return;
    struct plugd_error e = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    ipc_conn_reply_error(w->conn, *msgid, &e, NULL);
}

/* log {level, message, fields?}: a record in plugd's log. */
static void serve_log(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    const msgpack_object *level = ipc_arg(msg, "level");
    const msgpack_object *message = ipc_arg(msg, "message");
    const msgpack_object *fields = ipc_arg(msg, "fields");
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    const char *lvl = NULL;
    for (size_t i = 0; level && level->type == MSGPACK_OBJECT_STR && i < 4; i++)
        if (ipc_str_equals(level->via.str.ptr, level->via.str.size, levels[i]))
            lvl = levels[i];
    if (lvl == NULL || message == NULL || message->type != MSGPACK_OBJECT_STR) {
        refuse(w, msgid, PLUGD_E_INVALID_REQUEST,
               "log takes {level: debug|info|warn|error, message: str, fields?: map}");
        return;
    }
    log_worker_line(
        &w->src, &w->budget, &w->tail, "sdk", lvl, message->via.str.ptr, message->via.str.size,
        fields && fields->type == MSGPACK_OBJECT_MAP ? json_from_msgpack(fields) : NULL);
    if (msgid != NULL)
        ipc_conn_reply(w->conn, *msgid, NULL, NULL);
}

/* Services whose capability exists but whose backing (the event bus, the
 * state store) arrives with the lifecycle work. */
static void serve_later(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    refuse(w, msgid, PLUGD_E_METHOD_NOT_FOUND, "%.*s is not served by this plugd yet",
           (int)msg->method_len, msg->method);
}

static const struct service {
    const char *method;
    const char *capability; /* NULL: every worker may call it */
    void (*serve)(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid);
} services[] = {
    {"log", NULL, serve_log},
    {"events.emit", "events.emit", serve_later},
    {"events.subscribe", "events.subscribe", serve_later},
    {"state.get", "plugin.state.read", serve_later},
    {"state.list", "plugin.state.read", serve_later},
    {"state.set", "plugin.state.write", serve_later},
    {"state.delete", "plugin.state.write", serve_later},
};

#define N_SERVICES (sizeof(services) / sizeof(services[0]))

bool manifest_has_capability(const struct manifest *m, const char *capability)
{
    for (size_t i = 0; i < m->n_capabilities; i++)
        if (strcmp(m->capabilities[i], capability) == 0)
            return true;
    return false;
}

static bool is_granted(const struct service *s, const struct manifest *m)
{
    return s->capability == NULL || manifest_has_capability(m, s->capability);
}

void services_pack_granted(msgpack_packer *pk, const struct manifest *m)
{
    size_t n = 0;
    for (size_t i = 0; i < N_SERVICES; i++)
        n += is_granted(&services[i], m);
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < N_SERVICES; i++)
        if (is_granted(&services[i], m))
            msgpack_pack_str_with_body(pk, services[i].method, strlen(services[i].method));
}

void services_handle(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid)
{
    for (size_t i = 0; i < N_SERVICES; i++) {
        const struct service *s = &services[i];
        if (!ipc_str_equals(msg->method, msg->method_len, s->method))
            continue;
        if (!is_granted(s, w->m))
            refuse(w, msgid, PLUGD_E_CAPABILITY_DENIED, "%s needs the capability %s", s->method,
                   s->capability);
        else
            s->serve(w, msg, msgid);
        return;
    }
    refuse(w, msgid, PLUGD_E_METHOD_NOT_FOUND, "plugd has no host service \"%.*s\"",
           (int)msg->method_len, msg->method);
}
