/* The daemon's top-level state: the loop, the workers, the host channel. */
#ifndef PLUGD_PLUGD_H
#define PLUGD_PLUGD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "plugd/ipc.h"
#include "worker.h"

#define PLUGD_MAX_PLUGINS 1024

struct plugd {
    struct ev_loop *loop;
    struct worker *workers[PLUGD_MAX_PLUGINS];
    size_t n_workers;
    struct ipc_conn *host; /* NULL without --host-fd */
    bool is_stopping;      /* every worker is being stopped; exit when all are */
    int exit_status;
};

struct worker *plugd_find_worker(struct plugd *d, const char *name, size_t len);

/* Stops every worker gracefully; the loop ends when the last has stopped. */
void plugd_stop_all(struct plugd *d);

/* Serves the host channel on `fd` (taken over). 0, or -1 with err. */
int host_channel_open(struct plugd *d, int fd, struct plugd_error *err);

#endif
