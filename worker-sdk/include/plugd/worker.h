/* libplugd-worker: the C API for writing a plugd plugin.
 *
 * A plugin is a program that plugd starts with a msgpack-rpc channel at
 * fd $PLUGD_FD (a stream socket). The SDK does the handshake (plugd.hello, plugd.initialize),
 * answers plugd.health and plugd.shutdown, and dispatches the plugin's own
 * methods to handlers. docs/sdk.md is the guide; docs/protocol.md the wire.
 *
 *     static void echo(struct plugd_request *req, const msgpack_object *params, void *ud)
 *     {
 *         plugd_request_reply(req, plugd_param(params, 0));
 *     }
 *     int main(void)
 *     {
 *         struct plugd_worker *w = plugd_worker_new(NULL);
 *         plugd_worker_method(w, "echo", echo, NULL);
 *         int status = plugd_worker_run(w);
 *         plugd_worker_free(w);
 *         return status;
 *     }
 */
#ifndef PLUGD_WORKER_H
#define PLUGD_WORKER_H

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "plugd/error.h"

#define PLUGD_WORKER_API_VERSION 1 /* bumped on any incompatible API change */
#define PLUGD_PROTOCOL_VERSION   1 /* the worker protocol this SDK speaks */
#define PLUGD_WORKER_SDK_VERSION "0.1.0"
/* plugd_worker_run's status when the program was not started by plugd */
#define PLUGD_WORKER_EXIT_NO_CHANNEL 2

struct plugd_worker;
struct plugd_request;

enum plugd_log_level { PLUGD_LOG_DEBUG, PLUGD_LOG_INFO, PLUGD_LOG_WARN, PLUGD_LOG_ERROR };
enum plugd_health_status { PLUGD_HEALTH_OK, PLUGD_HEALTH_DEGRADED, PLUGD_HEALTH_ERROR };

/* A method handler. Answer `req` exactly once, now or later, with
 * plugd_request_reply / _begin_reply + _end / _fail. `params` is the
 * request's params array, valid only during the call. */
typedef void (*plugd_method_fn)(struct plugd_request *req, const msgpack_object *params, void *ud);

/* plugd.initialize: `config` is the plugin's config map. Return 0 to accept,
 * or -1 with err set to refuse (plugd then gives up on the worker). */
typedef int (*plugd_init_fn)(struct plugd_worker *w, const msgpack_object *config,
                             struct plugd_error *err, void *ud);

/* plugd.validate_config / plugd.config_changed: 0 accepts the config, -1
 * with err refuses it. */
typedef int (*plugd_config_fn)(struct plugd_worker *w, const msgpack_object *config,
                               struct plugd_error *err, void *ud);

/* plugd.health: return the status; write a reason into `why` when not ok. */
typedef enum plugd_health_status (*plugd_health_fn)(struct plugd_worker *w, char *why,
                                                    size_t why_size, void *ud);

/* plugd.shutdown: in-flight requests should be answered soon; new calls stop. */
typedef void (*plugd_shutdown_fn)(struct plugd_worker *w, void *ud);

/* A subscribed event (plugd.event). */
typedef void (*plugd_event_fn)(struct plugd_worker *w, const char *name, size_t name_len,
                               const msgpack_object *payload, void *ud);

/* The answer to a host service call: err NULL on success. */
typedef void (*plugd_host_reply_fn)(struct plugd_worker *w, const struct plugd_error *err,
                                    const msgpack_object *result, void *ud);

/* Creates a worker on the channel plugd gave it: the stream socket at fd
 * $PLUGD_FD. Returns NULL with err set when there is none (run by hand:
 * "not started by plugd (fd 3 is not open): ..." with how to run it); with
 * err NULL the reason goes to stderr. The calls below accept that NULL
 * (they do nothing), and plugd_worker_run(NULL) returns
 * PLUGD_WORKER_EXIT_NO_CHANNEL, so `w = plugd_worker_new(NULL); ...
 * return plugd_worker_run(w);` needs no check of its own. */
struct plugd_worker *plugd_worker_new(struct plugd_error *err);
/* Frees the worker and any request still unanswered (those must not be
 * answered afterwards). */
void plugd_worker_free(struct plugd_worker *w);

/* Registers a handler for the plugin method `name` (not "plugd.*").
 * 0, or -1 when the name is taken, reserved or the table is full. */
