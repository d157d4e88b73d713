/* What happens to a worker, turned into worker_table.h's events: the libev
 * callbacks (child, report socket, timers), the channel's handlers and the
 * answers to plugd's own calls. Each one only names the event, with what
 * came with it, and calls wk_dispatch. */
#ifndef PLUGD_WORKER_EVENTS_H
#define PLUGD_WORKER_EVENTS_H

#include "plugd/ipc.h"

struct worker;
struct wk_confinement;
struct sb_syscall;

/* Ties the watchers of `w` to their callbacks (once, at worker_new). */
void wk_events_init(struct worker *w);

/* The channel's handlers, for ipc_conn_new. */
extern const struct ipc_handlers wk_channel_handlers;

/* Reads what the child has reported so far on the report socket. */
void wk_read_report(struct worker *w);

/* The answers to plugd.initialize, plugd.health and plugd.shutdown (`ud`
 * the worker). */
void wk_on_initialize_answer(struct ipc_conn *c, const struct plugd_error *err,
                             const msgpack_object *result, void *ud);
void wk_on_health_answer(struct ipc_conn *c, const struct plugd_error *err,
                         const msgpack_object *result, void *ud);
void wk_on_shutdown_answer(struct ipc_conn *c, const struct plugd_error *err,
                           const msgpack_object *result, void *ud);

/* confine.c's report of a system call outside the allow-list. */
void wk_on_violation(struct wk_confinement *c, const struct sb_syscall *call);

#endif
