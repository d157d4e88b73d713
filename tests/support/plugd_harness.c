#include "plugd_harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jsonpack.h"

#define HOST_FD           3
#define COMMAND_TIMEOUT_S 15.0

static const char *build_root(void)
{
    const char *root = getenv("PLUGD_BUILD_ROOT");
    cr_assert_not_null(root, "PLUGD_BUILD_ROOT is not set (run the tests with meson test)");
    return root;
}

void harness_init(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "%s/plugd-test.XXXXXX", getenv("TMPDIR") ?: "/tmp");
    cr_assert_not_null(mkdtemp(h->dir), "mkdtemp: %s", strerror(errno));
    /* workers run as nobody when plugd is root: they must reach the state */
    cr_assert_eq(chmod(h->dir, 0711), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/plugins", h->dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    h->loop = ev_loop_new(EVFLAG_AUTO);
}

/* Fills folder `dst` from example `example`: its files linked, its
 * plugin.json rewritten with `name` and `overrides`. */
static void fill_package(const char *example, const char *dst, const char *name,
                         const char *overrides)
{
    char src[PATH_MAX / 2], path[PATH_MAX];
    struct stat st;
    snprintf(src, sizeof(src), "%s/examples/%s", build_root(), example);
    if (stat(src, &st) != 0 && getenv("PLUGD_SOURCE_ROOT") != NULL)
        snprintf(src, sizeof(src), "%s/tests/fixtures/%s", getenv("PLUGD_SOURCE_ROOT"), example);
    cr_assert_eq(mkdir(dst, 0755), 0, "mkdir %s: %s", dst, strerror(errno));

    DIR *d = opendir(src);
    cr_assert_not_null(d, "example %s is not built at %s", example, src);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "plugin.json") == 0)
            continue;
        char from[PATH_MAX * 2], to[PATH_MAX * 2];
        snprintf(from, sizeof(from), "%s/%s", src, e->d_name);
        snprintf(to, sizeof(to), "%s/%s", dst, e->d_name);
        cr_assert_eq(symlink(from, to), 0, "symlink %s: %s", to, strerror(errno));
    }
    closedir(d);

    json_error_t jerr;
    snprintf(path, sizeof(path), "%s/plugin.json", src);
    json_t *manifest = json_load_file(path, 0, &jerr);
    cr_assert_not_null(manifest, "%s: %s", path, jerr.text);
    json_object_set_new(manifest, "name", json_string(name));
    if (overrides != NULL) {
        json_t *more = json_loads(overrides, 0, &jerr);
        cr_assert_not_null(more, "overrides: %s", jerr.text);
        json_object_update_recursive(manifest, more);
        json_decref(more);
    }
    snprintf(path, sizeof(path), "%s/plugin.json", dst);
    cr_assert_eq(json_dump_file(manifest, path, JSON_INDENT(2)), 0);
    json_decref(manifest);
}

void harness_add_plugin(struct harness *h, const char *example, const char *name,
                        const char *overrides)
{
    char dst[PATH_MAX];
    snprintf(dst, sizeof(dst), "%s/plugins/%s", h->dir, name);
    fill_package(example, dst, name, overrides);
}

char *harness_make_package(struct harness *h, const char *example, const char *folder,
                           const char *name, const char *overrides)
{
    char dst[PATH_MAX];
    snprintf(dst, sizeof(dst), "%s/src", h->dir);
    mkdir(dst, 0755);
    snprintf(dst, sizeof(dst), "%s/src/%s", h->dir, folder);
    fill_package(example, dst, name, overrides);
    return strdup(dst);
}

static void on_host_notify(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    struct harness *h = ud;
    if (!ipc_str_equals(msg->method, msg->method_len, "plugd.event"))
        return;
    if (h->events == NULL)
        h->events = json_array();
    json_array_append_new(h->events, jsonpack_from_msgpack(ipc_param(msg, 0)));
}

