/* plugd's one structured error: a stable code and a human message.
 *
 * Every part of plugd (ipc, supervisor, worker SDK, host library) reports
 * failures with this type. The code is an enum inside and a stable lowercase
 * string on the wire (docs/protocol.md lists them); the message says what was
 * being done and what went wrong. */
#ifndef PLUGD_ERROR_H
#define PLUGD_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define PLUGD_ERROR_MESSAGE_MAX 256

/* X-macro so the enum and its wire names can never drift apart. */
#define PLUGD_ERRORS(X)                                                                            \
    X(PLUGD_OK, "ok")                                                                              \
    X(PLUGD_E_MESSAGE_TOO_LARGE, "message_too_large")                                              \
    X(PLUGD_E_MALFORMED_MESSAGE, "malformed_message")                                              \
    X(PLUGD_E_INVALID_MESSAGE, "invalid_message")                                                  \
    X(PLUGD_E_CONNECTION_CLOSED, "connection_closed")                                              \
    X(PLUGD_E_IO, "io_error")                                                                      \
    X(PLUGD_E_BUFFER_FULL, "buffer_full")                                                          \
    X(PLUGD_E_TIMEOUT, "timeout")                                                                  \
    X(PLUGD_E_REMOTE, "remote_error")                                                              \
    X(PLUGD_E_NO_MEMORY, "no_memory")                                                              \
    X(PLUGD_E_INVALID_REQUEST, "invalid_request")                                                  \
    X(PLUGD_E_WORKER_UNAVAILABLE, "worker_unavailable")                                            \
    X(PLUGD_E_WORKER_ERROR, "worker_error")                                                        \
    X(PLUGD_E_CAPABILITY_DENIED, "capability_denied")                                              \
    X(PLUGD_E_METHOD_NOT_FOUND, "method_not_found")                                                \
    X(PLUGD_E_INVALID_MANIFEST, "invalid_manifest")                                                \
    X(PLUGD_E_INVALID_TRANSITION, "invalid_transition")                                            \
    X(PLUGD_E_PLUGIN_NOT_FOUND, "plugin_not_found")                                                \
    X(PLUGD_E_VALUE_TOO_LARGE, "value_too_large")                                                  \
    X(PLUGD_E_STORAGE, "storage_error")                                                            \
    X(PLUGD_E_PERMISSION_DENIED, "permission_denied")                                              \
    X(PLUGD_E_INVALID_JSON, "invalid_json")                                                        \
    X(PLUGD_E_LINE_TOO_LONG, "line_too_long")                                                      \
    X(PLUGD_E_UNKNOWN_COMMAND, "unknown_command")                                                  \
    X(PLUGD_E_INVALID_ARGUMENT, "invalid_argument")                                                \
    X(PLUGD_E_SANDBOX_VIOLATION, "sandbox_violation")                                              \
    X(PLUGD_E_LIMIT_REACHED, "limit_reached")

enum plugd_errc {
#define PLUGD_ERRC_ENUM(id, name) id,
    PLUGD_ERRORS(PLUGD_ERRC_ENUM)
#undef PLUGD_ERRC_ENUM
        PLUGD_ERRC_COUNT
};

struct plugd_error {
    enum plugd_errc code;
    char message[PLUGD_ERROR_MESSAGE_MAX];
    /* The code came in the peer's error object, not from this end: a
     * peer's "timeout" is its word, not a deadline that passed here. Only
     * ipc_error_from_object sets it; plugd_error_set clears it. */
    bool is_from_peer;
};

/* The stable wire name of `code` ("timeout"); "unknown" for an out-of-range value. */
const char *plugd_errc_name(enum plugd_errc code);

/* Looks up a wire name of `len` bytes; returns 0 and sets *code, or -1 if unknown. */
int plugd_errc_from_name(const char *name, size_t len, enum plugd_errc *code);

/* Fills `err` (which may be NULL) with `code` and a printf-formatted message,
 * truncated to fit. Returns -1 so callers can `return plugd_error_set(...)`. */
int plugd_error_set(struct plugd_error *err, enum plugd_errc code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* plugd_error_set for variadic callers (`fail(code, fmt, ...)` helpers). */
int plugd_error_vset(struct plugd_error *err, enum plugd_errc code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Resets `err` to PLUGD_OK with an empty message. */
void plugd_error_clear(struct plugd_error *err);

#endif
