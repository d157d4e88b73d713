/* ipc: MessagePack-RPC over a non-blocking stream fd, driven by libev.
 *
 * One connection speaks the public msgpack-rpc spec (docs/protocol.md):
 *   request      [0, msgid, method, params]
 *   response     [1, msgid, error, result]
 *   notification [2, method, params]
 * Both ends are equal: either may call, answer and notify. plugd, the worker
 * SDK and host applications all use this library.
 *
 * Guarantees:
 *   - A message may arrive split over any number of reads, and many messages
 *     may arrive in one read.
 *   - A message larger than the connection's limit, bytes that are not
 *     msgpack, or msgpack of the wrong shape close the connection with
 *     message_too_large, malformed_message or invalid_message. Memory use is
 *     bounded by the limit, never by what a header declares.
 *   - Every call completes exactly once: result, remote error, timeout or
 *     connection_closed.
 *   - Output is queued in a bounded buffer with a visible high-water mark;
 *     a message that would overflow the hard limit is refused (buffer_full)
 *     and nothing of it is sent. SIGPIPE never kills the process.
 */
#ifndef PLUGD_IPC_H
#define PLUGD_IPC_H

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugd/error.h"

#define IPC_DEFAULT_MAX_MESSAGE    (16u << 20) /* bytes of one encoded message */
#define IPC_DEFAULT_OUT_HIGH_WATER (1u << 20)  /* queued output that counts as congested */
#define IPC_DEFAULT_OUT_LIMIT      (64u << 20) /* queued output past which messages are refused */
#define IPC_DEFAULT_CALL_TIMEOUT   30.0        /* seconds, for calls that give none */
#define IPC_MAX_DEPTH              32          /* nesting of arrays and maps in one message */

/* ------------------------------------------------------------------ decoder */

enum ipc_msg_type { IPC_REQUEST = 0, IPC_RESPONSE = 1, IPC_NOTIFY = 2 };

/* One decoded message. Pointers stay valid until the next call into the
 * decoder (or, inside a connection callback, until the callback returns). */
struct ipc_message {
    enum ipc_msg_type type;
    uint32_t msgid;               /* request, response */
    const char *method;           /* request, notify; not NUL-terminated */
    size_t method_len;            /* request, notify */
    const msgpack_object *params; /* request, notify: always an array */
    const msgpack_object *error;  /* response: nil type when the call succeeded */
    const msgpack_object *result; /* response */
    size_t size;                  /* encoded bytes of the whole message */
};

struct ipc_decoder;

/* A streaming decoder that refuses any message over `max_message` bytes
 * (0 = IPC_DEFAULT_MAX_MESSAGE). Returns NULL when out of memory. */
struct ipc_decoder *ipc_decoder_new(size_t max_message);
void ipc_decoder_free(struct ipc_decoder *dec);

/* Free space to read into: returns a pointer and sets *len (> 0). Follow it
 * with ipc_decoder_commit(n) for the n bytes actually written there.
 * Returns NULL when out of memory. */
char *ipc_decoder_space(struct ipc_decoder *dec, size_t *len);
void ipc_decoder_commit(struct ipc_decoder *dec, size_t n);

/* Copies `len` bytes in (tests and the fuzzer; connections read in place).
 * Returns 0, or -1 with err set when out of memory. */
int ipc_decoder_feed(struct ipc_decoder *dec, const void *data, size_t len,
                     struct plugd_error *err);

/* Takes the next complete message: 1 and *msg filled; 0 when more bytes are
 * needed; -1 with err set (message_too_large, malformed_message,
 * invalid_message, no_memory), after which the stream cannot be resumed. */
int ipc_decoder_next(struct ipc_decoder *dec, struct ipc_message *msg, struct plugd_error *err);

/* Bytes received but not yet returned as messages. */
size_t ipc_decoder_buffered(const struct ipc_decoder *dec);

/* --------------------------------------------------------------- connection */

struct ipc_conn;

/* Called exactly once per call. On success `err` is NULL and `result` is the
 * peer's result; otherwise `result` is NULL and err is the peer's error
 * (ipc_error_from_object: err->is_from_peer set), or this end's timeout or
 * connection_closed. */
typedef void (*ipc_reply_fn)(struct ipc_conn *c, const struct plugd_error *err,
                             const msgpack_object *result, void *ud);

struct ipc_handlers {
    /* A request arrived; answer it now or later with ipc_conn_reply* using msg->msgid. */
    void (*on_request)(struct ipc_conn *c, const struct ipc_message *msg, void *ud);
    void (*on_notify)(struct ipc_conn *c, const struct ipc_message *msg, void *ud);
    /* The connection closed (peer left, I/O or protocol error, ipc_conn_close).
     * Pending calls have already been completed with connection_closed.
     * Called at most once; ipc_conn_free may be called from here. */
    void (*on_close)(struct ipc_conn *c, const struct plugd_error *why, void *ud);
    /* Queued output fell back under half the high-water mark after it had reached it. */
    void (*on_drain)(struct ipc_conn *c, void *ud);
};

/* Limits of one connection; a field left 0 takes its default. */
struct ipc_options {
    size_t max_message;          /* largest message in either direction */
    size_t out_high_water;       /* ipc_conn_is_congested() above this */
    size_t out_limit;            /* a message that would queue more is refused */
    double default_call_timeout; /* seconds, for calls with timeout <= 0 */
    uint32_t first_msgid;        /* where msgids start; they wrap past UINT32_MAX (tests) */
};

void ipc_options_default(struct ipc_options *opt);