static void on_host_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    (void)why;
    struct harness *h = ud;
    h->host_closed = true;
}

void harness_start(struct harness *h)
{
    if (h->host != NULL) { /* the channel of a plugd started before */
        ipc_conn_free(h->host);
        h->host = NULL;
    }
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char plugd[PATH_MAX], plugins[PATH_MAX], state[PATH_MAX], log[PATH_MAX];
    snprintf(plugd, sizeof(plugd), "%s/supervisor/plugd", build_root());
    snprintf(plugins, sizeof(plugins), "%s/plugins", h->dir);
    snprintf(state, sizeof(state), "%s/state", h->dir);
    snprintf(log, sizeof(log), "%s/plugd.log", h->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || dup2(sv[1], HOST_FD) < 0)
            _exit(126);
        if (h->run_as != 0 &&
            (setgroups(0, NULL) < 0 || setgid((gid_t)h->run_as) < 0 || setuid(h->run_as) < 0))
            _exit(125);
        char fd[8];
        snprintf(fd, sizeof(fd), "%d", HOST_FD);
        char *argv[20] = {plugd, "--plugins-dir", plugins, "--state-dir", state, "--log-file",
                          log,   "--host-fd",     fd};
        for (int i = 0; i < 7 && h->extra_args[i] != NULL; i++)
            argv[9 + i] = (char *)h->extra_args[i];
        execv(plugd, argv);
        _exit(127);
    }
    close(sv[1]);
    h->plugd_pid = pid;
    h->host_closed = false;
    struct ipc_handlers handlers = {.on_notify = on_host_notify, .on_close = on_host_close};
    h->host = ipc_conn_new(h->loop, sv[0], sv[0], NULL, &handlers, h, NULL);
    cr_assert_not_null(h->host);
}

struct pending {
    bool done;
    enum plugd_errc code;
    char message[PLUGD_ERROR_MESSAGE_MAX];
    json_t *result;
};

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud)
{
    (void)c;
    struct pending *p = ud;
    p->done = true;
    if (err != NULL) {
        p->code = err->code;
        snprintf(p->message, sizeof(p->message), "%s", err->message);
    } else {
        p->code = PLUGD_OK;
        p->result = jsonpack_from_msgpack(result);
    }
}

