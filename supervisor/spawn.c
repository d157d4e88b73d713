#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "logs.h"

/* How the notification fd goes to plugd. The child's in-flight SCM_RIGHTS
 * fds are charged to the workers' user and capped by the child's lowered
 * RLIMIT_NOFILE (ETOOMANYREFS past ~nofile workers starting at once), so
 * plugd takes the fd itself (pidfd_getfd) while the child waits; only where
 * the kernel refuses that does the child send it. */
#define FD_TAKEN   'T' /* plugd holds a copy: close it and exec */
#define FD_SEND_IT 'S' /* pidfd_getfd refused: send it with SCM_RIGHTS */

/* The report socket (SOCK_SEQPACKET: one record a message) carries the
 * sandbox report, then this if a step failed; EOF after the report alone
 * means the worker runs. */
struct spawn_failure {
    int32_t error;
    char step[SPAWN_STEP_MAX];
};

/* ------------------------------------------------------------ child */

/* The child between fork and exec (plugd is single-threaded, so it may use
 * libc freely). */
struct child {
    const struct wk_confinement *c;
    const struct manifest *m;
    const struct sb_policy *policy;
    int report_fd; /* the socket, then SPAWN_REPORT_FD */
    bool is_report_sent;
};

/* Names the step that failed (with errno) to plugd, after an empty report
 * if none went yet, and ends the child. */
static void child_fail(struct child *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void child_fail(struct child *ch, const char *fmt, ...)
{
    struct spawn_failure f = {.error = errno != 0 ? errno : EINVAL};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f.step, sizeof(f.step), fmt, ap);
    va_end(ap);
    struct sb_report none = {.notify_fd = -1};
    ssize_t ignored =
        ch->is_report_sent ? 0 : send(ch->report_fd, &none, sizeof(none), MSG_NOSIGNAL);
    ignored = send(ch->report_fd, &f, sizeof(f), MSG_NOSIGNAL);
    (void)ignored;
    _exit(127);
}

/* Waits for plugd to take `notify_fd` (or to ask for it). -1 with errno
 * (EPIPE when plugd went away). */
static int hand_over_notify_fd(int fd, int notify_fd)
{
    char answer;
    ssize_t n;
    while ((n = read(fd, &answer, 1)) < 0 && errno == EINTR)
        ;
    if (n <= 0) {
        if (n == 0)
            errno = EPIPE;
        return -1;
    }
    if (answer == FD_TAKEN)
        return 0;
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &notify_fd, sizeof(int));
    return sendmsg(fd, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* `fd` at `target`, kept across the exec. */
static int place_fd(int fd, int target)
{
    if (fd == target)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, target);
}

/* The fds, the environment and the folder, before the sandbox. */
static void set_up(struct child *ch, int channel, int out, int err)
{
    /* Its own session: a terminal's ^C reaches plugd, which stops workers
     * gracefully, instead of killing them all at once. */
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0)
        child_fail(ch, "cannot open /dev/null");
    if (dup2(devnull, 0) < 0)
        child_fail(ch, "cannot set up fd 0 (/dev/null)");
    if (dup2(out, 1) < 0)
        child_fail(ch, "cannot set up fd 1 (stdout)");
    if (dup2(err, 2) < 0)
        child_fail(ch, "cannot set up fd 2 (stderr)");
    if (place_fd(channel, SPAWN_CHANNEL_FD) < 0)
        child_fail(ch, "cannot set up fd %d (the channel)", SPAWN_CHANNEL_FD);
    /* the report socket just above the channel, closed by the exec (dup3
     * refuses an fd onto itself: one already there is O_CLOEXEC) */
    if (ch->report_fd != SPAWN_REPORT_FD && dup3(ch->report_fd, SPAWN_REPORT_FD, O_CLOEXEC) < 0)
        child_fail(ch, "cannot set up fd %d (the report socket)", SPAWN_REPORT_FD);
    ch->report_fd = SPAWN_REPORT_FD;
    char fdnum[16];
    snprintf(fdnum, sizeof(fdnum), "%d", SPAWN_CHANNEL_FD);
    errno = 0;
    if (confine_set_env(ch->c, ch->m) < 0)
        child_fail(ch, "cannot set the environment");
    if (setenv("PLUGD_FD", fdnum, 1) < 0)
        child_fail(ch, "cannot set PLUGD_FD");
    if (setenv("PLUGD_PLUGIN", ch->m->name, 1) < 0)
        child_fail(ch, "cannot set PLUGD_PLUGIN");
    if (chdir(ch->m->dir) < 0)
        child_fail(ch, "cannot chdir to %s", ch->m->dir);
}

/* In the child: the channel at fd 3, stdout and stderr to plugd's pipes,
 * the sandbox, nothing else inherited. The sandbox report goes to plugd on
 * SPAWN_REPORT_FD before the exec; then the child waits while plugd takes
 * the seccomp notification fd (pidfd_getfd), or sends it when asked. Never
 * returns. */
