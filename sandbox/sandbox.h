/* The worker sandbox: a policy built from the manifest (limits and
 * capabilities) applied in the child between fork and exec, each layer
 * reported as active or refused with the reason. docs/sandbox.md has the
 * threat model and every layer. */
#ifndef PLUGD_SANDBOX_H
#define PLUGD_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

/* The layers, in the order they are applied. */
enum sb_layer {
    SB_RLIMITS, /* address space, open files, processes, file size, no core */
    SB_FDS,     /* nothing inherited but stdio and the channel */
    SB_NO_NEW_PRIVS,
    SB_CAPS, /* every Linux capability dropped, bounding set included */
    SB_LAYER_COUNT,
};

#define SB_REASON_MAX 96

struct sb_policy {
    rlim_t address_space; /* bytes; 0: not limited (sanitizer builds) */
    rlim_t open_files;
    rlim_t processes;
    rlim_t file_size; /* bytes */
    int keep_fd;      /* the highest fd kept open (the channel) */
};

/* What the child reports to plugd before it execs (a fixed-size record). */
struct sb_report {
    uint32_t active;  /* bit per enum sb_layer */
    uint32_t refused; /* bit per enum sb_layer */
    char reason[SB_LAYER_COUNT][SB_REASON_MAX];
};

/* The policy for a worker with these limits (manifest "limits"). */
void sb_policy_init(struct sb_policy *p, int memory_mb, int nofile, int nproc, int keep_fd);

/* In the child, between fork and exec: applies every layer it can and fills
 * `r` (plugd is single-threaded, so the child may use libc freely). */
void sb_apply(const struct sb_policy *p, struct sb_report *r);

const char *sb_layer_name(enum sb_layer layer);

#endif