static void on_wall_clock(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until *flag or `seconds` pass. */
static bool run_until(struct harness *h, const bool *flag, double seconds)
{
    ev_timer cap;
    ev_timer_init(&cap, on_wall_clock, seconds, 0.);
    ev_timer_start(h->loop, &cap);
    while (!*flag && ev_is_active(&cap))
        ev_run(h->loop, EVRUN_ONCE);
    ev_timer_stop(h->loop, &cap);
    return *flag;
}

/* Sends `cmd` with `arg` and returns the pending answer (heap, the caller's). */
static struct pending *send_command(struct harness *h, const char *cmd, json_t *arg)
{
    struct pending *p = calloc(1, sizeof(*p));
    cr_assert_not_null(p);
    msgpack_packer *pk = ipc_conn_begin_call(h->host, cmd, COMMAND_TIMEOUT_S, on_reply, p);
    msgpack_pack_array(pk, 1);
    if (arg != NULL)
        jsonpack_pack(pk, arg);
    else
        msgpack_pack_map(pk, 0);
    struct plugd_error err;
    if (ipc_conn_end(h->host, &err) < 0) {
        p->done = true;
        p->code = err.code;
        snprintf(p->message, sizeof(p->message), "%s", err.message);
    }
    return p;
}

/* Waits for `p`, frees it, and hands out its answer. */
static enum plugd_errc finish_command(struct harness *h, struct pending *p, json_t **result,
                                      char *err_message, size_t err_size)
{
    cr_assert(run_until(h, &p->done, COMMAND_TIMEOUT_S + 1), "no answer from plugd");
    enum plugd_errc code = p->code;
    if (err_message != NULL)
        snprintf(err_message, err_size, "%s", p->message);
    if (result != NULL)
        *result = p->result;
    else
        json_decref(p->result);
    free(p);
    return code;
}

enum plugd_errc harness_command(struct harness *h, const char *cmd, json_t *arg, json_t **result,
                                char *err_message, size_t err_size)
{
    return finish_command(h, send_command(h, cmd, arg), result, err_message, err_size);
}

static json_t *call_arg(const char *plugin, const char *method, const char *params_json,
                        int timeout_ms)
{
    json_t *arg = json_pack("{s:s, s:s}", "plugin", plugin, "method", method);
    if (params_json != NULL) {
        json_error_t jerr;
        json_t *params = json_loads(params_json, JSON_DECODE_ANY, &jerr);
        cr_assert_not_null(params, "params: %s", jerr.text);
        json_object_set_new(arg, "params", params);
    }
    if (timeout_ms > 0)
        json_object_set_new(arg, "timeout_ms", json_integer(timeout_ms));
    return arg;
}

struct pending *harness_call_async(struct harness *h, const char *plugin, const char *method,
                                   const char *params_json, int timeout_ms)
{
    json_t *arg = call_arg(plugin, method, params_json, timeout_ms);
    struct pending *p = send_command(h, "call", arg);
    json_decref(arg);
    return p;
}

enum plugd_errc harness_wait(struct harness *h, struct pending *p, json_t **result)
{
    return finish_command(h, p, result, NULL, 0);
}

enum plugd_errc harness_call(struct harness *h, const char *plugin, const char *method,
                             const char *params_json, int timeout_ms, json_t **result)
{
    return harness_wait(h, harness_call_async(h, plugin, method, params_json, timeout_ms), result);
}

json_t *harness_status(struct harness *h, const char *plugin)
{
    json_t *arg = json_pack("{s:s}", "plugin", plugin);
    json_t *list = NULL;
    enum plugd_errc code = harness_command(h, "status", arg, &list, NULL, 0);
    json_decref(arg);
    if (code != PLUGD_OK || !json_is_array(list) || json_array_size(list) != 1) {
        json_decref(list);
        return NULL;
    }
    json_t *one = json_incref(json_array_get(list, 0));
    json_decref(list);
    return one;
}

bool harness_wait_state(struct harness *h, const char *plugin, const char *state, int min_restarts,
                        double seconds)
{
    ev_tstamp until = ev_time() + seconds;
    while (ev_time() < until) {
        json_t *st = harness_status(h, plugin);
        bool is_match = st != NULL &&
                        strcmp(json_string_value(json_object_get(st, "state")) ?: "", state) == 0 &&
                        (min_restarts < 0 ||
                         json_integer_value(json_object_get(st, "restarts")) >= min_restarts);
        json_decref(st);
        if (is_match)
            return true;
        harness_sleep(h, 0.02);
    }
    return false;
}

pid_t harness_worker_pid(struct harness *h, const char *plugin)
{
    json_t *st = harness_status(h, plugin);
    pid_t pid = st ? (pid_t)json_integer_value(json_object_get(st, "pid")) : 0;
    json_decref(st);
    return pid;
}

void harness_sleep(struct harness *h, double seconds)
{
    bool never = false;
    run_until(h, &never, seconds);
}

int harness_log_count(struct harness *h, const char *needle)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/plugd.log", h->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

int harness_stop(struct harness *h, double seconds)
{
    if (h->plugd_pid <= 0)
        return -1;
    if (h->host != NULL && !h->host_closed)
        harness_command(h, "shutdown", NULL, NULL, NULL, 0);
    int status = 0;
    ev_tstamp until = ev_time() + seconds;
    pid_t r;
    while ((r = waitpid(h->plugd_pid, &status, WNOHANG)) == 0 && ev_time() < until)
        harness_sleep(h, 0.01);
    if (r == 0) {
        kill(h->plugd_pid, SIGKILL);
        waitpid(h->plugd_pid, &status, 0);
        h->plugd_pid = 0;
        return -1;
    }
    h->plugd_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void harness_stop_and_check(struct harness *h)
{
    if (h->plugd_pid <= 0)
        return;
    pid_t workers[64];
    int n = 0;
    if (!h->host_closed) {
        json_t *list = NULL;
        harness_command(h, "status", NULL, &list, NULL, 0);
        size_t i;
        json_t *st;
        pid_t leaky = 0;
        json_array_foreach(list, i, st)
        {
            pid_t pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
            if (pid > 0 && n < 64)
                workers[n++] = pid;
            /* Between fork and exec a child still holds plugd's fds (closed
             * on exec); only a worker past its handshake is checked. */
            bool is_running =
                strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running") == 0;
            if (pid > 0 && is_running && leaky == 0 && harness_extra_fds(pid, 3) != 0)
                leaky = pid;
        }
        json_decref(list);
        cr_assert_eq(leaky, 0, "worker %d holds fds beyond 0-3", leaky);
    }
    pid_t plugd = h->plugd_pid;
    cr_assert_eq(harness_stop(h, 20.0), 0, "plugd did not exit cleanly");
    cr_assert_eq(harness_count_children(plugd), 0, "plugd left children behind");
    for (int i = 0; i < n; i++) {
        for (int tries = 0; tries < 200 && !harness_pid_gone(workers[i]); tries++)
            usleep(10000);
        cr_assert(harness_pid_gone(workers[i]), "worker %d outlived plugd", workers[i]);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void harness_fini(struct harness *h)
{
    if (h->plugd_pid > 0) {
        kill(h->plugd_pid, SIGKILL);
        waitpid(h->plugd_pid, NULL, 0);
    }
    if (h->host != NULL)
        ipc_conn_free(h->host);
    h->host = NULL;
    if (h->loop != NULL)
        ev_loop_destroy(h->loop);
    h->loop = NULL;
    json_decref(h->events);
    h->events = NULL;
    if (getenv("PLUGD_KEEP_TEST_DIR") == NULL)
        nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool harness_pid_gone(pid_t pid)
{
    return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
}

/* The fields of /proc/PID_DIR/stat after the command's closing paren
 * (" S PPID ...": the command may hold spaces and parens), read into
 * `buf`; NULL when the process is gone. */
static const char *stat_fields(const char *pid_dir, char *buf, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    char *paren = strrchr(buf, ')');
    return paren ? paren + 1 : NULL;
}

static const char *stat_fields_of(pid_t pid, char *buf, size_t size)
{
    char pid_dir[16];
    snprintf(pid_dir, sizeof(pid_dir), "%d", (int)pid);
    return stat_fields(pid_dir, buf, size);
}

bool harness_pid_dead(pid_t pid)
{
    if (harness_pid_gone(pid))
        return true;
    char buf[512];
    const char *fields = stat_fields_of(pid, buf, sizeof(buf));
    return fields == NULL || strncmp(fields, " Z", 2) == 0;
}

static pid_t parent_of(const char *pid_dir)
{
    char buf[512], state;
    const char *fields = stat_fields(pid_dir, buf, sizeof(buf));
    int ppid;
    if (fields == NULL || sscanf(fields, " %c %d", &state, &ppid) != 2)
        return -1;
    return ppid;
}

int harness_count_children(pid_t pid)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && parent_of(e->d_name) == pid)
            n++;
    if (d != NULL)
        closedir(d);
    return n;
}

int harness_count_fds(pid_t pid)
{
    return harness_extra_fds(pid, -1) + 3;
}

int harness_extra_fds(pid_t pid, int allowed)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd <= 2 || fd == allowed)
            continue;
        /* The worker's own event loop fds (epoll, eventfd, signalfd) are
         * anonymous inodes; anything inherited from plugd would be a pipe,
         * socket or file. */
        char link[PATH_MAX], target[PATH_MAX];
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len > 0 && strncmp(target, "anon_inode:", 11) == 0)
            continue;
        n++;
    }
    closedir(d);
    return n;
}