int plugd_worker_method(struct plugd_worker *w, const char *name, plugd_method_fn fn, void *ud);

void plugd_worker_on_initialize(struct plugd_worker *w, plugd_init_fn fn, void *ud);
/* Setting these advertises the hook to plugd: without on_config_changed, a
 * config change restarts the worker instead. */
void plugd_worker_on_config_changed(struct plugd_worker *w, plugd_config_fn fn, void *ud);
void plugd_worker_on_validate_config(struct plugd_worker *w, plugd_config_fn fn, void *ud);
void plugd_worker_on_health(struct plugd_worker *w, plugd_health_fn fn, void *ud);
void plugd_worker_on_shutdown(struct plugd_worker *w, plugd_shutdown_fn fn, void *ud);
void plugd_worker_on_event(struct plugd_worker *w, plugd_event_fn fn, void *ud);

/* Runs the SDK's own libev loop (the default loop) until plugd shuts the
 * worker down (returns 0) or the channel fails (returns 1); NULL (no
 * channel) returns PLUGD_WORKER_EXIT_NO_CHANNEL at once. */
int plugd_worker_run(struct plugd_worker *w);

/* For plugins with a loop of their own: attaches the channel to `loop` and
 * starts the handshake. 0, or -1 with err. plugd_worker_is_done() turns true
 * when the worker should exit. */
int plugd_worker_attach(struct plugd_worker *w, struct ev_loop *loop, struct plugd_error *err);
bool plugd_worker_is_done(const struct plugd_worker *w);
int plugd_worker_fd(const struct plugd_worker *w);
struct ev_loop *plugd_worker_loop(const struct plugd_worker *w);

/* The plugin's name and version from plugd.initialize ("" before it). */
const char *plugd_worker_plugin(const struct plugd_worker *w);
const char *plugd_worker_version(const struct plugd_worker *w);
/* True when plugd.initialize granted `capability`. */
bool plugd_worker_has_capability(const struct plugd_worker *w, const char *capability);

/* Host services. Each needs its capability in the manifest; plugd answers
 * capability_denied otherwise. `on_reply` may be NULL. */
int plugd_worker_call_host(struct plugd_worker *w, const char *method, const msgpack_object *params,
                           double timeout, plugd_host_reply_fn on_reply, void *ud,
                           struct plugd_error *err);
/* events.emit: `event` is the part after "plugin.<name>."; payload may be NULL. */
int plugd_worker_emit(struct plugd_worker *w, const char *event, const msgpack_object *payload,
                      plugd_host_reply_fn on_reply, void *ud, struct plugd_error *err);
/* events.subscribe with a name pattern ("plugin.hello.*"). */
int plugd_worker_subscribe(struct plugd_worker *w, const char *pattern,
                           plugd_host_reply_fn on_reply, void *ud, struct plugd_error *err);
/* events.subscribe with a filter (a map: every key must equal the event's
 * "name", "plugin" or payload field; NULL for none) and, when `since` > 0,
 * a replay of the kept events after that sequence number
 * (docs/events.md). */
int plugd_worker_subscribe_filtered(struct plugd_worker *w, const char *pattern,
                                    const msgpack_object *filter, uint64_t since,
                                    plugd_host_reply_fn on_reply, void *ud,
                                    struct plugd_error *err);

/* A structured log record in plugd's log; `fields` (a map) may be NULL. */
void plugd_worker_log(struct plugd_worker *w, enum plugd_log_level level,
                      const msgpack_object *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers. Each request takes exactly one; the SDK frees it then. */
void plugd_request_reply(struct plugd_request *req, const msgpack_object *result);
msgpack_packer *plugd_request_begin_reply(struct plugd_request *req);
void plugd_request_end(struct plugd_request *req);
void plugd_request_fail(struct plugd_request *req, enum plugd_errc code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct plugd_worker *plugd_request_worker(const struct plugd_request *req);

/* params[index], or NULL when there are fewer. */
const msgpack_object *plugd_param(const msgpack_object *params, uint32_t index);
/* The value of `key` in a msgpack map, or NULL. */
const msgpack_object *plugd_map_get(const msgpack_object *map, const char *key);
/* True when `o` is an integer that fits int64_t; stores it in *out. */
bool plugd_get_int(const msgpack_object *o, int64_t *out);

#endif