static void run_child(struct child *ch, int channel, int out, int err) __attribute__((noreturn));
static void run_child(struct child *ch, int channel, int out, int err)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* plugd died before the death signal was armed: its end of the report
     * socket is closed (getppid() cannot tell: in a pid namespace it is 0) */
    struct pollfd plugd_end = {.fd = ch->report_fd, .events = POLLIN};
    if (poll(&plugd_end, 1, 0) != 0)
        _exit(1);
    set_up(ch, channel, out, err);
    confine_restore_fd_limit(); /* the sandbox sets the manifest's nofile */
    struct sb_report r;
    int notify_fd = sb_apply(ch->policy, &r);
    r.notify_fd = notify_fd;
    if (send(ch->report_fd, &r, sizeof(r), MSG_NOSIGNAL) != (ssize_t)sizeof(r))
        child_fail(ch, "cannot send the sandbox report to plugd");
    ch->is_report_sent = true;
    if (notify_fd >= 0 && hand_over_notify_fd(ch->report_fd, notify_fd) < 0)
        child_fail(ch, "cannot hand the seccomp notification fd to plugd");
    if (notify_fd >= 0)
        close(notify_fd);
    if (ch->policy->strict && r.refused != 0)
        _exit(126); /* plugd reads the refusal in the report */
    char *argv[] = {ch->m->entrypoint, NULL};
    execv(ch->m->entrypoint, argv);
    child_fail(ch, "cannot start %s", ch->m->entrypoint);
}

/* ------------------------------------------------------------ plugd */

static void close_pair(int fd[2])
{
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0)
            close(fd[i]);
}

pid_t spawn_worker(struct wk_confinement *c, struct ev_loop *loop, const struct manifest *m,
                   struct spawn_fds *fds, struct plugd_error *err)
{
    int sv[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, ex[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ex) < 0) {
        plugd_error_set(err, PLUGD_E_IO, "cannot create the worker's channel: %s", strerror(errno));
        goto fail;
    }
    struct sb_policy policy;
    confine_prepare(c, m, &policy);
    policy.keep_fd = SPAWN_REPORT_FD;
    pid_t pid = confine_fork(c, &policy);
    if (pid < 0) {
        int e = errno;
        plugd_error_set(err, PLUGD_E_IO, "cannot fork a worker: %s", strerror(e));
        confine_release(c, loop);
        errno = e;
        goto fail;
    }
    if (pid == 0) {
        close(ex[0]); /* only plugd's copy stays: it closes when plugd dies */
        struct child ch = {.c = c, .m = m, .policy = &policy, .report_fd = ex[1]};
        run_child(&ch, sv[1], out[1], errp[1]);
    }
    close(sv[1]);
    close(out[1]);
    close(errp[1]);
    close(ex[1]);
    /* taken before libev can reap it: the pidfd cannot name a reused pid */
    c->child_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    c->report = (struct sb_report){0};
    fcntl(ex[0], F_SETFL, O_NONBLOCK);
    *fds = (struct spawn_fds){.channel = sv[0], .out = out[0], .err = errp[0], .report = ex[0]};
    return pid;

fail:;
    int e = errno; /* the caller tells a passing failure from one for good */
    close_pair(sv);
    close_pair(out);
    close_pair(errp);
    close_pair(ex);
    errno = e;
    return -1;
}

/* The notification fd that came with a message, or -1. */
static int received_fd(struct msghdr *msg)
{
    int fd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

/* Takes the child's notification fd with pidfd_getfd (plugd may trace its
 * own children), or asks the child to send it. */
static void take_notify_fd(struct wk_confinement *c, struct ev_loop *loop, int report_fd,
                           const char *name)
{
    int fd = c->child_pidfd < 0
                 ? -1
                 : (int)syscall(SYS_pidfd_getfd, c->child_pidfd, c->report.notify_fd, 0);
    static bool is_refusal_logged;
    if (fd < 0 && errno != ESRCH && !is_refusal_logged) {
        is_refusal_logged = true;
        log_plugd("warn", name,
                  "pidfd_getfd: %s: workers send their seccomp notification fd instead, which "
                  "the kernel limits when many start at once",
                  c->child_pidfd < 0 ? "no pidfd" : strerror(errno));
    }
    char answer = fd >= 0 ? FD_TAKEN : FD_SEND_IT;
    if (send(report_fd, &answer, 1, MSG_NOSIGNAL) != 1) {
        if (fd >= 0)
            close(fd);
        return; /* the child is gone: its exit says why */
    }
    if (fd >= 0)
        confine_watch(c, loop, fd);
}

int spawn_read(int fd, struct wk_confinement *c, struct ev_loop *loop, const char *name,
               struct spawn_result *r)
{
    int what = 0;
    for (;;) {
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        struct spawn_failure failure;
        struct iovec iov =
            r->has_report ? (struct iovec){.iov_base = &failure, .iov_len = sizeof(failure)}
                          : (struct iovec){.iov_base = &c->report, .iov_len = sizeof(c->report)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return what; /* more comes, or EOF */
        if (n <= 0)
            break;
        int sent_fd = received_fd(&msg);
        if (!r->has_report && n == (ssize_t)sizeof(c->report)) {
            r->has_report = true;
            if (c->report.notify_fd >= 0)
                take_notify_fd(c, loop, fd, name);
            confine_forget_child(c);
            what |= SPAWN_GOT_REPORT;
        } else if (r->has_report && n == 1 && sent_fd >= 0 && c->notify_w.fd < 0) {
            confine_watch(c, loop, sent_fd); /* sent: pidfd_getfd was refused */
            sent_fd = -1;
        } else if (r->has_report && n == (ssize_t)sizeof(failure) && failure.error != 0) {
            r->error = failure.error;
            failure.step[sizeof(failure.step) - 1] = '\0';
            snprintf(r->step, sizeof(r->step), "%s", failure.step);
        }
        if (sent_fd >= 0)
            close(sent_fd);
        if (r->error != 0)
            break;
    }
    return what | SPAWN_ENDED;
}