void harness_subscribe(struct harness *h, const char *pattern, long since)
{
    json_t *arg = json_pack("{s:s}", "pattern", pattern);
    if (since >= 0)
        json_object_set_new(arg, "since", json_integer(since));
    enum plugd_errc code = harness_command(h, "subscribe", arg, NULL, NULL, 0);
    json_decref(arg);
    cr_assert_eq(code, PLUGD_OK, "subscribe: %s", plugd_errc_name(code));
}

static bool is_event(json_t *e, const char *name, const char *plugin)
{
    const char *n = json_string_value(json_object_get(e, "name"));
    const char *p = json_string_value(json_object_get(e, "plugin"));
    return n != NULL && strcmp(n, name) == 0 &&
           (plugin == NULL || (p != NULL && strcmp(p, plugin) == 0));
}

int harness_wait_event(struct harness *h, const char *name, const char *plugin, size_t from,
                       double seconds)
{
    ev_tstamp until = ev_time() + seconds;
    for (;;) {
        for (size_t i = from; h->events && i < json_array_size(h->events); i++)
            if (is_event(json_array_get(h->events, i), name, plugin))
                return (int)i;
        if (ev_time() >= until)
            return -1;
        harness_sleep(h, 0.01);
    }
}

void harness_event_names(struct harness *h, const char *plugin, size_t from, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = from; h->events && i < json_array_size(h->events); i++) {
        json_t *e = json_array_get(h->events, i);
        const char *p = json_string_value(json_object_get(e, "plugin"));
        if (plugin != NULL && (p == NULL || strcmp(p, plugin) != 0))
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? " " : "",
                         json_string_value(json_object_get(e, "name")));
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

