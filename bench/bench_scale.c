/* plugd with N (1,000) sandboxed hello workers, as an operator runs it: the
 * real plugd binary, its control socket, a plugins folder of N copies.
 * Reports time to all ready from an empty state and again from the
 * registry after a graceful restart, plugd's RSS and fds with N running,
 * `list` and `call` latency on the control socket, and the graceful stop.
 * The reference beside them: one plugd with a single hello worker, in the
 * same run. JSON lines; docs/BENCHMARKS.md. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "bench_util.h"

#define SAMPLES 200

static char root[PATH_MAX];

static void die(const char *what)
{
    fprintf(stderr, "bench_scale: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A plugins folder of n hello copies (files linked, manifest rewritten). */
static void make_plugins(const char *dir, int n)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        die(dir);
    for (int i = 0; i < n; i++) {
        char folder[PATH_MAX + 32], path[PATH_MAX + 64];
        snprintf(folder, sizeof(folder), "%s/hello%04d", dir, i);
        if (mkdir(folder, 0755) < 0)
            die(folder);
        snprintf(path, sizeof(path), "%s/hello", folder);
        if (link(EXAMPLES_DIR "/hello/hello", path) < 0 &&
            symlink(EXAMPLES_DIR "/hello/hello", path) < 0)
            die(path);
        snprintf(path, sizeof(path), "%s/plugin.json", folder);
        FILE *f = fopen(path, "w");
        if (f == NULL)
            die(path);
        fprintf(f,
                "{\"name\": \"hello%04d\", \"version\": \"1.0.0\", \"entrypoint\": \"hello\", "
                "\"protocol\": 1, \"methods\": [\"echo\", \"add\"]}\n",
                i);
        fclose(f);
    }
}

static pid_t start_plugd(const char *state, const char *plugins, const char *sock)
{
    char log[PATH_MAX + 16];
    snprintf(log, sizeof(log), "%s.log", state);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[12] = {PLUGD_EXE,    "--state-dir", (char *)state, "--control-socket",
                          (char *)sock, "--log-file",  log,           NULL};
        if (plugins != NULL) {
            argv[7] = "--plugins-dir";
            argv[8] = (char *)plugins;
        }
        execv(PLUGD_EXE, argv);
        _exit(127);
    }
    return pid;
}

static FILE *connect_control(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        die("socket path too long");
    memcpy(a.sun_path, path, strlen(path) + 1);
    for (int tries = 0; tries < 3000; tries++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fdopen(fd, "r+");
        close(fd);
        usleep(10000);
    }
    die("control socket");
    return NULL;
}

/* One command line, its answer (a new reference; exits on a refusal). */
static json_t *command(FILE *c, const char *line)
{
    static char buf[8 << 20];
    fprintf(c, "%s\n", line);
    fflush(c);
    if (fgets(buf, sizeof(buf), c) == NULL)
        die("control socket closed");
    json_t *reply = json_loads(buf, 0, NULL);
    if (!json_is_true(json_object_get(reply, "ok"))) {
        fprintf(stderr, "bench_scale: %s: %.300s\n", line, buf);
        exit(1);
    }
    return reply;
}

static long restarts; /* of every worker, at the last list */

static int count_running(FILE *c)
{
    restarts = 0;
    json_t *reply = command(c, "{\"id\":1,\"cmd\":\"list\"}");
    size_t i;
    json_t *p;
    int n = 0;
    json_array_foreach(json_object_get(reply, "result"), i, p)
    {
        const char *s = json_string_value(json_object_get(p, "state"));
        n += s != NULL && strcmp(s, "running") == 0;
        restarts += (long)json_integer_value(json_object_get(p, "restarts"));
    }
    json_decref(reply);
    return n;
}

