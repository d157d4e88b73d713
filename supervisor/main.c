/* plugd's entry: the flags, the state folder and its lock, then on one
 * loop plugd_open (the registry's plugins back, --plugins-dir installed and
 * watched), the control socket, the host channel (--host-fd) and the
 * signals: SIGTERM/SIGINT stop every worker gracefully, SIGHUP rescans. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "plugd.h"

static const char usage[] =
    "usage: plugd [--plugins-dir DIR] [--state-dir DIR] [--host-fd N] [--log-file PATH]\n"
    "\n"
    "Brings back every plugin of its registry (STATE/plugd.db) and runs a\n"
    "supervised worker for each ready one; installs or upgrades the plugin\n"
    "folders (each with a plugin.json) found in --plugins-dir, now and whenever\n"
    "they change. Runs until SIGTERM or SIGINT, which stop every worker\n"
    "gracefully (plugd.shutdown, drain, SIGTERM, SIGKILL).\n"
    "\n"
    "  --plugins-dir DIR  a folder of plugin folders to install from and watch\n"
    "  --state-dir DIR    plugd's state folder (registry, package copies), created\n"
    "                     if missing (default ./state); one plugd per folder\n"
    "                     (STATE/plugd.lock holds the running one's pid)\n"
    "  --scan-interval-ms N  how often --plugins-dir is checked (default 1000)\n"
    "  --data-retention-days N  how long an uninstalled plugin's data is kept\n"
    "                     (default 30)\n"
    "  --control-socket PATH  the operators' socket, JSON lines (default\n"
    "                     STATE/plugd.sock, mode 0660; docs/control.md)\n"
    "  --allow-uid N      a user allowed on the control socket besides root and\n"
    "                     plugd's own user (repeatable, up to 32)\n"
    "  --allow-gid N      a group allowed on the control socket (repeatable, up\n"
    "                     to 32)\n"
    "  --sandbox MODE     on (default): every layer the kernel allows, a refused\n"
    "                     one logged; strict: a worker whose layer is refused does\n"
    "                     not start; off: no sandbox (docs/sandbox.md)\n"
    "  --worker-user USER[:GROUP]  who workers run as when plugd is root (a name\n"
    "                     or number; default nobody); never root\n"
    "  --pass-env NAME    a manifest's \"env\" may take NAME from plugd's\n"
    "                     environment (repeatable; docs/sandbox.md)\n"
    "  --host-fd N        speak msgpack-rpc with the host application on fd N;\n"
    "                     plugd stops when that channel closes\n"
    "  --log-file PATH    append JSON log records here instead of stderr\n"
    "  --help             this text\n"
    "  --version          plugd's version and protocol version\n"
    "\n"
    "SIGHUP makes plugd look at --plugins-dir at once.\n";

struct options {
    const char *plugins_dir;
    const char *state_dir;
    const char *log_file;
    int host_fd;
    double scan_interval;
    double data_retention;
    const char *control_socket; /* NULL: STATE/plugd.sock */
    enum sb_mode sandbox;
    const char *worker_user;
    struct control_options control;
};

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct plugd *d = s->data;
    log_plugd("info", NULL, "received %s", strsignal(s->signum));
    plugd_stop_all(d);
}

/* SIGHUP: look at the plugins folder now. */
static void on_sighup(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    plugd_scan(s->data);
}

/* A decimal integer flag value in [min, max]. */
static int parse_number(const char *text, const char *flag, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || end == text || v < min || v > max) {
        fprintf(stderr, "plugd: %s: \"%s\" is not a number from %ld to %ld\n", flag, text, min,
                max);
        return -1;
    }
    *out = v;
    return 0;
}