enum plugd_errc harness_op(struct harness *h, const char *cmd, const char *name, char *message,
                           size_t size)
{
    json_t *arg = json_pack("{s:s}", name[0] == '/' ? "path" : "plugin", name);
    enum plugd_errc code = harness_command(h, cmd, arg, NULL, message, size);
    json_decref(arg);
    return code;
}

void harness_lifecycle(struct harness *h, const char *plugin, char *out, size_t size)
{
    json_t *st = harness_status(h, plugin);
    snprintf(out, size, "%s", st ? json_string_value(json_object_get(st, "status")) ?: "" : "");
    json_decref(st);
}

bool harness_wait_status(struct harness *h, const char *plugin, const char *status, double seconds)
{
    ev_tstamp until = ev_time() + seconds;
    char now[32];
    do {
        harness_lifecycle(h, plugin, now, sizeof(now));
        if (strcmp(now, status) == 0)
            return true;
        harness_sleep(h, 0.02);
    } while (ev_time() < until);
    return false;
}

void harness_kill9(struct harness *h)
{
    if (h->plugd_pid > 0) {
        kill(h->plugd_pid, SIGKILL);
        waitpid(h->plugd_pid, NULL, 0);
        h->plugd_pid = 0;
    }
    if (h->host != NULL) {
        ipc_conn_free(h->host);
        h->host = NULL;
    }
    h->host_closed = true;
}

static uid_t nobody_uid;

static int give_to_nobody(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return lchown(path, nobody_uid, nobody_uid);
}

bool harness_run_as_nobody(struct harness *h)
{
    struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || pw == NULL)
        return false;
    nobody_uid = pw->pw_uid;
    char plugd[PATH_MAX];
    snprintf(plugd, sizeof(plugd), "%s/supervisor/plugd", build_root());
    pid_t pid = fork();
    if (pid == 0)
        _exit(setgid(nobody_uid) == 0 && setuid(nobody_uid) == 0 && access(plugd, R_OK | X_OK) == 0
                  ? 0
                  : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        nftw(h->dir, give_to_nobody, 16, FTW_PHYS) != 0)
        return false;
    h->run_as = nobody_uid;
    return true;
}