/* µs from `t0` until n workers run (exits if they do not within 10 min). */
static double wait_all_running(FILE *c, int n, double t0)
{
    int seen = 0;
    while ((seen = count_running(c)) < n) {
        if (now_us() - t0 > 600e6) {
            fprintf(stderr, "bench_scale: only %d of %d workers running\n", seen, n);
            exit(1);
        }
        usleep(20000);
    }
    return now_us() - t0;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

/* p50 and p99 of `samples` round trips of `line`, in µs. */
static void latency(FILE *c, const char *line, int samples, double *p50, double *p99)
{
    double t[SAMPLES];
    for (int i = 0; i < samples; i++) {
        double t0 = now_us();
        json_decref(command(c, line));
        t[i] = now_us() - t0;
    }
    *p50 = percentile(t, samples, 0.5);
    *p99 = percentile(t, samples, 0.99);
}

/* SIGTERM to exit, in µs. */
static double graceful_stop(pid_t pid)
{
    double t0 = now_us();
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_scale: plugd ended with status %d\n", status);
        exit(1);
    }
    return now_us() - t0;
}

struct run {
    double ready_us, list_p50, list_p99, call_p50, call_p99, stop_us;
    long rss_kib;
    int fds;
    long restarts;
};

/* plugd on `state` (with `plugins`, or NULL: the registry alone) until n
 * workers run; measured, then stopped gracefully. */
static struct run measure(const char *state, const char *plugins, int n, const char *call)
{
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof(sock), "%s.sock", state);
    struct run r;
    double t0 = now_us();
    pid_t pid = start_plugd(state, plugins, sock);
    FILE *c = connect_control(sock);
    r.ready_us = wait_all_running(c, n, t0);
    r.restarts = restarts;
    usleep(500000); /* the last starts settle */
    r.rss_kib = rss_kib(pid);
    r.fds = fd_count(pid);
    latency(c, "{\"id\":2,\"cmd\":\"list\"}", n > 1 ? 50 : SAMPLES, &r.list_p50, &r.list_p99);
    latency(c, call, SAMPLES, &r.call_p50, &r.call_p99);
    fclose(c);
    r.stop_us = graceful_stop(pid);
    return r;
}

static void report(const char *bench, int n, const struct run *r)
{
    printf("{\"bench\":\"%s\",\"workers\":%d,\"all_ready_ms\":%.0f,\"plugd_rss_kib\":%ld,"
           "\"plugd_fds\":%d,\"list_p50_ms\":%.2f,\"list_p99_ms\":%.2f,\"call_p50_us\":%.0f,"
           "\"call_p99_us\":%.0f,\"graceful_stop_ms\":%.0f,\"restarts\":%ld}\n",
           bench, n, r->ready_us / 1e3, r->rss_kib, r->fds, r->list_p50 / 1e3, r->list_p99 / 1e3,
           r->call_p50, r->call_p99, r->stop_us / 1e3, r->restarts);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 1 || n > 1024) {
        fprintf(stderr, "usage: bench_scale [N]  (1 to 1024, default 1000)\n");
        return 2;
    }
    snprintf(root, sizeof(root), "/tmp/bench-scale-XXXXXX");
    if (mkdtemp(root) == NULL || chmod(root, 0711) < 0) /* the workers' user passes */
        die("mkdtemp");
    char plugins[PATH_MAX + 16], state[PATH_MAX + 16], one[PATH_MAX + 16], one_state[PATH_MAX + 16];
    snprintf(plugins, sizeof(plugins), "%s/plugins", root);
    snprintf(state, sizeof(state), "%s/state", root);
    snprintf(one, sizeof(one), "%s/one", root);
    snprintf(one_state, sizeof(one_state), "%s/one-state", root);
    make_plugins(one, 1);
    make_plugins(plugins, n);
    const char *call = "{\"id\":3,\"cmd\":\"call\",\"plugin\":\"hello0000\",\"method\":\"echo\","
                       "\"params\":[\"hi\"]}";

    struct run ref = measure(one_state, one, 1, call);
    report("scale_reference_one_worker", 1, &ref);
    struct run empty = measure(state, plugins, n, call);
    report("scale_from_empty_state", n, &empty);
    struct run again = measure(state, NULL, n, call);
    report("scale_from_registry", n, &again);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_scale: could not remove %s\n", root);
    return 0;
}
