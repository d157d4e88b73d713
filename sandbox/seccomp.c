/* The seccomp layer: an allow-list (libseccomp) of what libc, the SDKs and
 * an interpreter such as Python need, widened by capabilities. Any other
 * system call is handed to plugd through a seccomp user notification: plugd
 * names it (`sandbox_violation`) and kills the worker, or answers EPERM
 * when the manifest asks for that. A kernel without user notifications gets
 * SECCOMP_RET_KILL_PROCESS (or EPERM) without the name. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "layers.h"

/* Files, memory, time, signals to itself, waiting, threads' housekeeping,
 * and i/o on the fds it has (the channel is a socket): no new sockets, no
 * processes, no namespaces, mounts, tracing, keys, bpf or io_uring. */
static const char *const base_syscalls[] = {
    /* files (the landlock view decides which) */
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "lseek",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "flock",
    "fcntl",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "ioctl",
    "utimensat",
    "sendfile",
    "copy_file_range",
    "splice",
    "tee",
    "fadvise64",
    "umask",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "memfd_create",
    /* memory */
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "msync",
    "mincore",
    "membarrier",
    /* signals (kill and tgkill: see below) */
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "sigaltstack",
    "restart_syscall",
    "pause",
    "alarm",
    "setitimer",
    "getitimer",
    /* who am I, limits, time */
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getpgid",
    "getsid",
    "getrlimit",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "capget",
    "getpriority",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    /* threads and waiting */
    "futex",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "set_tid_address",
    "rseq",
    "sched_yield",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "eventfd",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd",
    "signalfd4",
    "wait4",
    "waitid",
    /* the sockets it already has */
    "socketpair",
    "sendmsg",
    "recvmsg",
    "sendto",
    "recvfrom",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "getsockname",
    "getpeername",
    /* the process itself */
    "getrandom",
    "arch_prctl",
    "prctl",
    "seccomp",
    "execve",
    "execveat",
    "exit",
    "exit_group",
};

/* Probes that runtimes make at start and live without: answered with an
 * errno instead of a kill, so the call looks absent (ENOSYS) or refused
 * (EPERM). Each is in docs/sandbox.md, with who makes it. */
static const struct {
    const char *name;
    int err;
} probe_answers[] = {
    /* V8 (Node.js) asks for a memory protection key for its code space
     * and does without one when the kernel has none */
    {"pkey_alloc", ENOSYS},
};

/* net.outbound: outbound connections (not listening). */
static const char *const network_syscalls[] = {"connect", "bind"};

/* process.spawn: processes (the landlock view still decides what runs). */
static const char *const spawn_syscalls[] = {"fork", "vfork", "tkill", "kill", "tgkill"};

/* Namespace flags: no clone may create one, with process.spawn neither. */
#define CLONE_NAMESPACES                                                                           \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |  \
     CLONE_NEWNET)

static int allow_names(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

#define ALLOW_LIST(ctx, list) allow_names(ctx, list, sizeof(list) / sizeof(list[0]))

static int add_probe_answers(scmp_filter_ctx ctx)
{
    for (size_t i = 0; i < sizeof(probe_answers) / sizeof(probe_answers[0]); i++) {
        int nr = seccomp_syscall_resolve_name(probe_answers[i].name);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(probe_answers[i].err), nr, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Signals to itself only (its pid, its process group of one), and limits of
 * itself only, unless it may spawn processes. */
static int add_self_rules(scmp_filter_ctx ctx, const struct sb_policy *p, scmp_datum_t self)
{
    int rc = 0;
    if (!(p->relax & SB_RELAX_SPAWN)) {
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                                   SCMP_A0(SCMP_CMP_EQ, self));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A0(SCMP_CMP_EQ, 0));
        rc = rc ? rc
                : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                                   SCMP_A0(SCMP_CMP_EQ, self));
    }
    rc =
        rc ? rc
           : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0));
    rc = rc ? rc
            : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
                               SCMP_A0(SCMP_CMP_EQ, self));
    return rc;
}

/* clone: threads always; processes with process.spawn; namespaces never.
 * clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc
 * fall back to clone. */
static int add_clone_rules(scmp_filter_ctx ctx, const struct sb_policy *p)
{
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc < 0)
        return rc;
    if (p->relax & SB_RELAX_SPAWN)
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NAMESPACES, 0));
    /* LeakSanitizer's tracer is a clone that shares the memory, not a thread */
    scmp_datum_t needed = SB_HAS_SANITIZER ? CLONE_VM : CLONE_THREAD;
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                          SCMP_A0(SCMP_CMP_MASKED_EQ, needed | CLONE_NAMESPACES, needed));
    if (rc == 0 && SB_HAS_SANITIZER)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ptrace), 0);
    return rc;
}