bool harness_wait_log(struct harness *h, const char *needle, int count, double seconds)
{
    ev_tstamp until = ev_time() + seconds;
    while (harness_log_count(h, needle) < count) {
        if (ev_time() >= until)
            return false;
        harness_sleep(h, 0.02);
    }
    return true;
}

void harness_read_all(int fd, char *buf, size_t size)
{
    size_t got = 0;
    char scrap[4096];
    for (;;) {
        bool has_room = got + 1 < size;
        ssize_t n =
            read(fd, has_room ? buf + got : scrap, has_room ? size - 1 - got : sizeof(scrap));
        if (n <= 0)
            break;
        if (has_room)
            got += (size_t)n;
    }
    buf[got] = 0;
    close(fd);
}

pid_t harness_plugctl_spawn(struct harness *h, const char *const *args, int *out_fd, int *err_fd)
{
    char bin[PATH_MAX], sock[PATH_MAX];
    snprintf(bin, sizeof(bin), "%s/supervisor/plugctl", build_root());
    snprintf(sock, sizeof(sock), "%s/state/plugd.sock", h->dir);
    int o[2], e[2];
    cr_assert_eq(pipe2(o, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(e, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (dup2(o[1], 1) < 0 || dup2(e[1], 2) < 0 || setenv("PLUGD_SOCKET", sock, 1) < 0)
            _exit(127);
        char *argv[16] = {bin};
        for (int i = 0; args[i] != NULL && i < 14; i++)
            argv[i + 1] = (char *)args[i];
        execv(bin, argv);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    *out_fd = o[0];
    *err_fd = e[0];
    return pid;
}

int harness_exit_status(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int harness_plugctl(struct harness *h, const char *const *args, char *out, size_t out_size,
                    char *err_out, size_t err_size)
{
    int o, e;
    pid_t pid = harness_plugctl_spawn(h, args, &o, &e);
    harness_read_all(o, out,
                     out_size); /* plugctl's stderr is a line or two: its pipe never fills */
    harness_read_all(e, err_out, err_size);
    return harness_exit_status(pid);
}

long harness_proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    long kib = -1;
    size_t n = strlen(field);
    while (kib < 0 && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kib = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kib;
}

double harness_cpu_seconds(pid_t pid)
{
    char buf[1024];
    const char *fields = stat_fields_of(pid, buf, sizeof(buf));
    /* state, then fields 4..13, then utime, stime */
    unsigned long utime, stime;
    if (fields == NULL ||
        sscanf(fields, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

int harness_all_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}
int harness_count_state(struct harness *h, const char *state)
{
    json_t *list = NULL;
    int n = 0;
    if (harness_command(h, "list", NULL, &list, NULL, 0) == PLUGD_OK && json_is_array(list)) {
        size_t i;
        json_t *one;
        json_array_foreach(list, i, one)
        {
            const char *s = json_string_value(json_object_get(one, "state"));
            n += s != NULL && strcmp(s, state) == 0;
        }
    }
    json_decref(list);
    return n;
}

int harness_wait_count_state(struct harness *h, const char *state, int n, double seconds)
{
    ev_tstamp until = ev_time() + seconds;
    int seen = harness_count_state(h, state);
    while (seen < n && ev_time() < until) {
        harness_sleep(h, 0.1);
        seen = harness_count_state(h, state);
    }
    return seen;
}

void harness_expect_op(struct harness *h, const char *cmd, const char *arg, enum plugd_errc code)
{
    char message[PLUGD_ERROR_MESSAGE_MAX] = "";
    enum plugd_errc got = harness_op(h, cmd, arg, message, sizeof(message));
    cr_assert_eq(got, code, "%s %s: got %s (%s), expected %s", cmd, arg, plugd_errc_name(got),
                 message, plugd_errc_name(code));
}
