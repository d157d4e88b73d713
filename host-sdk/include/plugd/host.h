/* libplugd-host: run plugd from a C application and talk to it over the host
 * channel (msgpack-rpc on a socketpair, docs/protocol.md "Host channel").
 *
 *   struct plugd_host *h = plugd_host_spawn(EV_DEFAULT, &opts, &err);
 *   plugd_host_serve(h, "notify", on_notify, NULL);     // plugins call host.notify
 *   plugd_host_subscribe(h, "plugin.*", on_event, NULL);
 *   msgpack_packer *pk = plugd_host_begin_call(h, "hello", "echo", 1, on_answer, NULL);
 *   msgpack_pack_int(pk, 7);
 *   plugd_host_end(h, &err);
 *   ...run the loop (plugd_host_run_until or your own ev_run)...
 *   int status = plugd_host_stop(h, 20.0);              // graceful; frees h
 *
 * Everything runs on the libev loop you give: answers, events and service
 * requests arrive as callbacks from it. plugd stops when the channel closes,
 * so a host that dies takes plugd and its workers with it. */
#ifndef PLUGD_HOST_H
#define PLUGD_HOST_H

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <sys/types.h>

#include "plugd/error.h"

#define PLUGD_HOST_API_VERSION 1

struct plugd_host;
struct plugd_host_request;

struct plugd_host_options {
    const char *plugd;             /* the plugd binary; NULL: "plugd" on PATH */
    const char *state_dir;         /* required */
    const char *plugins_dir;       /* NULL: none, plugins come by install */
    const char *log_file;          /* NULL: plugd logs to the host's stderr */
    const char *const *extra_args; /* more plugd flags, NULL-ended, or NULL */
};

/* The answer to a command: err NULL and `result` (valid during the call) on
 * success. Runs exactly once, also when plugd goes away. */
typedef void (*plugd_host_answer_fn)(struct plugd_host *h, const struct plugd_error *err,
                                     const msgpack_object *result, void *ud);
/* One event {seq, time, name, plugin, payload} (valid during the call). */
typedef void (*plugd_host_event_fn)(struct plugd_host *h, const msgpack_object *event, void *ud);
/* A plugin called host service `method`: answer `req` now or later with
 * plugd_host_reply / plugd_host_begin_reply or plugd_host_fail. `params` is
 * the plugin's params array (valid during the call). */
typedef void (*plugd_host_service_fn)(struct plugd_host_request *req, const char *plugin,
                                      const msgpack_object *params, void *ud);

/* Forks and execs plugd with the channel at fd 3 (--host-fd 3); the child
 * dies with the host (PR_SET_PDEATHSIG). NULL with err. */
struct plugd_host *plugd_host_spawn(struct ev_loop *loop, const struct plugd_host_options *o,
                                    struct plugd_error *err);

/* Any command of plugd's command table (docs/control.md): pack exactly one
 * map, its arguments, into the packer, then call plugd_host_end. */
msgpack_packer *plugd_host_begin(struct plugd_host *h, const char *cmd, plugd_host_answer_fn reply,
                                 void *ud);
/* call {plugin, method, params}: pack exactly `n_params` objects, then
 * plugd_host_end. */
msgpack_packer *plugd_host_begin_call(struct plugd_host *h, const char *plugin, const char *method,
                                      uint32_t n_params, plugd_host_answer_fn reply, void *ud);
/* Sends what was begun. -1 with err (then `reply` never runs). */
int plugd_host_end(struct plugd_host *h, struct plugd_error *err);

/* subscribe {pattern}: from now on every matching event goes to `on_event`
 * (one handler per host; a later call replaces it and adds the pattern). */
int plugd_host_subscribe(struct plugd_host *h, const char *pattern, plugd_host_event_fn on_event,
                         void *ud, struct plugd_error *err);

/* Offers host service `method` to plugins whose manifest has the capability
 * host.call; they call it as "host.<method>". -1 with err when plugd refuses
 * the name. */
int plugd_host_serve(struct plugd_host *h, const char *method, plugd_host_service_fn fn, void *ud,
                     struct plugd_error *err);

/* Answers a service request (each frees `req`). */
int plugd_host_reply(struct plugd_host_request *req, const msgpack_object *result);
msgpack_packer *plugd_host_begin_reply(struct plugd_host_request *req); /* pack one object */
int plugd_host_request_end(struct plugd_host_request *req);
int plugd_host_fail(struct plugd_host_request *req, enum plugd_errc code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs the loop until *flag is true, plugd is gone, or `seconds` pass.
 * Returns *flag. */
bool plugd_host_run_until(struct plugd_host *h, const bool *flag, double seconds);

/* plugd's pid, and whether its channel is still open. */
pid_t plugd_host_pid(const struct plugd_host *h);
bool plugd_host_is_open(const struct plugd_host *h);

/* Asks plugd to shut down gracefully, waits up to `seconds` for it to exit
 * (then SIGKILL), frees `h`, and returns plugd's exit status (-1 when it had
 * to be killed). Requests still out are answered connection_closed. */
int plugd_host_stop(struct plugd_host *h, double seconds);

#endif
