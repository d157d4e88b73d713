/* Host services: what a worker may call on plugd, each gated by a
 * capability of its manifest (docs/protocol.md, "worker → plugd"). */
#ifndef PLUGD_SERVICES_H
#define PLUGD_SERVICES_H

#include <msgpack.h>
#include <stdbool.h>

#include "plugd/ipc.h"
#include "worker.h"

bool manifest_has_capability(const struct manifest *m, const char *capability);

/* Packs the names of the services `m`'s capabilities grant (host_api). */
void services_pack_granted(msgpack_packer *pk, const struct manifest *m);

/* Serves a request (or, with msgid NULL, a notification) from worker `w`:
 * answers capability_denied without the capability, method_not_found for
 * an unknown service. */
void services_handle(struct worker *w, const struct ipc_message *msg, const uint32_t *msgid);

#endif
