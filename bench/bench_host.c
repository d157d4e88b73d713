/* bench_host: plugd as a host application and an operator see it — a real
 * plugd process spawned with libplugd-host, real workers, real sockets. Each
 * figure beside its reference from the same run:
 *
 *   host_echo_rtt      host → plugd → hello "echo" [bin 32] round trip,
 *                      beside the direct plugd → worker call (the worker
 *                      manager in this process) and a raw socketpair
 *                      ping-pong, in 10 interleaved rounds
 *   control_requests   "status" requests/s over the control socket (JSON
 *                      lines, 32 in flight), beside the same command over the
 *                      host channel (msgpack)
 *   control_fanout     events/s and p50/p99 delivery latency to 10
 *                      control-socket subscribers, beside 1 subscriber
 *
 * Prints one JSON object per line. `--quick` for a short smoke run. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <plugd/host.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "logs.h"
#include "manifest.h"
#include "worker.h"

#define IN_FLIGHT 32

static struct ev_loop *loop;
static struct plugd_host *host;
static char dir[] = "/tmp/plugd-bench-host.XXXXXX";
static char socket_path[100]; /* fits sun_path */
static int rtt_samples = 20000, control_requests = 100000, fanout_events = 50000;
static char payload[32];

/* ------------------------------------------------------------ plugd */

static void add_plugin(const char *example, const char *name, const char *manifest_extra)
{
    char path[PATH_MAX * 2], src[PATH_MAX];
    snprintf(path, sizeof(path), "%s/plugins/%s", dir, name);
    mkdir(path, 0755);
    snprintf(src, sizeof(src), "%s/%s/%s", EXAMPLES_DIR, example, example);
    snprintf(path, sizeof(path), "%s/plugins/%s/%s", dir, name, example);
    if (symlink(src, path) < 0)
        exit(1);
    snprintf(path, sizeof(path), "%s/plugins/%s/plugin.json", dir, name);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"name\": \"%s\", \"version\": \"1.0.0\", \"entrypoint\": \"%s\", \"protocol\": 1,"
            " \"limits\": {\"health_interval_ms\": 3600000}%s}",
            name, example, manifest_extra);
    fclose(f);
}

struct answer {
    bool is_done;
    bool is_ok;
    char text[512];
};

static void on_answer(struct plugd_host *h, const struct plugd_error *err,
                      const msgpack_object *result, void *ud)
{
    (void)h;
    struct answer *a = ud;
    a->is_done = true;
    a->is_ok = err == NULL;
    if (err != NULL)
        snprintf(a->text, sizeof(a->text), "%s", err->message);
    else
        msgpack_object_print_buffer(a->text, sizeof(a->text), *result);
}

