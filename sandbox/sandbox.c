#include "sandbox.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "layers.h"

/* clang-format off */
static const char *const layer_names[SB_LAYER_COUNT] = {
    [SB_PID_NS] = "pid_namespace",
    [SB_CGROUP] = "cgroup",
    [SB_NAMESPACES] = "namespaces",
    [SB_MOUNT_NS] = "mount_namespace",
    [SB_RLIMITS] = "rlimits",
    [SB_FDS] = "fds",
    [SB_NO_NEW_PRIVS] = "no_new_privs",
    [SB_USER] = "user",
    [SB_CAPS] = "capabilities",
    [SB_LANDLOCK] = "landlock",
    [SB_SECCOMP] = "seccomp",
};
/* clang-format on */

const char *sb_layer_name(enum sb_layer layer)
{
    return layer < SB_LAYER_COUNT ? layer_names[layer] : "?";
}

void sb_refuse_text(struct sb_report *r, enum sb_layer layer, const char *text)
{
    if (r->refused & (1u << layer))
        return;
    r->refused |= 1u << layer;
    r->active &= ~(1u << layer);
    snprintf(r->reason[layer], SB_REASON_MAX, "%s", text);
}

void sb_reason(char reason[SB_REASON_MAX], const char *what, int err)
{
    size_t len = strlen(what);
    snprintf(reason, SB_REASON_MAX, "%s: %s", len > 48 ? what + len - 48 : what, strerror(err));
}

void sb_refuse(struct sb_report *r, enum sb_layer layer, const char *what, int err)
{
    char text[SB_REASON_MAX];
    snprintf(text, sizeof(text), "%s: %s", what, strerror(err));
    sb_refuse_text(r, layer, text);
}

void sb_activate(struct sb_report *r, enum sb_layer layer)
{
    if (!(r->refused & (1u << layer)))
        r->active |= 1u << layer;
}

/* ------------------------------------------------------------ the fork */

/* plugd without root: the clone gives the worker a user namespace of its
 * own and, owned by it, its pid, mount, ipc, uts and (without
 * net.outbound) offline network namespaces (docs/sandbox.md). */
static pid_t clone_in_user_namespace(struct sb_policy *p)
{
    static char why[SB_REASON_MAX]; /* plugd is single-threaded */
    unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!(p->relax & SB_RELAX_NETWORK))
        flags |= CLONE_NEWNET;
    p->in_user_ns = true;
    p->outer_uid = geteuid();
    p->outer_gid = getegid();
    p->filter = sb_filter_for_pid1(p);
    /* fork's semantics: no stack of its own, the child returns here with 0 */
    pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid >= 0 || errno == EAGAIN || errno == ENOMEM)
        return pid;
    snprintf(why, sizeof(why), "clone(CLONE_NEWUSER): %s", strerror(errno));
    p->in_user_ns = false;
    p->filter = NULL;
    p->pid_ns_refused = why;
    return fork();
}

pid_t sb_fork(const struct sb_system *s, struct sb_policy *p)
{
    static char why[SB_REASON_MAX]; /* plugd is single-threaded */
    if (!p->enabled)
        return fork();
    if (geteuid() != 0)
        return clone_in_user_namespace(p);
    if (s->own_pid_ns < 0 || s->pid_ns_reason[0] != '\0') {
        p->pid_ns_refused = s->pid_ns_reason;
        return fork();
    }
    /* the next child is pid 1 of a new namespace; plugd itself stays */
    if (unshare(CLONE_NEWPID) < 0) {
        snprintf(why, sizeof(why), "unshare(CLONE_NEWPID): %s", strerror(errno));
        p->pid_ns_refused = why;
        return fork();
    }
    p->filter = sb_filter_for_pid1(p);
    pid_t pid = fork();
    if (pid == 0)
        return 0; /* the child: pid 1 */
    int fork_errno = errno;
    if (setns(s->own_pid_ns, CLONE_NEWPID) < 0) {
        fprintf(stderr, "plugd: cannot return to its own pid namespace: %s\n", strerror(errno));
        abort(); /* every later child would land in a dead namespace */
    }
    errno = fork_errno;
    return pid;
}

/* ------------------------------------------------------------ child side */

static void check_pid_namespace(const struct sb_policy *p, struct sb_report *r)
{
    if (p->pid_ns_refused != NULL)
        sb_refuse_text(r, SB_PID_NS, p->pid_ns_refused);
    else if (getpid() == 1)
        sb_activate(r, SB_PID_NS);
    else
        sb_refuse_text(r, SB_PID_NS, "the worker is not pid 1 of its namespace");
}

