/* The worker sandbox: a policy built from the manifest (limits and
 * capabilities) applied in the child between fork and exec, each layer
 * reported as active or refused with the reason. docs/sandbox.md has the
 * threat model and every layer.
 *
 * Two halves: `struct sb_system` is what plugd sets up once (shared
 * namespaces, the cgroup hierarchy, the landlock ABI), `sb_apply` runs in
 * the forked child. */
#ifndef PLUGD_SANDBOX_H
#define PLUGD_SANDBOX_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* The layers, in the order they are applied. */
enum sb_layer {
    SB_PID_NS,     /* its own pid namespace, made at the fork: the worker is pid 1 */
    SB_CGROUP,     /* memory, pids and cpu limits of the worker's own cgroup */
    SB_NAMESPACES, /* net (offline unless net.outbound), ipc, uts */
    SB_MOUNT_NS,   /* the filesystem view: a mount namespace of its own */
    SB_RLIMITS,    /* address space, open files, processes, file size, no core */
    SB_FDS,        /* nothing inherited but stdio and the channel */
    SB_NO_NEW_PRIVS,
    SB_USER,     /* an unprivileged uid and gid, no supplementary groups */
    SB_CAPS,     /* every Linux capability dropped, bounding set included */
    SB_LANDLOCK, /* the filesystem view, signal and socket scoping */
    SB_SECCOMP,  /* the system call allow-list */
    SB_LAYER_COUNT,
};

#define SB_REASON_MAX 96

/* plugd's --sandbox: on (each layer the kernel allows), strict (a refused
 * layer stops the worker from starting), off (no layer at all). */
enum sb_mode { SB_MODE_ON, SB_MODE_STRICT, SB_MODE_OFF };

/* What a forbidden system call does (manifest "sandbox.on_violation"). */
enum sb_violation { SB_VIOLATION_KILL, SB_VIOLATION_EPERM };

enum sb_cgroup_version { SB_CGROUP_NONE, SB_CGROUP_V1, SB_CGROUP_V2 };

/* cpuacct only counts (v1): what names a kill at the CPU time limit */
enum sb_controller { SB_CG_MEMORY, SB_CG_PIDS, SB_CG_CPU, SB_CG_CPUACCT, SB_CG_COUNT };

/* Set up once by plugd (sb_system_init), shared by every worker. */
struct sb_system {
    enum sb_mode mode;
    int landlock_abi; /* 0: no landlock */
    int offline_net;  /* fd of a network namespace with only a down loopback, or -1 */
    int shared_ipc;   /* fds of an ipc and a uts namespace of the workers', or -1 */
    int shared_uts;
    char ns_reason[SB_REASON_MAX]; /* why the namespaces are missing */
    int own_pid_ns;                /* plugd's pid namespace, to return to after a fork */
    char pid_ns_reason[SB_REASON_MAX];
    int own_mnt_ns; /* plugd's mount namespace */
    int view_ns;    /* the workers' shared view (sb_view_make), or -1 */
    char view_state_dir[PATH_MAX];
    char view_reason[SB_REASON_MAX];
    /* the workers' uid and gid when plugd runs as root (user_reason empty) */
    uid_t worker_uid;
    gid_t worker_gid;
    char user_reason[SB_REASON_MAX];
    enum sb_cgroup_version cgroup;
    /* v1: the plugd group under each controller's hierarchy; v2: one
     * folder in [0] ("" where the controller is missing) */
    char cgroup_dir[SB_CG_COUNT][PATH_MAX];
    char cgroup_reason[SB_REASON_MAX];
};

/* What capabilities relax in the sandbox, a bit each
 * (supervisor/capabilities.c says which capability makes which;
 * docs/sandbox.md "How each capability widens the policy"). */
enum sb_relax {
    SB_RELAX_NETWORK = 1u << 0,  /* the host's network; socket, connect, bind; name lookup */
    SB_RELAX_READ_USR = 1u << 1, /* everything under /usr readable */
    SB_RELAX_DATA = 1u << 2,     /* a data folder of its own (data_dir below) */
    SB_RELAX_SPAWN = 1u << 3,    /* processes, signals to them, programs under /usr */
};

/* The relaxations that change the seccomp allow-list: a compiled list is
 * cached per combination of these (and on_violation), not of every bit. */
#define SB_RELAX_SECCOMP (SB_RELAX_NETWORK | SB_RELAX_SPAWN)

/* Everything the child needs, built before the fork (strings borrowed). */
struct sb_policy {
    bool enabled; /* false: --sandbox off */
    bool strict;
    rlim_t address_space; /* bytes, as RLIMIT_DATA; 0: not limited (cgroup memory or sanitizers) */
    rlim_t open_files;
    rlim_t processes; /* 0: not limited by an rlimit (the cgroup's pids.max) */
    rlim_t file_size; /* bytes */
    rlim_t cpu_time;  /* s of CPU time; 0: not limited */
    int keep_fd;      /* the highest fd kept open (the channel) */
    /* namespaces */
    int net_fd, ipc_fd, uts_fd; /* -1: stay in plugd's */
    const char *ns_refused;     /* why there are none, or NULL */
    const char *pid_ns_refused; /* set by sb_fork: why the worker is not pid 1, or NULL */
    /* set by sb_fork where plugd is not root: the clone gave the worker a
     * user namespace of its own, with its pid, mount, ipc, uts and network
     * namespaces in it; plugd's uid and gid map to themselves */
    bool in_user_ns;
    uid_t outer_uid;
    gid_t outer_gid;
    /* the view: entered from view_fd, left for home_mnt_fd if it fails */
    int view_fd, home_mnt_fd;
    const char *view_state_dir; /* the package, tmp and data folders lie below it */
    const char *view_refused;   /* why there is no view, or NULL */
    /* user: switch to uid/gid (plugd is root), else user_refused or neither */
    bool change_user;
    uid_t uid;
    gid_t gid;
    const char *user_refused;
    /* cgroup: the worker's folder under each controller ("" none) */
    const char *cgroup_dir[SB_CG_COUNT];
    const char *cgroup_refused; /* why there is none, or NULL */
    /* filesystem view */
    int landlock_abi;
    const char *package_dir; /* read */
    const char *exec[3];     /* read + execute: entrypoint, interpreters */
    const char *tmp_dir;     /* read-write, the worker's TMPDIR */
    const char *data_dir;    /* read-write with SB_RELAX_DATA (when made), else NULL */
    uint32_t relax;          /* enum sb_relax: what the capabilities widen */
    enum sb_violation on_violation;
    /* the allow-list compiled by plugd before the fork (sb_fork, when the
     * worker's pid is known to be 1), else NULL: the child compiles it */
    const struct sb_filter *filter;
};

