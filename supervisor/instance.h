/* A plugin's worker instances: one per package version it runs or drains
 * (a generation: version, digest, package folder, manifest), each holding
 * its worker; and the one routing rule that picks the instance a call goes
 * to. This issue keeps at most one serving instance (plus, during an
 * upgrade, the old one draining); the rollout work adds a second serving
 * one beside it (docs/decisions.md). */
#ifndef PLUGD_INSTANCE_H
#define PLUGD_INSTANCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "package.h"
#include "worker.h"

struct plugin;
struct plugd;

struct instance {
    struct plugin *p;
    struct worker *w;            /* runs the generation's manifest (version, folder) */
    char digest[PKG_DIGEST_HEX]; /* of the generation's package */
    bool is_retiring;            /* draining: it gets no call and is freed once stopped */
    uint64_t restarts_seen;      /* of w, to tell a restart from a first start */
    struct instance *next;
};

/* A stopped instance of `p` for manifest `m` (taken over, freed on
 * failure) and package `digest`, put first in p's list; its worker reports
 * to `on_state` and `on_health` with the instance as ud. NULL when out of
 * memory. */
struct instance *instance_add(struct plugin *p, struct manifest *m, const char *digest,
                              wk_state_fn on_state, wk_health_fn on_health);

/* The instance that serves p's calls and runs its current generation (the
 * newest that is not retiring), or NULL when p has none. The one place
 * that decides where a call goes. */
struct instance *plugin_serving_instance(const struct plugin *p);

/* The instance whose worker status, stats and doctor show at the top
 * level: the one draining while the serving one waits for it (an
 * upgrade), else the serving one; so the top-level state reads "stopping"
 * until the old version has gone, as it did when a plugin had one worker.
 * Display only: calls go by plugin_serving_instance. */
struct instance *plugin_shown_instance(const struct plugin *p);

/* Routes a call to p's serving instance; `reply` runs exactly once
 * (worker_unavailable when p's status serves no calls or no instance
 * runs). Every call path (control socket, host channel) comes here. */
void plugin_route_call(struct plugin *p, const char *method, const msgpack_object *params,
                       double timeout, wk_reply_fn reply, void *ud);

/* The instance stops serving and drains; it is freed once it has stopped
 * (instances_reap). */
void instance_retire(struct instance *i);

/* True while a retiring instance of p has not stopped yet. */
bool plugin_is_draining(const struct plugin *p);

/* True when no instance of p has a worker that is not stopped. */
bool plugin_is_stopped(const struct plugin *p);

/* Stops every instance's worker gracefully. */
void plugin_stop_instances(struct plugin *p);

/* Frees every instance of p (killing workers that still run). */
void plugin_free_instances(struct plugin *p);

/* Frees, from the loop (not from inside a worker's callback), the retiring
 * instances that have stopped. */
void instances_reap_later(struct plugd *d);
void instances_init(struct plugd *d);
void instances_fini(struct plugd *d);

/* The worker of plugin_shown_instance, or NULL. */
const struct worker *plugin_shown_worker(const struct plugin *p);

/* True for an instance status lists: not retired and stopped (about to be
 * freed). */
bool instance_is_listed(const struct instance *i);

/* {version, digest, serving, state, pid, started_at, restarts, calls,
 * call_errors, faults}: one instance, as status lists it. */
json_t *instance_json(const struct instance *i);

#endif
