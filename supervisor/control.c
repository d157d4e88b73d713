/* The control socket: listening, accepting (with the client cap and the
 * out-of-fds reserve), authorizing by SO_PEERCRED, the memory cap over all
 * clients, and the last flush at exit. One connection's lines, answers and
 * streams are control_client.c's. docs/control.md is the contract. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_client.h"
#include "logs.h"

/* The client holding the most memory when all of them hold more than
 * CONTROL_MEMORY_MAX: it is told why, and disconnected. */
static void on_trim(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct control *ctl = w->data;
    ev_prepare_stop(loop, w);
    while (ctl->held > CONTROL_MEMORY_MAX) {
        struct client *greediest = NULL;
        for (struct client *c = ctl->clients; c != NULL; c = c->next)
            if (!c->is_closed && (greediest == NULL || c->held > greediest->held))
                greediest = c;
        if (greediest == NULL)
            return;
        size_t total = ctl->held, own = greediest->held;
        log_plugd("warn", NULL,
                  "control: clients hold %zu MiB, over the cap of %d MiB: %s holds the most "
                  "(%zu MiB) and is disconnected",
                  total >> 20, CONTROL_MEMORY_MAX >> 20, greediest->actor, own >> 20);
        char why[320];
        snprintf(why, sizeof(why),
                 "control clients hold %zu MiB, over plugd's cap of %d MiB, and this "
                 "connection holds the most (%zu MiB): disconnected; read the answers "
                 "before sending more requests",
                 total >> 20, CONTROL_MEMORY_MAX >> 20, own >> 20);
        client_evict(greediest, why);
    }
}

static bool is_allowed(const struct control *ctl, const struct ucred *cred)
{
    if (cred->uid == 0 || cred->uid == getuid())
        return true;
    for (size_t i = 0; i < ctl->o.n_allow_uids; i++)
        if (ctl->o.allow_uids[i] == cred->uid)
            return true;
    for (size_t i = 0; i < ctl->o.n_allow_gids; i++)
        if (ctl->o.allow_gids[i] == cred->gid)
            return true;
    return false;
}

/* A connection plugd does not take: one error line, then closed. */
static void refuse_connection(int fd, enum plugd_errc code, const char *message)
{
    json_t *msg = json_pack("{s:n, s:b, s:{s:s, s:s}}", "id", "ok", 0, "error", "code",
                            plugd_errc_name(code), "message", message);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (text != NULL) {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves room: its NUL becomes the newline */
        ssize_t ignored = send(fd, text, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)ignored;
        free(text);
    }
    close(fd);
}

static void add_client(struct control *ctl, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct client *c = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        (c = client_new(ctl, fd, &cred)) == NULL) {
        refuse_connection(fd, PLUGD_E_NO_MEMORY, "plugd has no memory for another client");
        return;
    }
    c->is_authorized = is_allowed(ctl, &cred);
    if (!c->is_authorized) {
        log_plugd("warn", NULL, "control: refused uid %u gid %u pid %d (not allowed)",
                  (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
    }
}

static void on_accept_pause_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct control *ctl = t->data;
    if (ctl->reserve_fd < 0)
        ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_start(loop, &ctl->accept_w);
}

/* Out of fds: the reserve fd makes room to accept the connection and tell
 * it so; without one, accepting pauses (the listening socket would wake
 * the loop for ever). Returns true when the loop may go on accepting. */
static bool accept_without_fds(struct control *ctl)
{
    struct ev_loop *loop = ctl->d->loop;
    if (ctl->reserve_fd >= 0) {
        close(ctl->reserve_fd);
        ctl->reserve_fd = -1;
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            refuse_connection(fd, PLUGD_E_IO,
                              "plugd is out of file descriptors (RLIMIT_NOFILE): try again when "
                              "clients or workers have closed theirs");
        ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && ctl->reserve_fd >= 0)
            return true;
    }
    log_plugd("warn", NULL, "control: out of file descriptors: not accepting for %.0f ms",
              CONTROL_ACCEPT_PAUSE * 1000);
    ev_io_stop(loop, &ctl->accept_w);
    ev_timer_set(&ctl->accept_pause_t, CONTROL_ACCEPT_PAUSE, 0.);
    ev_timer_start(loop, &ctl->accept_pause_t);
    return false;
}

/* Takes every waiting connection: a burst of connects finds the backlog
 * emptied at each wake-up. */