static void finish(struct answer *a)
{
    struct plugd_error err;
    if (plugd_host_end(host, &err) < 0 || !plugd_host_run_until(host, &a->is_done, 30.0) ||
        !a->is_ok) {
        fprintf(stderr, "bench: plugd: %s\n", a->is_done ? a->text : "no answer");
        exit(1);
    }
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* status {plugin}: false when plugd refused it (plugin_not_found while the
 * plugins folder has not been installed yet). */
static bool status_of(const char *plugin, struct answer *a)
{
    *a = (struct answer){0};
    msgpack_packer *pk = plugd_host_begin(host, "status", on_answer, a);
    msgpack_pack_map(pk, 1);
    pack_str(pk, "plugin");
    pack_str(pk, plugin);
    struct plugd_error err;
    if (plugd_host_end(host, &err) < 0 || !plugd_host_run_until(host, &a->is_done, 30.0)) {
        fprintf(stderr, "bench: plugd: no answer to status\n");
        exit(1);
    }
    return a->is_ok;
}

static void wait_running(const char *plugin)
{
    struct answer a;
    for (int i = 0; i < 500; i++) {
        /* plugd installs its plugins folder after the restored workers
         * have started: the plugin may not be known yet */
        if (status_of(plugin, &a) && strstr(a.text, "\"state\"=>\"running\"") != NULL)
            return;
        bool never = false;
        plugd_host_run_until(host, &never, 0.02);
    }
    fprintf(stderr, "bench: %s never ran\n", plugin);
    exit(1);
}

static void start_plugd(void)
{
    char plugd[PATH_MAX], plugins[PATH_MAX], state[PATH_MAX];
    /* PLUGD_BENCH_PLUGD: another build's plugd, for an A/B of the daemon
     * with this same client (bench/ab.sh) */
    const char *other = getenv("PLUGD_BENCH_PLUGD");
    snprintf(plugd, sizeof(plugd), "%s", other && *other ? other : PLUGD_EXE);
    snprintf(plugins, sizeof(plugins), "%s/plugins", dir);
    snprintf(state, sizeof(state), "%s/state", dir);
    snprintf(socket_path, sizeof(socket_path), "%s/state/plugd.sock", dir);
    mkdir(plugins, 0755);
    add_plugin("hello", "hello", "");
    add_plugin("crashy", "flood", ", \"capabilities\": [\"events.emit\"]");
    struct plugd_host_options o = {
        .plugd = plugd, .state_dir = state, .plugins_dir = plugins, .log_file = "/dev/null"};
    struct plugd_error err;
    if ((host = plugd_host_spawn(loop, &o, &err)) == NULL) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    wait_running("hello");
    wait_running("flood");
}

/* ------------------------------------------------------------ round trips */

struct rtt {
    double t0;
    bool is_done;
};

static void on_host_echo(struct plugd_host *h, const struct plugd_error *err,
                         const msgpack_object *result, void *ud)
{
    (void)h;
    (void)result;
    if (err != NULL) {
        fprintf(stderr, "bench: echo: %s\n", err->message);
        exit(1);
    }
    ((struct rtt *)ud)->is_done = true;
}

static double host_round_trip(void)
{
    struct rtt r = {.t0 = now_us()};
    msgpack_packer *pk = plugd_host_begin_call(host, "hello", "echo", 1, on_host_echo, &r);
    msgpack_pack_bin_with_body(pk, payload, sizeof(payload));
    plugd_host_end(host, NULL);
    while (!r.is_done)
        ev_run(loop, EVRUN_ONCE);
    return now_us() - r.t0;
}

static void on_direct_echo(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    (void)result;
    if (err != NULL) {
        fprintf(stderr, "bench: direct echo: %s\n", err->message);
        exit(1);
    }
    ((struct rtt *)ud)->is_done = true;
}

static double direct_round_trip(struct worker *w, const msgpack_object *params)
{
    struct rtt r = {.t0 = now_us()};
    worker_call(w, "echo", params, 10.0, on_direct_echo, &r);
    while (!r.is_done)
        ev_run(loop, EVRUN_ONCE);
    return now_us() - r.t0;
}

static void on_direct_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)w;
    (void)from;
    (void)ud;
}

static struct worker *start_direct_hello(void)
{
    struct plugd_error err;
    struct manifest *m = manifest_load(EXAMPLES_DIR "/hello", &err);
    if (m == NULL) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    m->limits.health_interval = 3600;
    struct worker *w = worker_new(loop, m, on_direct_state, NULL);
    if (worker_start(w, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    while (w->state != WK_RUNNING)
        ev_run(loop, EVRUN_ONCE);
    return w;
}

static void bench_rtt(void)
{
    struct worker *w = start_direct_hello();
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN, .via.bin = {sizeof(payload), payload}};
    msgpack_object params = {.type = MSGPACK_OBJECT_ARRAY, .via.array = {1, &bin}};
    pid_t raw_pid;
    int raw_fd = start_raw_echo(&raw_pid, -1);
    double *host_s = calloc((size_t)rtt_samples, sizeof(double));
    double *direct_s = calloc((size_t)rtt_samples, sizeof(double));
    double *raw_s = calloc((size_t)rtt_samples, sizeof(double));
    int per_round = rtt_samples / 10;
    for (int round = 0; round < 10; round++) {
        for (int i = round * per_round; i < (round + 1) * per_round; i++)
            raw_s[i] = raw_round_trip(raw_fd, 43);
        for (int i = round * per_round; i < (round + 1) * per_round; i++)
            direct_s[i] = direct_round_trip(w, &params);
        for (int i = round * per_round; i < (round + 1) * per_round; i++)
            host_s[i] = host_round_trip();
    }
    int n = per_round * 10;
    double host_p50 = percentile(host_s, n, 0.5), host_p99 = percentile(host_s, n, 0.99);
    double direct_p50 = percentile(direct_s, n, 0.5), direct_p99 = percentile(direct_s, n, 0.99);
    double raw_p50 = percentile(raw_s, n, 0.5), raw_p99 = percentile(raw_s, n, 0.99);
    printf("{\"bench\":\"host_echo_rtt\",\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"direct_p50_us\":%.2f,\"direct_p99_us\":%.2f,"
           "\"baseline\":\"raw_socketpair_rtt\",\"baseline_p50_us\":%.2f,\"baseline_p99_us\":%.2f,"
           "\"ratio_to_raw\":%.2f,\"ratio_to_direct\":%.2f}\n",
           host_p50, host_p99, direct_p50, direct_p99, raw_p50, raw_p99, host_p50 / raw_p50,
           host_p50 / direct_p50);
    fflush(stdout);
    close(raw_fd);
    waitpid(raw_pid, NULL, 0);
    free(host_s);
    free(direct_s);
    free(raw_s);
    worker_stop(w);
    while (w->state != WK_STOPPED)
        ev_run(loop, EVRUN_ONCE);
    worker_free(w);
}

/* ------------------------------------------------------------ control socket */

static int connect_control(void)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "bench: control socket: %s\n", strerror(errno));
        exit(1);
    }
    return fd;
}