struct ipc_stats {
    uint64_t messages_in;
    uint64_t messages_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t calls_timed_out;
    uint64_t late_replies; /* responses whose call had already completed (or never existed) */
};

/* Attaches a connection to `loop`. Reads from `rfd`, writes to `wfd` (the
 * same fd for a socketpair). Takes ownership of both fds: they are made
 * non-blocking and close-on-exec, and closed when the connection closes.
 * `opt` and `h` are copied; `opt` may be NULL for the defaults.
 * Returns NULL with err set on failure (the fds are closed then too). */
struct ipc_conn *ipc_conn_new(struct ev_loop *loop, int rfd, int wfd, const struct ipc_options *opt,
                              const struct ipc_handlers *h, void *ud, struct plugd_error *err);

/* Closes the connection if open (on_close runs with `why`, NULL meaning a
 * local close), then frees it. Safe to call from any of its callbacks. */
void ipc_conn_free(struct ipc_conn *c);

/* Closes the connection now: pending calls complete with connection_closed
 * and on_close runs. The object stays valid until ipc_conn_free. */
void ipc_conn_close(struct ipc_conn *c, const struct plugd_error *why);

bool ipc_conn_is_open(const struct ipc_conn *c);
void *ipc_conn_userdata(const struct ipc_conn *c);
void ipc_conn_set_userdata(struct ipc_conn *c, void *ud);

/* Writing a message is begin, pack, end:
 *
 *     msgpack_packer *pk = ipc_conn_begin_call(c, "echo", 5.0, on_reply, ctx);
 *     msgpack_pack_array(pk, 1);
 *     msgpack_pack_bin_with_body(pk, data, 32);
 *     if (ipc_conn_end(c, &err) < 0) ...   // on_reply will never run
 *
 * Between begin and end, pack exactly one object: the params (an array, by
 * the spec) or the result. begin never returns NULL: on a closed connection
 * the packer discards and ipc_conn_end reports connection_closed. Output is
 * flushed before the loop next blocks, or at once with ipc_conn_flush. */
msgpack_packer *ipc_conn_begin_call(struct ipc_conn *c, const char *method, double timeout,
                                    ipc_reply_fn on_reply, void *ud);
msgpack_packer *ipc_conn_begin_notify(struct ipc_conn *c, const char *method);
msgpack_packer *ipc_conn_begin_reply(struct ipc_conn *c, uint32_t msgid);
int ipc_conn_end(struct ipc_conn *c, struct plugd_error *err);
/* Instead of ipc_conn_end: drops the message begun, nothing of it is sent
 * and its call (if one) is forgotten, its on_reply never run. For a caller
 * that finds, after begin, that it cannot go on (out of memory for its own
 * record of the call). */
void ipc_conn_cancel(struct ipc_conn *c);

/* One-shot forms. `params` NULL means an empty array; `result` NULL means nil. */
int ipc_conn_call(struct ipc_conn *c, const char *method, const msgpack_object *params,
                  double timeout, ipc_reply_fn on_reply, void *ud, struct plugd_error *err);
int ipc_conn_notify(struct ipc_conn *c, const char *method, const msgpack_object *params,
                    struct plugd_error *err);
int ipc_conn_reply(struct ipc_conn *c, uint32_t msgid, const msgpack_object *result,
                   struct plugd_error *err);
/* Answers with error {code, message} taken from `e`. */
int ipc_conn_reply_error(struct ipc_conn *c, uint32_t msgid, const struct plugd_error *e,
                         struct plugd_error *err);

/* Writes queued output now, as far as the fd takes it. 0, or -1 if the
 * connection closed (err set). */
int ipc_conn_flush(struct ipc_conn *c, struct plugd_error *err);

size_t ipc_conn_out_pending(const struct ipc_conn *c);
bool ipc_conn_is_congested(const struct ipc_conn *c);
size_t ipc_conn_calls_pending(const struct ipc_conn *c);
const struct ipc_stats *ipc_conn_stats(const struct ipc_conn *c);

/* Packs a NUL-terminated string as a msgpack str. */
void ipc_pack_str(msgpack_packer *pk, const char *s);

/* plugd's error for the error element `o` of a peer's response. {code,
 * message} with a code plugd knows keeps the code; any other value is
 * remote_error. The message keeps the content whatever the type: a str as
 * it is, a map's str "message" (after an unknown code: "code: message"),
 * anything else (Neovim's [type, message], an int, a map without a message)
 * as ipc_object_text writes it. Sets err->is_from_peer. */
void ipc_error_from_object(const msgpack_object *o, struct plugd_error *err);

/* Writes `o` into `buf` (`size` bytes, NUL included) as compact JSON-like
 * text: [1, "x"], {"a": null}; bin and ext as <bin 32>, <ext 1 8>; bytes
 * of a str that are not UTF-8 as '?'. Text that does not fit is cut at a
 * whole token and ends in "...". Returns the length written. */
size_t ipc_object_text(const msgpack_object *o, char *buf, size_t size);

/* Helpers for reading messages. */
bool ipc_str_equals(const char *s, size_t len, const char *cstr);
/* The value of `key` in the msgpack map `map`, or NULL (also when `map` is
 * NULL or not a map). */
const msgpack_object *ipc_map_get(const msgpack_object *map, const char *key);
/* The value of `key` in params[0] when that is a map (plugd's methods take
 * one map argument), or NULL. */
const msgpack_object *ipc_arg(const struct ipc_message *msg, const char *key);
/* The params element at `index`, or NULL if there are fewer. */
const msgpack_object *ipc_param(const struct ipc_message *msg, uint32_t index);

#endif