static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct control *ctl = w->data;
    for (;;) {
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            if (!accept_without_fds(ctl))
                return;
            continue;
        }
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EPROTO))
            continue;
        if (fd < 0)
            return; /* EAGAIN: none left; ENOBUFS, ENOMEM: the next wake-up tries again */
        if (ctl->n_clients >= CONTROL_MAX_CLIENTS) {
            char why[160];
            snprintf(why, sizeof(why),
                     "plugd serves at most %d control clients at once: try again when one has "
                     "left",
                     CONTROL_MAX_CLIENTS);
            refuse_connection(fd, PLUGD_E_BUFFER_FULL, why);
            continue;
        }
        add_client(ctl, fd);
    }
}

/* ------------------------------------------------------------ the socket */

/* A socket file nobody listens on is left over from a plugd that died. */
static bool is_live_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    bool is_live = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return is_live;
}

struct control *control_open(struct plugd *d, const struct control_options *o,
                             struct plugd_error *err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(o->path) >= sizeof(addr.sun_path)) {
        plugd_error_set(err, PLUGD_E_INVALID_ARGUMENT,
                        "control socket path %s is longer than %zu bytes", o->path,
                        sizeof(addr.sun_path) - 1);
        return NULL;
    }
    if (is_live_socket(o->path)) {
        plugd_error_set(err, PLUGD_E_IO, "control socket %s: another plugd is listening there",
                        o->path);
        return NULL;
    }
    unlink(o->path);
    struct control *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the control socket");
        return NULL;
    }
    ctl->d = d;
    ctl->o = *o;
    if ((ctl->o.path = strdup(o->path)) == NULL) {
        free(ctl);
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the control socket");
        return NULL;
    }
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", o->path);
    ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0117); /* the socket file is born 0660 */
    int rc = ctl->fd < 0 ? -1 : bind(ctl->fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc < 0 || chmod(o->path, 0660) < 0 || lstat(o->path, &ctl->socket_file) < 0 ||
        listen(ctl->fd, CONTROL_BACKLOG) < 0) {
        plugd_error_set(err, PLUGD_E_IO, "control socket %s: %s", o->path, strerror(errno));
        if (ctl->fd >= 0)
            close(ctl->fd);
        free((char *)ctl->o.path);
        free(ctl);
        return NULL;
    }
    ctl->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_init(&ctl->accept_w, on_accept, ctl->fd, EV_READ);
    ev_init(&ctl->accept_pause_t, on_accept_pause_end);
    ev_prepare_init(&ctl->trim_w, on_trim);
    ctl->accept_w.data = ctl->accept_pause_t.data = ctl->trim_w.data = ctl;
    ev_io_start(d->loop, &ctl->accept_w);
    log_plugd("info", NULL, "control: listening on %s", o->path);
    return ctl;
}

/* At exit: what clients are owed (the shutdown answer, the last events
 * and log records) goes out, waiting at most CONTROL_EXIT_FLUSH s in all. */
static void flush_all(struct control *ctl)
{
    double until = ev_time() + CONTROL_EXIT_FLUSH;
    for (;;) {
        struct pollfd fds[CONTROL_MAX_CLIENTS];
        nfds_t n = 0;
        for (struct client *c = ctl->clients; c != NULL && n < CONTROL_MAX_CLIENTS; c = c->next) {
            if (c->is_closed || client_queued(c) == 0)
                continue;
            if (client_flush(c) < 0) {
                ipc_outbuf_destroy(&c->out); /* gone: nothing more is owed */
                continue;
            }
            if (client_queued(c) > 0)
                fds[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
        }
        double left = until - ev_time();
        if (n == 0 || left <= 0 || poll(fds, n, (int)(left * 1000) + 1) <= 0)
            return;
    }
}

void control_close(struct control *ctl)
{
    if (ctl == NULL)
        return;
    ev_io_stop(ctl->d->loop, &ctl->accept_w);
    ev_timer_stop(ctl->d->loop, &ctl->accept_pause_t);
    ev_prepare_stop(ctl->d->loop, &ctl->trim_w);
    close(ctl->fd);
    if (ctl->reserve_fd >= 0)
        close(ctl->reserve_fd);
    flush_all(ctl);
    struct stat now;
    if (lstat(ctl->o.path, &now) == 0 && now.st_ino == ctl->socket_file.st_ino &&
        now.st_dev == ctl->socket_file.st_dev)
        unlink(ctl->o.path);
    for (struct client *c = ctl->clients, *next; c != NULL; c = next) {
        next = c->next;
        client_close(c); /* frees it unless a request is still out */
    }
    /* a client still waiting for an answer goes when the answer comes */
    for (struct client *c = ctl->clients; c != NULL; c = c->next)
        c->ctl = NULL; /* closed already: only client_free looks at ctl */
    free((char *)ctl->o.path);
    free(ctl->line);
    free(ctl);
}