/* Lines received from `fd` into buf; returns how many complete lines. */
static long count_lines(int fd, char *buf, size_t size, size_t *kept)
{
    ssize_t n = read(fd, buf + *kept, size - *kept);
    if (n <= 0) {
        fprintf(stderr, "bench: control socket closed\n");
        exit(1);
    }
    long lines = 0;
    size_t end = *kept + (size_t)n, start = 0;
    for (size_t i = *kept; i < end; i++) {
        if (buf[i] == '\n') {
            lines++;
            start = i + 1;
        }
    }
    memmove(buf, buf + start, end - start);
    *kept = end - start;
    return lines;
}

/* `request` (one JSON line) IN_FLIGHT at a time on the control socket,
 * control_requests times: answers per second. */
static double control_requests_per_s(const char *request)
{
    int fd = connect_control();
    size_t size = strlen(request);
    static char buf[1 << 16];
    size_t kept = 0;
    long sent = 0, answered = 0;
    double t0 = now_us();
    while (answered < control_requests) {
        while (sent < control_requests && sent - answered < IN_FLIGHT) {
            if (write(fd, request, size) != (ssize_t)size)
                exit(1);
            sent++;
        }
        answered += count_lines(fd, buf, sizeof(buf), &kept);
    }
    double elapsed = (now_us() - t0) / 1e6;
    close(fd);
    return control_requests / elapsed;
}

struct host_batch {
    long answered;
};

static void on_host_status(struct plugd_host *h, const struct plugd_error *err,
                           const msgpack_object *result, void *ud)
{
    (void)h;
    (void)result;
    if (err != NULL)
        exit(1);
    ((struct host_batch *)ud)->answered++;
}

static double host_requests_per_s(void)
{
    struct host_batch b = {0};
    long sent = 0;
    double t0 = now_us();
    while (b.answered < control_requests) {
        while (sent < control_requests && sent - b.answered < IN_FLIGHT) {
            msgpack_packer *pk = plugd_host_begin(host, "status", on_host_status, &b);
            msgpack_pack_map(pk, 1);
            pack_str(pk, "plugin");
            pack_str(pk, "hello");
            plugd_host_end(host, NULL);
            sent++;
        }
        ev_run(loop, EVRUN_ONCE);
    }
    return control_requests / ((now_us() - t0) / 1e6);
}

static void bench_control_requests(void)
{
    double control = control_requests_per_s("{\"cmd\":\"status\",\"plugin\":\"hello\"}\n");
    double channel = host_requests_per_s();
    printf("{\"bench\":\"control_requests\",\"command\":\"status\",\"in_flight\":%d,"
           "\"requests_per_s\":%.0f,\"baseline\":\"host_channel_requests\","
           "\"baseline_requests_per_s\":%.0f,\"ratio\":%.2f}\n",
           IN_FLIGHT, control, channel, control / channel);
    /* the same path with an answer that is the same in every version: the
     * socket, the parse, the table's checks, the dispatch, the reply */
    double refused = control_requests_per_s("{\"cmd\":\"status\",\"plugin\":\"no-such-plugin\"}\n");
    printf("{\"bench\":\"control_requests\",\"command\":\"status_refused\",\"in_flight\":%d,"
           "\"requests_per_s\":%.0f,\"baseline\":\"host_channel_requests\","
           "\"baseline_requests_per_s\":%.0f,\"ratio\":%.2f}\n",
           IN_FLIGHT, refused, channel, refused / channel);
    fflush(stdout);
}