static void join_cgroup(const struct sb_policy *p, struct sb_report *r)
{
    if (p->cgroup_refused != NULL) {
        sb_refuse_text(r, SB_CGROUP, p->cgroup_refused);
        return;
    }
    for (int c = 0; c < SB_CG_COUNT; c++) {
        if (p->cgroup_dir[c] == NULL || p->cgroup_dir[c][0] == '\0')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/cgroup.procs", p->cgroup_dir[c]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        /* "0" is the writer itself */
        if (fd < 0 || write(fd, "0", 1) != 1) {
            sb_refuse(r, SB_CGROUP, "cgroup.procs", errno);
            if (fd >= 0)
                close(fd);
            return;
        }
        close(fd);
    }
    sb_activate(r, SB_CGROUP);
}

static void enter_namespaces(const struct sb_policy *p, struct sb_report *r)
{
    if (p->in_user_ns) { /* made by the clone: the worker's own */
        if (sethostname("plugd-worker", strlen("plugd-worker")) < 0)
            sb_refuse(r, SB_NAMESPACES, "sethostname", errno);
        sb_activate(r, SB_NAMESPACES);
        return;
    }
    if (p->ns_refused != NULL) {
        sb_refuse_text(r, SB_NAMESPACES, p->ns_refused);
        return;
    }
    if (p->net_fd >= 0 && setns(p->net_fd, CLONE_NEWNET) < 0)
        sb_refuse(r, SB_NAMESPACES, "setns(net)", errno);
    if (p->ipc_fd >= 0 && setns(p->ipc_fd, CLONE_NEWIPC) < 0)
        sb_refuse(r, SB_NAMESPACES, "setns(ipc)", errno);
    if (p->uts_fd >= 0 && setns(p->uts_fd, CLONE_NEWUTS) < 0)
        sb_refuse(r, SB_NAMESPACES, "setns(uts)", errno);
    sb_activate(r, SB_NAMESPACES);
}

static bool set_limit(struct sb_report *r, int resource, rlim_t value, const char *what)
{
    struct rlimit rl = {.rlim_cur = value, .rlim_max = value};
    if (setrlimit(resource, &rl) == 0)
        return true;
    sb_refuse(r, SB_RLIMITS, what, errno);
    return false;
}

static void apply_rlimits(const struct sb_policy *p, struct sb_report *r)
{
    /* every limit is tried: one the kernel refuses does not lift the others */
    bool ok = set_limit(r, RLIMIT_CORE, 0, "RLIMIT_CORE");
    ok &= set_limit(r, RLIMIT_NOFILE, p->open_files, "RLIMIT_NOFILE");
    /* RLIMIT_NPROC counts every process of the uid in the user namespace:
     * only the worker's own where it has a namespace of its own; else it
     * would count the other workers of the shared uid (docs/sandbox.md) */
    ok &= p->processes == 0 || !p->in_user_ns ||
          set_limit(r, RLIMIT_NPROC, p->processes, "RLIMIT_NPROC");
    ok &= set_limit(r, RLIMIT_FSIZE, p->file_size, "RLIMIT_FSIZE");
    /* soft = hard: the kernel kills at the limit (pid 1 ignores SIGXCPU) */
    ok &= p->cpu_time == 0 || set_limit(r, RLIMIT_CPU, p->cpu_time, "RLIMIT_CPU");
    /* memory without a cgroup: RLIMIT_DATA counts the private writable
     * mappings (what a worker allocates), not the address space that
     * runtimes reserve and never use (Node's V8 reserves ~600 MiB at start
     * and dies under an RLIMIT_AS of 256 MiB) */
    ok &= p->address_space == 0 || set_limit(r, RLIMIT_DATA, p->address_space, "RLIMIT_DATA");
    if (ok)
        sb_activate(r, SB_RLIMITS);
}

static void close_inherited_fds(const struct sb_policy *p, struct sb_report *r)
{
    if (syscall(SYS_close_range, (unsigned)p->keep_fd + 1, ~0U, 0) == 0)
        sb_activate(r, SB_FDS);
    else
        sb_refuse(r, SB_FDS, "close_range", errno);
}

/* The bounding set goes first: dropping it needs CAP_SETPCAP, which the
 * switch to an unprivileged uid takes away. */
static bool drop_bounding_set(struct sb_report *r)
{
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            sb_refuse(r, SB_CAPS, "PR_CAPBSET_DROP", errno);
            return false;
        }
    }
    return true;
}

/* In its own user namespace, plugd's uid and gid map to themselves (files
 * keep their owners); an unprivileged gid map needs setgroups denied. */