/* What the child reports to plugd before it execs (a fixed-size record). */
struct sb_report {
    uint32_t active;   /* bit per enum sb_layer */
    uint32_t refused;  /* bit per enum sb_layer */
    int32_t notify_fd; /* the child's seccomp notification fd, for pidfd_getfd (-1: none) */
    char reason[SB_LAYER_COUNT][SB_REASON_MAX];
};

/* Detects and prepares what the workers share; never fails (what is
 * missing is reported per worker as a refused layer). `worker_user` (a user
 * name or UID[:GID], NULL for nobody) is who workers run as when plugd is
 * root. */
void sb_system_init(struct sb_system *s, enum sb_mode mode, const char *worker_user);
/* Resolves a --worker-user value: 0, or -1 with the reason in `why`. */
int sb_resolve_user(const char *spec, uid_t *uid, gid_t *gid, char *why, size_t why_size);
/* Checks the workers' uid can reach `dir` (search permission on every
 * folder above it); if not, workers keep plugd's uid and the user layer is
 * refused with the folder named. */
void sb_system_check_reach(struct sb_system *s, const char *dir);
/* Builds the workers' filesystem view for a state folder (an absolute,
 * resolved path); what fails is reported per worker as a refused layer. */
void sb_view_make(struct sb_system *s, const char *state_dir);
/* Removes plugd's cgroup folders and closes the namespaces. */
void sb_system_fini(struct sb_system *s);

/* The policy's system part: mode, namespaces, landlock ABI, rlimits (the
 * address space only where no cgroup limits memory; CPU time where
 * cpu_seconds > 0). The caller adds the filesystem view, the capabilities
 * and the cgroup folders. */
void sb_policy_init(struct sb_policy *p, const struct sb_system *s, int memory_mb, int nofile,
                    int nproc, int cpu_seconds, int keep_fd);

/* The worker cgroup: created with the limits (memory_mb, nproc,
 * cpu_percent of one CPU) before the fork, folders written into `cg`
 * (0; -1 with `why` when there is none); removed (every process left in it
 * killed) after the worker ended. */
struct sb_cgroup {
    char dir[SB_CG_COUNT][PATH_MAX]; /* "" where none (v2: one folder in [0]) */
};
int sb_cgroup_create(const struct sb_system *s, const char *name, int memory_mb, int nproc,
                     int cpu_percent, struct sb_cgroup *cg, char *why, size_t why_size);
void sb_cgroup_remove(struct sb_cgroup *cg);
/* True when the kernel's OOM killer killed a process of that cgroup. */
bool sb_cgroup_oom_killed(const struct sb_system *s, const struct sb_cgroup *cg);
/* The CPU time the processes of that cgroup used, in s (-1: unknown). */
double sb_cgroup_cpu_seconds(const struct sb_system *s, const struct sb_cgroup *cg);
/* The worker runs without a cgroup (`why`): its memory and processes are
 * then limited by RLIMIT_DATA and RLIMIT_NPROC. */
void sb_policy_without_cgroup(struct sb_policy *p, int memory_mb, int nproc, const char *why);

/* fork(), the child in a new pid namespace where plugd may make one (it
 * records the refusal in `p` otherwise), with the allow-list compiled
 * before the fork when it can be. */
pid_t sb_fork(const struct sb_system *s, struct sb_policy *p);

/* In the child, between fork and exec: applies every layer it can and fills
 * `r` (plugd is single-threaded, so the child may use libc freely).
 * Returns the seccomp notification fd that plugd must hold (-1: none). */
int sb_apply(const struct sb_policy *p, struct sb_report *r);

/* The ELF interpreter (PT_INTERP) of `path`, or false. */
bool sb_elf_interpreter(const char *path, char *out, size_t size);
/* The "#!" interpreter of a script, or false. */
bool sb_script_interpreter(const char *path, char *out, size_t size);

const char *sb_layer_name(enum sb_layer layer);

/* A system call the allow-list refused, as plugd receives it. */
struct sb_syscall {
    uint64_t id; /* to answer it */
    pid_t pid;   /* the worker, or a process it started */
    char name[32];
};
/* Reads one refused system call from the notification fd: 0, or -1 (the
 * caller is gone already). */
int sb_notify_receive(int fd, struct sb_syscall *out);
/* Lets the refused call return -1 with errno `err`. */
void sb_notify_deny(int fd, uint64_t id, int err);

/* The name of system call `nr` of audit arch `arch` (into out). */
const char *sb_syscall_name(uint32_t arch, int nr, char *out, size_t size);

#endif