/* ------------------------------------------------------------ fan-out */

static double wall_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* A subscriber process: reads `expected` events, writes back
 * {received, p50_us, p99_us} of delivery latency (now - the event's time). */
static pid_t start_subscriber(long expected, int out)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = connect_control();
    static const char sub[] = "{\"cmd\":\"subscribe\",\"pattern\":\"plugin.flood.*\"}\n";
    if (write(fd, sub, sizeof(sub) - 1) != (ssize_t)sizeof(sub) - 1)
        _exit(1);
    double *latency = calloc((size_t)expected, sizeof(double));
    static char buf[1 << 17];
    size_t kept = 0;
    long received = 0;
    bool is_answered = false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (received < expected && poll(&p, 1, 10000) > 0) {
        ssize_t n = read(fd, buf + kept, sizeof(buf) - kept - 1);
        if (n <= 0)
            break;
        size_t end = kept + (size_t)n, start = 0;
        double now = wall_s();
        for (size_t i = kept; i < end; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = 0;
            const char *t = strstr(buf + start, "\"time\":");
            if (!is_answered && strstr(buf + start, "\"ok\":") != NULL)
                is_answered = true;
            else if (t != NULL && strstr(buf + start, "subscriber.overflow") == NULL &&
                     received < expected)
                latency[received++] = (now - strtod(t + 7, NULL)) * 1e6;
            start = i + 1;
        }
        memmove(buf, buf + start, end - start);
        kept = end - start;
    }
    double result[3] = {(double)received, received ? percentile(latency, received, 0.5) : 0,
                        received ? percentile(latency, received, 0.99) : 0};
    if (write(out, result, sizeof(result)) != sizeof(result))
        _exit(1);
    _exit(0);
}

static void emit_batch(int n)
{
    struct answer a = {0};
    msgpack_packer *pk = plugd_host_begin_call(host, "flood", "emit_many", 1, on_answer, &a);
    msgpack_pack_map(pk, 2);
    pack_str(pk, "n");
    msgpack_pack_int(pk, n);
    pack_str(pk, "size");
    msgpack_pack_int(pk, 16);
    finish(&a);
}

static void fanout(int subscribers)
{
    int results[2];
    if (pipe(results) < 0)
        exit(1);
    pid_t pids[16];
    for (int i = 0; i < subscribers; i++)
        pids[i] = start_subscriber(fanout_events, results[1]);
    bool never = false;
    plugd_host_run_until(host, &never, 0.3); /* let them subscribe */
    double t0 = now_us();
    for (long sent = 0; sent < fanout_events; sent += 500)
        emit_batch(500);
    double received = 0, p50 = 0, p99 = 0;
    for (int i = 0; i < subscribers; i++) {
        double r[3];
        if (read(results[0], r, sizeof(r)) != sizeof(r))
            exit(1);
        received += r[0];
        p50 = r[1] > p50 ? r[1] : p50; /* the slowest subscriber's */
        p99 = r[2] > p99 ? r[2] : p99;
    }
    double elapsed = (now_us() - t0) / 1e6;
    for (int i = 0; i < subscribers; i++)
        waitpid(pids[i], NULL, 0);
    close(results[0]);
    close(results[1]);
    printf("{\"bench\":\"control_fanout\",\"subscribers\":%d,\"events\":%d,\"events_per_s\":%.0f,"
           "\"deliveries_per_s\":%.0f,\"lost\":%.0f,\"delivery_p50_us\":%.0f,"
           "\"delivery_p99_us\":%.0f}\n",
           subscribers, fanout_events, fanout_events / elapsed, received / elapsed,
           (double)fanout_events * subscribers - received, p50, p99);
    fflush(stdout);
}

static void bench_fanout(void)
{
    fanout(1);
    fanout(10);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        rtt_samples = 500;
        control_requests = 2000;
        fanout_events = 2000;
    }
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL)
        return 1;
    FILE *devnull = fopen("/dev/null", "w");
    log_set_output(devnull);
    loop = ev_default_loop(EVFLAG_AUTO);
    start_plugd();
    bench_rtt();
    bench_control_requests();
    bench_fanout();
    int status = plugd_host_stop(host, 20.0);
    fclose(devnull);
    remove_tree(dir);
    return status == 0 ? 0 : 1;
}
