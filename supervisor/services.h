/* Host services: what a worker may call on plugd, each granted by the
 * capabilities whose row of the capability table lists it (log by none: open
 * to every worker). docs/protocol.md, "worker → plugd". */
#ifndef PLUGD_SERVICES_H
#define PLUGD_SERVICES_H

#include <msgpack.h>
#include <stdbool.h>

#include "plugd/ipc.h"
#include "worker.h"

#include "events.h"
#include "registry.h"

#define STATE_VALUE_MAX     65536 /* bytes of one packed state value */
#define STATE_KEY_MAX       512
#define STATE_NAMESPACE_MAX 64
#define STATE_LIST_MAX      1000

#define HOST_SERVICE_PREFIX "host." /* a worker calls host service X as "host.X" */
#define HOST_METHODS_MAX    256
#define HOST_METHOD_MAX     128

struct host_call;

/* What the host services stand on; shared by every worker of one plugd. */
struct services {
    struct registry *reg;
    struct ev_bus *bus;
    struct ipc_conn *host; /* the host application's channel, NULL when none */
    char **host_methods;   /* the services the host serves (its "serve" command) */
    size_t n_host_methods;
    struct host_call *host_calls; /* forwarded to the host, awaiting its answer */
};

/* Replaces the host application's services with the strings of `names` (a
 * JSON array). -1 with err naming a bad entry; nothing changes then. */
int services_set_host_methods(struct services *sv, const json_t *names, struct plugd_error *err);

/* The worker's channel is going: answers the host sends later for its
 * forwarded calls are dropped. */
void services_release_worker(struct worker *w);

/* Frees the host method list and forgets calls still out. */
void services_fini(struct services *sv);

/* Packs the names of the services `m`'s capabilities grant (host_api). */
void services_pack_granted(msgpack_packer *pk, const struct manifest *m);

/* Serves a request (or, with msgid NULL, a notification) from worker `w`:
 * answers capability_denied without the capability, method_not_found for
 * an unknown service. */
void services_handle(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid);

/* A notification plugd drops (no such service, a refusal no one can be
 * told): counted in *count and logged with `why`, at most a few lines at
 * once and one per 10 s after (paced by `pace`), naming `from`. */
void services_note_dropped(struct log_budget *pace, uint64_t *count, const char *plugin,
                           const char *from, const struct plugd_error *why);

#endif