static void map_ids(const struct sb_policy *p, struct sb_report *r)
{
    char map[64];
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)p->outer_uid, (unsigned)p->outer_uid);
    if (sb_write_file("/proc/self", "uid_map", map) < 0) {
        sb_refuse(r, SB_USER, "/proc/self/uid_map", errno);
        return;
    }
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)p->outer_gid, (unsigned)p->outer_gid);
    if (sb_write_file("/proc/self", "setgroups", "deny") < 0 ||
        sb_write_file("/proc/self", "gid_map", map) < 0)
        sb_refuse(r, SB_USER, "/proc/self/gid_map", errno);
}

/* No supplementary groups, then the gid, then the uid (saved ids too). */
static void switch_user(const struct sb_policy *p, struct sb_report *r)
{
    if (p->user_refused != NULL) {
        sb_refuse_text(r, SB_USER, p->user_refused);
    } else if (!p->change_user) {
        if (getuid() == 0 || geteuid() == 0)
            sb_refuse_text(r, SB_USER, "no unprivileged user for the workers");
        else
            sb_activate(r, SB_USER); /* plugd's own uid: not root */
    } else if (setgroups(0, NULL) < 0) {
        sb_refuse(r, SB_USER, "setgroups", errno);
    } else if (setresgid(p->gid, p->gid, p->gid) < 0) {
        sb_refuse(r, SB_USER, "setresgid", errno);
    } else if (setresuid(p->uid, p->uid, p->uid) < 0) {
        sb_refuse(r, SB_USER, "setresuid", errno);
    } else {
        sb_activate(r, SB_USER);
    }
}

/* The effective, permitted and inheritable sets, and the ambient set. */
static void clear_capabilities(struct sb_report *r)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        sb_refuse(r, SB_CAPS, "PR_CAP_AMBIENT", errno);
        return;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) {
        sb_refuse(r, SB_CAPS, "capset", errno);
        return;
    }
    sb_activate(r, SB_CAPS);
}

int sb_apply(const struct sb_policy *p, struct sb_report *r)
{
    *r = (struct sb_report){0};
    if (!p->enabled) {
        close_inherited_fds(p, r); /* hygiene, not confinement: always */
        return -1;
    }
    if (p->in_user_ns)
        map_ids(p, r);
    check_pid_namespace(p, r);
    join_cgroup(p, r); /* these two need plugd's privileges: first */
    enter_namespaces(p, r);
    sb_enter_view(p, r); /* after the cgroup: /sys is not in the view */
    apply_rlimits(p, r);
    close_inherited_fds(p, r);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        sb_activate(r, SB_NO_NEW_PRIVS);
    else
        sb_refuse(r, SB_NO_NEW_PRIVS, "PR_SET_NO_NEW_PRIVS", errno);
    bool is_bounded = drop_bounding_set(r);
    /* a change of uid clears the parent-death signal (prctl(2)): armed
     * again, or a worker would outlive a plugd killed with SIGKILL; if
     * plugd died in between, sending the report fails and there is no exec */
    int death_signal = 0;
    prctl(PR_GET_PDEATHSIG, &death_signal, 0, 0, 0);
    switch_user(p, r);
    if (death_signal != 0)
        prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0);
    if (is_bounded)
        clear_capabilities(r);
    sb_apply_landlock(p, r);
    if (p->strict && r->refused != 0)
        return -1;                 /* the caller does not exec */
    return sb_apply_seccomp(p, r); /* last: everything before may use any call */
}

/* ------------------------------------------------------------ interpreters */

bool sb_script_interpreter(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char head[PATH_MAX + 2];
    ssize_t n = read(fd, head, sizeof(head) - 1);
    close(fd);
    if (n < 3 || head[0] != '#' || head[1] != '!')
        return false;
    head[n] = '\0';
    char *start = head + 2 + strspn(head + 2, " \t");
    size_t len = strcspn(start, " \t\n");
    if (len == 0 || len >= size)
        return false;
    memcpy(out, start, len);
    out[len] = '\0';
    return true;
}

bool sb_elf_interpreter(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    Elf64_Ehdr eh;
    bool found = false;
    if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) &&
        memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
        eh.e_phentsize == sizeof(Elf64_Phdr)) {
        for (unsigned i = 0; i < eh.e_phnum && !found; i++) {
            Elf64_Phdr ph;
            off_t at = (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph));
            if (pread(fd, &ph, sizeof(ph), at) != (ssize_t)sizeof(ph))
                break;
            if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz > size)
                continue;
            found = pread(fd, out, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz &&
                    out[ph.p_filesz - 1] == '\0';
        }
    }
    close(fd);
    return found;
}