static bool is_env_name(const char *s)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
           strlen(s);
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"plugins-dir", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 's'},
        {"host-fd", required_argument, NULL, 'H'},
        {"log-file", required_argument, NULL, 'l'},
        {"scan-interval-ms", required_argument, NULL, 'i'},
        {"data-retention-days", required_argument, NULL, 'r'},
        {"control-socket", required_argument, NULL, 'c'},
        {"allow-uid", required_argument, NULL, 'u'},
        {"allow-gid", required_argument, NULL, 'g'},
        {"sandbox", required_argument, NULL, 'S'},
        {"worker-user", required_argument, NULL, 'U'},
        {"pass-env", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.state_dir = "state", .host_fd = -1};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        long number;
        switch (c) {
        case 'p':
            o->plugins_dir = optarg;
            break;
        case 's':
            o->state_dir = optarg;
            break;
        case 'l':
            o->log_file = optarg;
            break;
        case 'H':
            if (parse_number(optarg, "--host-fd", 0, INT_MAX, &number) < 0)
                return 2;
            o->host_fd = (int)number;
            break;
        case 'i':
            if (parse_number(optarg, "--scan-interval-ms", 10, 86400000, &number) < 0)
                return 2;
            o->scan_interval = (double)number / 1000.0;
            break;
        case 'r':
            if (parse_number(optarg, "--data-retention-days", 0, 36500, &number) < 0)
                return 2;
            /* 0 days: data is deleted at the first sweep after uninstall */
            o->data_retention = number ? (double)number * 86400.0 : 1e-9;
            break;
        case 'c':
            o->control_socket = optarg;
            break;
        case 'u':
        case 'g': {
            bool is_uid = c == 'u';
            size_t *n = is_uid ? &o->control.n_allow_uids : &o->control.n_allow_gids;
            if (*n == CONTROL_MAX_ALLOW) {
                fprintf(stderr, "plugd: %s: at most %d\n", is_uid ? "--allow-uid" : "--allow-gid",
                        CONTROL_MAX_ALLOW);
                return 2;
            }
            if (parse_number(optarg, is_uid ? "--allow-uid" : "--allow-gid", 0, INT_MAX, &number) <
                0)
                return 2;
            if (is_uid)
                o->control.allow_uids[(*n)++] = (uid_t)number;
            else
                o->control.allow_gids[(*n)++] = (gid_t)number;
            break;
        }
        case 'S':
            if (strcmp(optarg, "on") == 0) {
                o->sandbox = SB_MODE_ON;
            } else if (strcmp(optarg, "strict") == 0) {
                o->sandbox = SB_MODE_STRICT;
            } else if (strcmp(optarg, "off") == 0) {
                o->sandbox = SB_MODE_OFF;
            } else {
                fprintf(stderr, "plugd: --sandbox: \"%s\" is not on, strict or off\n", optarg);
                return 2;
            }
            break;
        case 'U': {
            uid_t uid;
            gid_t gid;
            char why[SB_REASON_MAX];
            if (sb_resolve_user(optarg, &uid, &gid, why, sizeof(why)) < 0) {
                fprintf(stderr, "plugd: --worker-user: %s\n", why);
                return 2;
            }
            o->worker_user = optarg;
            break;
        }
        case 'E':
            if (!is_env_name(optarg) || confine_allow_env(optarg) < 0) {
                fprintf(stderr,
                        "plugd: --pass-env: \"%s\" is not a variable name (A-Z a-z 0-9 _) or "
                        "there are more than %d\n",
                        optarg, CONFINE_MAX_PASS_ENV);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        case 'V':
            printf("plugd %s (worker protocol %d)\n", PLUGD_VERSION, PLUGD_PROTOCOL_CURRENT);
            exit(0);
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "plugd: unexpected argument \"%s\"\n%s", argv[optind], usage);
        return 2;
    }
    return 0;
}

/* One plugd per state folder: an exclusive lock on STATE/plugd.lock, held
 * until plugd exits; the file holds the owner's pid too. A POSIX record
 * lock (fcntl), not flock: a child plugd forks (a worker before its exec, a
 * sandbox helper that never execs) must not keep it after plugd died. The
 * fd is O_CLOEXEC. Returns the fd, or -1 with the reason printed; a refused
 * plugd has changed nothing. */