/* net.outbound: sockets of the internet families, unix sockets, and the
 * routing netlink socket that getaddrinfo asks about local addresses. */
static int add_network_rules(scmp_filter_ctx ctx)
{
    static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
    int rc = ALLOW_LIST(ctx, network_syscalls);
    for (size_t i = 0; rc == 0 && i < sizeof(families) / sizeof(families[0]); i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]));
    if (rc == 0)
        rc =
            seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
                             SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE));
    return rc;
}

/* Without net.outbound, a unix socket is refused with EPERM rather than
 * killed: libc opens one to ask nscd about users (Python's start-up does
 * without $HOME) and to reach syslog, and goes on without either. Only the
 * socket is answered; other families stay violations. */
static int add_no_unix_sockets(scmp_filter_ctx ctx)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)AF_UNIX));
}

/* The allow-list for a worker whose pid is `self` (exec keeps the pid).
 * It reads only the SB_RELAX_SECCOMP bits of p->relax and on_violation
 * (the cache below is keyed by them). */
static scmp_filter_ctx build_filter(const struct sb_policy *p, pid_t self, uint32_t default_action,
                                    const char **failed)
{
    *failed = "seccomp_init";
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (ctx == NULL)
        return NULL;
    /* another architecture's system call table (int 0x80 on x86_64) is no
     * way around the list */
    *failed = "seccomp_attr_set";
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc == 0) {
        *failed = "the allow-list";
        rc = ALLOW_LIST(ctx, base_syscalls);
    }
    if (rc == 0) {
        *failed = "the probe answers";
        rc = add_probe_answers(ctx);
    }
    if (rc == 0) {
        *failed = "the kill and prlimit64 rules";
        rc = add_self_rules(ctx, p, (scmp_datum_t)self);
    }
    if (rc == 0) {
        *failed = "the clone rules";
        rc = add_clone_rules(ctx, p);
    }
    if (rc == 0 && (p->relax & SB_RELAX_NETWORK)) {
        *failed = "the net.outbound rules";
        rc = add_network_rules(ctx);
    } else if (rc == 0 && default_action != SCMP_ACT_ERRNO(EPERM)) {
        /* where every refusal is EPERM already (the fallback of an eperm
         * worker), libseccomp refuses a rule that repeats the default */
        *failed = "the unix socket answer";
        rc = add_no_unix_sockets(ctx);
    }
    if (rc == 0 && (p->relax & SB_RELAX_SPAWN)) {
        *failed = "the process.spawn rules";
        rc = ALLOW_LIST(ctx, spawn_syscalls);
    }
    if (rc < 0) {
        seccomp_release(ctx);
        errno = -rc;
        return NULL;
    }
    return ctx;
}

/* A kernel without user notifications: the kernel acts alone. */
static uint32_t fallback_action(const struct sb_policy *p)
{
    return p->on_violation == SB_VIOLATION_EPERM ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_KILL_PROCESS;
}

/* Compiling the list costs more than the rest of the sandbox together
 * (~1.5 ms): a worker that is pid 1 of its own namespace gets a program
 * plugd compiled once per key, the child only loads it. The key is what
 * changes the list (the SB_RELAX_SECCOMP bits and on_violation), so
 * relaxations of the filesystem share a program, and a program is compiled
 * when the first worker of its key starts: N relaxing capabilities do not
 * mean 2^N programs up front. */
struct sb_filter {
    struct sb_filter *next;
    uint32_t key;
    struct sock_fprog notify, fallback;
};

#define KEY_EPERM (1u << 31)
_Static_assert((SB_RELAX_SECCOMP & KEY_EPERM) == 0, "a relaxation bit is the eperm bit");

static struct sb_filter *filters; /* compiled so far, newest first */

static uint32_t filter_key(const struct sb_policy *p)
{
    return (p->relax & SB_RELAX_SECCOMP) | (p->on_violation == SB_VIOLATION_EPERM ? KEY_EPERM : 0);
}

