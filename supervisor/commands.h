/* The one command table of plugd, shared by the control socket (JSON
 * lines, control.c) and the host channel (msgpack-rpc, host.c). A transport
 * turns a request into a JSON object of arguments and a struct cmd_request,
 * calls cmd_dispatch, and gets exactly one answer back through its ops.
 * The commands' names, arguments and help are data in command_table.c,
 * shared with plugctl; docs/control.md lists them. */
#ifndef PLUGD_COMMANDS_H
#define PLUGD_COMMANDS_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>

#include "command_table.h"
#include "plugd.h"

struct cmd_request;

/* What a transport does for its requests. Exactly one of reply_json,
 * reply_msgpack or fail runs per request; the transport frees the request
 * there (or later). */
struct cmd_transport {
    void (*reply_json)(struct cmd_request *r, json_t *result); /* takes `result` (NULL: nil) */
    void (*reply_msgpack)(struct cmd_request *r, const msgpack_object *result);
    void (*fail)(struct cmd_request *r, const struct plugd_error *err);
    /* The client's streams (stream.c): subscribe and logs --follow go there. */
    struct stream *(*stream)(struct cmd_request *r);
};

struct cmd_request {
    struct plugd *d;
    const struct cmd_transport *t;
    void *client;              /* the transport's */
    const char *actor;         /* for the audit: "host", "uid:1000" */
    const msgpack_object *raw; /* the msgpack arguments when the transport has them (host), so
                                  call params keep their exact types; NULL otherwise. Valid
                                  during cmd_dispatch only. */
};

/* Runs command `name` with `args` (a JSON object, borrowed). Unknown
 * commands and bad arguments are answered with unknown_command and
 * invalid_argument naming the field. */
void cmd_dispatch(struct cmd_request *r, const char *name, json_t *args);

/* Helpers for transports. */
void cmd_fail(struct cmd_request *r, enum plugd_errc code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* NULL when every row of ct_commands (command_table.c) has a handler here
 * and the rows are in enum ct_id order with unique names; else what is
 * wrong, written into `buf`. */
const char *cmd_check_table(char *buf, size_t size);

#endif
