/* plugd: starts every plugin found in --plugins-dir, supervises their
 * workers, serves the host channel, and stops gracefully on SIGTERM/SIGINT. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "plugd.h"

static const char usage[] =
    "usage: plugd --plugins-dir DIR [--state-dir DIR] [--host-fd N] [--log-file PATH]\n"
    "\n"
    "Starts one supervised worker per plugin folder (a folder with a plugin.json)\n"
    "found in --plugins-dir, and runs until SIGTERM or SIGINT, which stop every\n"
    "worker gracefully (plugd.shutdown, drain, SIGTERM, SIGKILL).\n"
    "\n"
    "  --plugins-dir DIR  where the plugin folders are (required)\n"
    "  --state-dir DIR    plugd's state folder, created if missing (default ./state)\n"
    "  --host-fd N        speak msgpack-rpc with the host application on fd N;\n"
    "                     plugd stops when that channel closes\n"
    "  --log-file PATH    append JSON log records here instead of stderr\n"
    "  --help             this text\n"
    "  --version          plugd's version and protocol version\n";

struct options {
    const char *plugins_dir;
    const char *state_dir;
    const char *log_file;
    int host_fd;
};

struct worker *plugd_find_worker(struct plugd *d, const char *name, size_t len)
{
    for (size_t i = 0; i < d->n_workers; i++)
        if (ipc_str_equals(name, len, d->workers[i]->m->name))
            return d->workers[i];
    return NULL;
}

static bool all_stopped(const struct plugd *d)
{
    for (size_t i = 0; i < d->n_workers; i++)
        if (d->workers[i]->state != WK_STOPPED)
            return false;
    return true;
}

void plugd_stop_all(struct plugd *d)
{
    if (!d->is_stopping)
        log_plugd("info", NULL, "stopping %zu worker(s)", d->n_workers);
    d->is_stopping = true;
    for (size_t i = 0; i < d->n_workers; i++)
        worker_stop(d->workers[i]);
    if (all_stopped(d))
        ev_break(d->loop, EVBREAK_ALL);
}

static void on_worker_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)w;
    (void)from;
    struct plugd *d = ud;
    if (d->is_stopping && all_stopped(d))
        ev_break(d->loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct plugd *d = s->data;
    log_plugd("info", NULL, "received %s", strsignal(s->signum));
    plugd_stop_all(d);
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"plugins-dir", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 's'},
        {"host-fd", required_argument, NULL, 'H'},
        {"log-file", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.state_dir = "state", .host_fd = -1};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
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
            errno = 0;
            long fd = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || fd < 0 || fd > INT_MAX) {
                fprintf(stderr, "plugd: --host-fd: \"%s\" is not a file descriptor number\n",
                        optarg);
                return 2;
            }
            o->host_fd = (int)fd;
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
    if (o->plugins_dir == NULL) {
        fprintf(stderr, "plugd: --plugins-dir is required\n%s", usage);
        return 2;
    }
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every folder of `dir` that has a plugin.json, in name order. A bad
 * manifest is logged and skipped; it does not stop the others. */
static int load_plugins(struct plugd *d, const char *dir)
{
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        fprintf(stderr, "plugd: cannot open --plugins-dir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char *names[PLUGD_MAX_PLUGINS];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL && n < PLUGD_MAX_PLUGINS) {
        char path[PATH_MAX];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/plugin.json", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            names[n++] = strdup(e->d_name);
    }
    closedir(dh);
    qsort(names, n, sizeof(names[0]), compare_names);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        struct plugd_error err;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        free(names[i]);
        struct manifest *m = manifest_load(path, &err);
        if (m == NULL) {
            log_plugd("error", NULL, "skipping plugin folder %s: %s", path, err.message);
            continue;
        }
        if (plugd_find_worker(d, m->name, strlen(m->name)) != NULL) {
            log_plugd("error", m->name, "skipping %s: a plugin with this name is already loaded",
                      path);
            manifest_free(m);
            continue;
        }
        d->workers[d->n_workers++] = worker_new(d->loop, m, on_worker_state, d);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    FILE *log_file = NULL;
    if (o.log_file != NULL) {
        log_file = fopen(o.log_file, "ae");
        if (log_file == NULL) {
            fprintf(stderr, "plugd: cannot open --log-file %s: %s\n", o.log_file, strerror(errno));
            return 1;
        }
        log_set_output(log_file);
    }
    if (mkdir(o.state_dir, 0750) < 0 && errno != EEXIST) {
        fprintf(stderr, "plugd: cannot create --state-dir %s: %s\n", o.state_dir, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    srand48((long)time(NULL) ^ getpid());

    static struct plugd d;
    d.loop = ev_default_loop(EVFLAG_AUTO);
    if (load_plugins(&d, o.plugins_dir) < 0)
        return 1;
    struct plugd_error err;
    if (o.host_fd >= 0 && host_channel_open(&d, o.host_fd, &err) < 0) {
        fprintf(stderr, "plugd: --host-fd %d: %s\n", o.host_fd, err.message);
        return 1;
    }

    ev_signal sigterm, sigint;
    ev_signal_init(&sigterm, on_signal, SIGTERM);
    ev_signal_init(&sigint, on_signal, SIGINT);
    sigterm.data = sigint.data = &d;
    ev_signal_start(d.loop, &sigterm);
    ev_signal_start(d.loop, &sigint);

    log_plugd("info", NULL, "plugd %s starting %zu plugin(s) from %s", PLUGD_VERSION, d.n_workers,
              o.plugins_dir);
    for (size_t i = 0; i < d.n_workers; i++) {
        if (worker_start(d.workers[i], &err) < 0)
            log_plugd("error", d.workers[i]->m->name, "cannot start: %s", err.message);
    }
    ev_run(d.loop, 0);

    log_plugd("info", NULL, "plugd stopped");
    if (d.host != NULL) {
        ipc_conn_flush(d.host, NULL); /* answers queued in the last iteration */
        ipc_conn_free(d.host);
    }
    for (size_t i = 0; i < d.n_workers; i++)
        worker_free(d.workers[i]);
    ev_loop_destroy(d.loop);
    if (log_file != NULL)
        fclose(log_file);
    return d.exit_status;
}