static int lock_state(const char *state_dir)
{
    char path[PATH_MAX], pid[32] = "";
    snprintf(path, sizeof(path), "%s/plugd.lock", state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "plugd: cannot open the lock %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    while (fcntl(fd, F_SETLK, &whole) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EACCES || errno == EAGAIN) {
            struct flock holder = whole;
            if (fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK) {
                snprintf(pid, sizeof(pid), "%d", (int)holder.l_pid);
            } else {
                ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
                pid[n > 0 ? n : 0] = '\0';
                pid[strcspn(pid, "\n")] = '\0';
            }
            fprintf(stderr,
                    "plugd: another plugd (pid %s) runs on the state folder %s (it holds %s): "
                    "stop it first, or give this one another --state-dir\n",
                    pid[0] ? pid : "unknown", state_dir, path);
        } else {
            fprintf(stderr, "plugd: cannot lock %s: %s\n", path, strerror(errno));
        }
        close(fd);
        return -1;
    }
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        fprintf(stderr, "plugd: cannot write the lock %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    /* plugd's files (registry, log) are its own; packages and the workers'
     * folders get their modes explicitly */
    umask(077);
    /* the lock and often the log live in the state folder: make it first */
    if (mkdir(o.state_dir, 0750) < 0 && errno != EEXIST) {
        fprintf(stderr, "plugd: cannot create --state-dir %s: %s\n", o.state_dir, strerror(errno));
        return 1;
    }
    /* before anything that could touch another plugd's files, sockets or workers */
    int lock_fd = lock_state(o.state_dir);
    if (lock_fd < 0)
        return 1;
    FILE *log_file = NULL;
    if (o.log_file != NULL) {
        log_file = fopen(o.log_file, "ae");
        if (log_file == NULL) {
            fprintf(stderr, "plugd: cannot open --log-file %s: %s\n", o.log_file, strerror(errno));
            return 1;
        }
        log_set_output(log_file);
    }
    signal(SIGPIPE, SIG_IGN);
    rlim_t nofile = 0;
    if (confine_raise_fd_limit(&nofile) < 0 || nofile < 8 * PLUGD_MAX_PLUGINS)
        log_plugd("warn", NULL, "open files limited to %llu: about %llu workers can run",
                  (unsigned long long)nofile, (unsigned long long)nofile / 8);
    srand48((long)time(NULL) ^ getpid());

    static struct plugd d;
    struct plugd_options po = {.state_dir = o.state_dir,
                               .plugins_dir = o.plugins_dir,
                               .scan_interval = o.scan_interval,
                               .data_retention = o.data_retention,
                               .sandbox = o.sandbox,
                               .worker_user = o.worker_user};
    struct plugd_error err;
    log_plugd("info", NULL, "plugd %s starting (state %s, plugins %s)", PLUGD_VERSION, o.state_dir,
              o.plugins_dir ? o.plugins_dir : "none");
    if (plugd_open(&d, ev_default_loop(EVFLAG_AUTO), &po, &err) < 0) {
        fprintf(stderr, "plugd: %s\n", err.message);
        return 1;
    }
    char socket_path[PATH_MAX];
    snprintf(socket_path, sizeof(socket_path), "%s/plugd.sock", o.state_dir);
    o.control.path = o.control_socket ? o.control_socket : socket_path;
    struct control *ctl = control_open(&d, &o.control, &err);
    if (ctl == NULL || (o.host_fd >= 0 && host_channel_open(&d, o.host_fd, &err) < 0)) {
        fprintf(stderr, "plugd: %s\n", err.message);
        control_close(ctl);
        plugd_close(&d);
        return 1;
    }

    ev_signal sigterm, sigint, sighup;
    ev_signal_init(&sigterm, on_signal, SIGTERM);
    ev_signal_init(&sigint, on_signal, SIGINT);
    ev_signal_init(&sighup, on_sighup, SIGHUP);
    sigterm.data = sigint.data = sighup.data = &d;
    ev_signal_start(d.loop, &sigterm);
    ev_signal_start(d.loop, &sigint);
    ev_signal_start(d.loop, &sighup);

    /* the workers start from the loop, a few per turn: the control socket
     * and the host channel answer meanwhile */
    plugd_start_plugins(&d);
    ev_run(d.loop, 0);

    log_plugd("info", NULL, "plugd stopped");
    host_channel_close(&d);
    struct ev_loop *loop = d.loop;
    control_close(ctl);
    plugd_close(&d);
    ev_loop_destroy(loop);
    log_forget_recent();
    if (log_file != NULL)
        fclose(log_file);
    close(lock_fd);
    return d.exit_status;
}