/* The compiled BPF program of `ctx` (libseccomp exports it to an fd). */
static bool export_program(scmp_filter_ctx ctx, struct sock_fprog *out)
{
    int fd = memfd_create("plugd-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return false;
    off_t size = seccomp_export_bpf(ctx, fd) == 0 ? lseek(fd, 0, SEEK_END) : -1;
    struct sock_filter *code = size > 0 ? malloc((size_t)size) : NULL;
    bool ok = code != NULL && pread(fd, code, (size_t)size, 0) == size &&
              size % (off_t)sizeof(*code) == 0;
    close(fd);
    if (!ok) {
        free(code);
        return false;
    }
    *out =
        (struct sock_fprog){.len = (unsigned short)(size / (off_t)sizeof(*code)), .filter = code};
    return true;
}

/* The program for key `key`, built from the key alone so that two
 * policies of one key cannot get different lists. */
static bool compile_program(uint32_t key, uint32_t action, struct sock_fprog *out)
{
    const struct sb_policy p = {.relax = key & SB_RELAX_SECCOMP,
                                .on_violation =
                                    key & KEY_EPERM ? SB_VIOLATION_EPERM : SB_VIOLATION_KILL};
    const char *failed;
    scmp_filter_ctx ctx = build_filter(&p, 1, action, &failed);
    if (ctx == NULL)
        return false;
    bool ok = export_program(ctx, out);
    seccomp_release(ctx);
    return ok;
}

const struct sb_filter *sb_filter_for_pid1(const struct sb_policy *p)
{
    uint32_t key = filter_key(p);
    for (struct sb_filter *f = filters; f != NULL; f = f->next)
        if (f->key == key)
            return f;
    struct sb_filter *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL; /* the child compiles its own */
    f->key = key;
    if (!compile_program(key, SCMP_ACT_NOTIFY, &f->notify) ||
        !compile_program(key, fallback_action(p), &f->fallback)) {
        free(f->notify.filter);
        free(f);
        return NULL; /* the child compiles its own; the next worker tries again */
    }
    f->next = filters;
    filters = f;
    return f;
}

size_t sb_filters_count(void)
{
    size_t n = 0;
    for (const struct sb_filter *f = filters; f != NULL; f = f->next)
        n++;
    return n;
}

void sb_filters_free(void)
{
    while (filters != NULL) {
        struct sb_filter *f = filters;
        filters = f->next;
        free(f->notify.filter);
        free(f->fallback.filter);
        free(f);
    }
}

/* Loads a program plugd compiled: the notification fd, or -1. */
static int load_compiled(const struct sb_filter *f, struct sb_report *r)
{
    long fd =
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &f->notify);
    if (fd >= 0) {
        sb_activate(r, SB_SECCOMP);
        return (int)fd; /* the kernel makes it close-on-exec */
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &f->fallback) == 0)
        sb_activate(r, SB_SECCOMP);
    else
        sb_refuse(r, SB_SECCOMP, "seccomp", errno);
    return -1;
}

int sb_apply_seccomp(const struct sb_policy *p, struct sb_report *r)
{
    if (p->filter != NULL && getpid() == 1)
        return load_compiled(p->filter, r);
    const uint32_t actions[] = {SCMP_ACT_NOTIFY, fallback_action(p)};
    int err = 0;
    const char *failed = "seccomp_load";
    for (size_t i = 0; i < 2; i++) {
        scmp_filter_ctx ctx = build_filter(p, getpid(), actions[i], &failed);
        if (ctx == NULL) {
            err = errno;
            break;
        }
        failed = "seccomp_load";
        int rc = seccomp_load(ctx);
        int notify = rc == 0 && actions[i] == SCMP_ACT_NOTIFY ? seccomp_notify_fd(ctx) : -1;
        /* our own copy, close-on-exec like the kernel's */
        int fd = notify >= 0 ? fcntl(notify, F_DUPFD_CLOEXEC, 0) : -1;
        seccomp_release(ctx);
        if (rc == 0) {
            sb_activate(r, SB_SECCOMP);
            return fd;
        }
        err = -rc;
    }
    sb_refuse(r, SB_SECCOMP, failed, err);
    return -1;
}

const char *sb_syscall_name(uint32_t arch, int nr, char *out, size_t size)
{
    char *name = seccomp_syscall_resolve_num_arch(arch, nr);
    if (name != NULL)
        snprintf(out, size, "%s", name);
    else
        snprintf(out, size, "#%d", nr);
    free(name);
    return out;
}

/* The kernel's notification and answer buffers, allocated once (plugd is
 * single-threaded; a worker in eperm mode may be refused in a loop). */
static struct seccomp_notif *notif;
static struct seccomp_notif_resp *notif_resp;

static bool notify_buffers(void)
{
    return notif != NULL || seccomp_notify_alloc(&notif, &notif_resp) == 0;
}

int sb_notify_receive(int fd, struct sb_syscall *out)
{
    if (!notify_buffers())
        return -1;
    memset(notif, 0, sizeof(*notif)); /* the kernel refuses a buffer that is not zeroed */
    if (seccomp_notify_receive(fd, notif) < 0)
        return -1;
    out->id = notif->id;
    out->pid = (pid_t)notif->pid;
    sb_syscall_name(notif->data.arch, notif->data.nr, out->name, sizeof(out->name));
    return 0;
}

void sb_notify_deny(int fd, uint64_t id, int err)
{
    if (!notify_buffers())
        return;
    *notif_resp = (struct seccomp_notif_resp){.id = id, .error = -err};
    seccomp_notify_respond(fd, notif_resp); /* the caller may be gone: nothing to do */
}
