/* A worker's confinement in plugd: the sandbox policy built from its
 * manifest, its cgroup, private tmp and data folders, and the seccomp
 * notifications of the system calls it was refused. docs/sandbox.md. */
#ifndef PLUGD_CONFINE_H
#define PLUGD_CONFINE_H

#include <ev.h>
#include <limits.h>
#include <stdint.h>
#include <sys/resource.h>

#include "manifest.h"
#include "sandbox.h"

struct wk_confinement {
    const struct sb_system *system; /* NULL: no sandbox (--sandbox off is in it) */
    const char *state_dir;          /* tmp/ and data/ are made under it */
    struct sb_report report;        /* the layers this run's child applied */
    struct sb_cgroup cgroup;
    char cgroup_why[SB_REASON_MAX];     /* "" or why this run has no cgroup */
    char tmp_dir[PATH_MAX];             /* this run's TMPDIR, removed after it */
    char data_dir[PATH_MAX];            /* fs.data: kept across runs; else "" */
    char interpreter[2][PATH_MAX];      /* "#!" and ELF interpreters to execute */
    ev_io notify_w;                     /* refused system calls (fd -1: none) */
    int child_pidfd;                    /* this run's pidfd until its report came, or -1 */
    const struct manifest *env_checked; /* its "env" refusals are logged */
    void (*on_violation)(struct wk_confinement *c, const struct sb_syscall *call);
    void *owner;             /* the worker */
    bool is_pid1;            /* this run is pid 1 of its own pid namespace */
    uint64_t violations;     /* refused system calls, ever */
    char last_violation[32]; /* the name of the last one */
};

/* `on_violation` is called with each refused system call; the owner
 * decides what follows. */
void confine_init(struct wk_confinement *c,
                  void (*on_violation)(struct wk_confinement *c, const struct sb_syscall *call),
                  void *owner);

/* Before the fork: the folders, the cgroup, and `p` for the child (which
 * borrows c's strings). */
void confine_prepare(struct wk_confinement *c, const struct manifest *m, struct sb_policy *p);

/* fork(): the child in its own pid namespace where the sandbox makes one. */
pid_t confine_fork(struct wk_confinement *c, struct sb_policy *p);

/* SIGTERM to the worker. pid 1 of a namespace only gets the signals it has
 * a handler for: where SIGTERM would have ended it (no handler, not
 * ignored), SIGKILL does. */
void confine_terminate(const struct wk_confinement *c, pid_t pid);

/* When workers run as another uid: plugd's state folder, tmp/, data/ and
 * packages/ searchable by it (0711; packages readable), and the refusal of
 * the user layer when a folder above the state is closed to it. */
void confine_open_state(struct sb_system *s, const char *state_dir);

#define CONFINE_PATH         "/usr/local/bin:/usr/bin:/bin"
#define CONFINE_MAX_PASS_ENV 64

/* plugd --pass-env NAME: a manifest may ask for NAME ("env"). -1 when
 * there are CONFINE_MAX_PASS_ENV already. */
int confine_allow_env(const char *name);

/* In the child: the worker's whole environment (docs/sandbox.md
 * "Environment"): PATH, LANG/LC_ALL/TZ as plugd has them, TMPDIR and HOME
 * (its tmp folder), PLUGD_DATA, and what `m` asks for that --pass-env
 * allows. The caller adds PLUGD_FD and PLUGD_PLUGIN. -1 on failure. */
int confine_set_env(const struct wk_confinement *c, const struct manifest *m);

/* plugd holds a few fds per worker (channel, log pipes, notification fd):
 * its soft RLIMIT_NOFILE goes up to the hard one (into *now); workers get
 * the one plugd inherited back (or the manifest's nofile). 0, or -1. */
int confine_raise_fd_limit(rlim_t *now);
/* In the child: the inherited soft limit again. */
void confine_restore_fd_limit(void);

/* The child's pidfd is no longer needed (its report came). */
void confine_forget_child(struct wk_confinement *c);

/* The child's seccomp notification fd, taken by plugd (pidfd_getfd) or
 * sent by the child: watched, and owned, until confine_release. */
void confine_watch(struct wk_confinement *c, struct ev_loop *loop, int notify_fd);

/* True when the kernel's OOM killer ended a process of this run. */
bool confine_oom_killed(const struct wk_confinement *c);
/* True when its cgroup used (about) `cpu_seconds` (> 0) of CPU time: a
 * SIGKILL that neither plugd nor the OOM killer sent is then RLIMIT_CPU's. */
bool confine_out_of_cpu_time(const struct wk_confinement *c, int cpu_seconds);

/* After the run: the cgroup (anything left in it killed), the tmp folder,
 * the notification fd. */
void confine_release(struct wk_confinement *c, struct ev_loop *loop);

/* Removes a folder and everything in it (symlinks not followed). */
void remove_tree(const char *dir);

#endif
