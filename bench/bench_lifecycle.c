/* bench_lifecycle: plugd's lifecycle layer (supervisor/operations.c and daemon.c with their
 * SQLite registry and event bus, in this process) with real workers, each
 * figure beside its reference from the same run:
 *
 *   transitions           disable/enable of a running hello: operations per
 *                         second (the call: check, SQLite transaction with its
 *                         audit row, events, and starting the worker's stop or
 *                         spawn), full cycles (worker stopped and running again),
 *                         and the registry commit alone
 *   event_fanout          events published to 10 subscribers, each a channel to
 *                         another process: events/s delivered to all, and the
 *                         p50/p99 publish-to-receipt latency
 *   state_rtt             a worker's state.get / state.set round trip (through
 *                         crashy's call_host) beside the same call answering
 *                         at once in the worker (echo)
 *
 * Prints one JSON object per line. `--quick` for a short smoke run. */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "jsonpack.h"
#include "plugd.h"

#define SUBSCRIBERS 10

static struct ev_loop *loop;
static struct plugd d;
static int cycles = 300, fanout_events = 100000, rtt_samples = 5000;

/* Runs the loop until `done` returns true (or 30 s pass). */
static void run_until(bool (*done)(void *), void *ud)
{
    double until = now_us() + 30e6;
    while (!done(ud) && now_us() < until)
        ev_run(loop, EVRUN_ONCE);
    if (!done(ud)) {
        fprintf(stderr, "bench: timed out\n");
        exit(1);
    }
}

/* The worker of the plugin's serving instance, NULL when it has none. */
static struct worker *worker_of(const struct plugin *p)
{
    struct instance *i = plugin_serving_instance(p);
    return i ? i->w : NULL;
}

static bool is_running(void *ud)
{
    struct plugin *p = ud;
    return worker_of(p) != NULL && worker_of(p)->state == WK_RUNNING &&
           lc_serves_calls(p->row.status);
}

static bool is_stopped(void *ud)
{
    return plugin_is_stopped(ud);
}

static struct plugin *install(const char *example, const char *name, const char *caps)
{
    /* a package folder with the example's entrypoint and a manifest of our own */
    char dir[512], path[700];
    snprintf(dir, sizeof(dir), "%s/src-%s", d.state_dir, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%s", dir, example);
    char target[512];
    snprintf(target, sizeof(target), EXAMPLES_DIR "/%s/%s", example, example);
    symlink(target, path);
    snprintf(path, sizeof(path), "%s/plugin.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"name\": \"%s\", \"version\": \"1.0.0\", \"entrypoint\": \"%s\", \"protocol\": 1,"
            " \"capabilities\": [%s], \"limits\": {\"health_interval_ms\": 3600000}}",
            name, example, caps);
    fclose(f);
    struct plugd_error err;
    if (plugd_install(&d, dir, "bench", &err) < 0) {
        fprintf(stderr, "bench: install %s: %s\n", name, err.message);
        exit(1);
    }
    struct plugin *p = plugd_find(&d, name, strlen(name));
    run_until(is_running, p);
    return p;
}

/* ------------------------------------------------------------ transitions */

static void bench_transitions(void)
{
    struct plugin *p = install("hello", "hello", "");
    struct plugd_error err;
    double commit_us = 0, start = now_us();
    for (int i = 0; i < cycles; i++) {
        double t0 = now_us();
        plugd_disable(&d, "hello", "bench", "bench", &err);
        commit_us += now_us() - t0;
        run_until(is_stopped, p);
        t0 = now_us();
        plugd_enable(&d, "hello", "bench", &err);
        commit_us += now_us() - t0;
        run_until(is_running, p);
    }
    double total = now_us() - start;
    /* the registry alone: the same row and audit written again and again */
    struct reg_plugin row = {0};
    reg_plugin_copy(&row, &p->row);
    struct reg_audit a = {.actor = "bench", .action = "bench"};
    int commits = 20 * cycles;
    double t0 = now_us();
    for (int i = 0; i < commits; i++)
        reg_save_transition(d.reg, &row, LC_READY, &a, 0, &err);
    double registry_us = (now_us() - t0) / commits;
    reg_plugin_clear(&row);
    printf("{\"bench\":\"transitions\",\"transitions\":%d,\"operations_per_s\":%.0f,"
           "\"operation_mean_us\":%.1f,\"cycles_per_s\":%.1f,\"registry_commit_mean_us\":%.1f,"
           "\"registry_commits_per_s\":%.0f}\n",
           2 * cycles, 2 * cycles / (commit_us / 1e6), commit_us / (2 * cycles),
           cycles / (total / 1e6), registry_us, 1e6 / registry_us);
    fflush(stdout);
}

/* ------------------------------------------------------------ fan-out */

static struct ipc_conn *sub_conns[SUBSCRIBERS];

struct reader_result {
    double p50_us, p99_us;
    long received;
};

static struct {
    double *latency;
    long n, expected;
    bool is_done;
} reader;

static void on_reader_event(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)c;
    (void)ud;
    const msgpack_object *t = ipc_map_get(ipc_param(msg, 0), "time");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (t != NULL && t->type == MSGPACK_OBJECT_FLOAT64 && reader.n < reader.expected)
        reader.latency[reader.n++] = (now - t->via.f64) * 1e6;
    if (reader.n == reader.expected)
        reader.is_done = true;
}

/* A subscriber process: reads `expected` events from `fd`, writes its
 * latency percentiles to `out`. */
static void run_reader(int fd, int out, long expected)
{
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    reader.latency = malloc((size_t)expected * sizeof(double));
    reader.expected = expected;
    struct ipc_handlers h = {.on_notify = on_reader_event};
    struct ipc_conn *c = ipc_conn_new(l, fd, fd, NULL, &h, NULL, NULL);
    while (!reader.is_done && ipc_conn_is_open(c))
        ev_run(l, EVRUN_ONCE);
    struct reader_result r = {.received = reader.n};
    if (reader.n > 0) {
        r.p50_us = percentile(reader.latency, reader.n, 0.50);
        r.p99_us = percentile(reader.latency, reader.n, 0.99);
    }
    if (write(out, &r, sizeof(r)) != sizeof(r))
        _exit(1);
    _exit(0);
}

static void on_sub_drain(struct ipc_conn *c, void *ud)
{
    (void)c;
    stream_drain(ud);
}

/* Nothing waits in a subscriber queue or in a channel's output. */
static bool has_no_backlog(void *ud)
{
    (void)ud;
    struct ev_bus_stats st;
    ev_bus_stats(d.bus, &st);
    if (st.dropped_subscribers > 0) {
        fprintf(stderr, "bench: a subscriber was dropped\n");
        exit(1);
    }
    for (int i = 0; i < SUBSCRIBERS; i++)
        if (sub_conns[i] != NULL && ipc_conn_out_pending(sub_conns[i]) > 0)
            return false;
    return st.queued_now == 0;
}

static void bench_fanout(void)
{
    int results[2];
    if (pipe(results) < 0)
        exit(1);
    pid_t pids[SUBSCRIBERS];
    static struct stream streams[SUBSCRIBERS];
    for (int i = 0; i < SUBSCRIBERS; i++) {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        if ((pids[i] = fork()) == 0) {
            close(sv[0]);
            run_reader(sv[1], results[1], fanout_events);
        }
        close(sv[1]);
        struct ipc_handlers h = {.on_drain = on_sub_drain};
        sub_conns[i] = ipc_conn_new(loop, sv[0], sv[0], NULL, &h, NULL, NULL);
        stream_init(&streams[i], d.bus, &stream_ipc_sink, &sub_conns[i], "bench", NULL);
        ipc_conn_set_userdata(sub_conns[i], &streams[i]);
        struct stream_start at;
        stream_subscribe(&streams[i], "bench.*", NULL, -1, &at, NULL);
    }
    double start = now_us();
    for (long sent = 0; sent < fanout_events;) {
        /* publish a batch, then let the loop write while queues stay short */
        for (int k = 0; k < 64 && sent < fanout_events; k++, sent++)
            ev_bus_publish(d.bus, "bench.tick", NULL, json_pack("{s:I}", "i", (json_int_t)sent));
        ev_run(loop, EVRUN_NOWAIT);
        while (!has_no_backlog(NULL))
            ev_run(loop, EVRUN_ONCE);
    }
    run_until(has_no_backlog, NULL);
    struct reader_result r[SUBSCRIBERS];
    double worst_p50 = 0, worst_p99 = 0;
    long received = 0;
    for (int i = 0; i < SUBSCRIBERS; i++) {
        if (read(results[0], &r[i], sizeof(r[i])) != sizeof(r[i]))
            exit(1);
        received += r[i].received;
        worst_p50 = r[i].p50_us > worst_p50 ? r[i].p50_us : worst_p50;
        worst_p99 = r[i].p99_us > worst_p99 ? r[i].p99_us : worst_p99;
    }
    double secs = (now_us() - start) / 1e6;
    for (int i = 0; i < SUBSCRIBERS; i++) {
        waitpid(pids[i], NULL, 0);
        stream_close(&streams[i]);
        ipc_conn_free(sub_conns[i]);
        sub_conns[i] = NULL;
    }
    close(results[0]);
    close(results[1]);
    printf("{\"bench\":\"event_fanout\",\"subscribers\":%d,\"events\":%d,\"deliveries\":%ld,"
           "\"events_per_s\":%.0f,\"deliveries_per_s\":%.0f,\"latency_p50_us\":%.1f,"
           "\"latency_p99_us\":%.1f}\n",
           SUBSCRIBERS, fanout_events, received, fanout_events / secs, received / secs, worst_p50,
           worst_p99);
    fflush(stdout);
}

/* ------------------------------------------------------------ state */

struct call_result {
    bool done;
    bool is_ok;
    bool is_host_call; /* crashy's call_host answers the service's code, "ok" on success */
};

static void on_reply(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    struct call_result *r = ud;
    r->done = true;
    r->is_ok = err == NULL && (!r->is_host_call ||
                               (result->type == MSGPACK_OBJECT_STR &&
                                ipc_str_equals(result->via.str.ptr, result->via.str.size, "ok")));
}

static bool is_call_done(void *ud)
{
    return ((struct call_result *)ud)->done;
}

/* p50 and p99 of `n` calls of `method` with the params `params_json`. */
static void time_calls(struct worker *w, const char *method, const char *params_json, double *p50,
                       double *p99)
{
    json_t *params = json_loads(params_json, 0, NULL);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    jsonpack_pack(&pk, params);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object obj;
    msgpack_unpack(sb.data, sb.size, NULL, &zone, &obj);
    double *t = malloc((size_t)rtt_samples * sizeof(double));
    for (int i = 0; i < rtt_samples; i++) {
        struct call_result r = {.is_host_call = strcmp(method, "call_host") == 0};
        double t0 = now_us();
        worker_call(w, method, &obj, 5.0, on_reply, &r);
        run_until(is_call_done, &r);
        t[i] = now_us() - t0;
        if (!r.is_ok) {
            fprintf(stderr, "bench: %s %s failed\n", method, params_json);
            exit(1);
        }
    }
    *p50 = percentile(t, rtt_samples, 0.50);
    *p99 = percentile(t, rtt_samples, 0.99);
    free(t);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
    json_decref(params);
}

static void bench_state(void)
{
    struct plugin *p =
        install("crashy", "stateful", "\"plugin.state.read\", \"plugin.state.write\"");
    double echo50, echo99, get50, get99, set50, set99;
    time_calls(worker_of(p), "echo", "[\"0123456789abcdef0123456789abcdef\"]", &echo50, &echo99);
    time_calls(worker_of(p), "call_host",
               "[\"state.set\", {\"key\": \"k\", \"value\": \"0123456789abcdef0123456789abcdef\"}]",
               &set50, &set99);
    time_calls(worker_of(p), "call_host", "[\"state.get\", {\"key\": \"k\"}]", &get50, &get99);
    printf("{\"bench\":\"state_rtt\",\"get_p50_us\":%.1f,\"get_p99_us\":%.1f,\"set_p50_us\":%.1f,"
           "\"set_p99_us\":%.1f,\"baseline\":\"echo_rtt\",\"baseline_p50_us\":%.1f,"
           "\"baseline_p99_us\":%.1f,\"get_ratio\":%.2f,\"set_ratio\":%.2f}\n",
           get50, get99, set50, set99, echo50, echo99, get50 / echo50, set50 / echo50);
    fflush(stdout);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        cycles = 20;
        fanout_events = 5000;
        rtt_samples = 500;
    }
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/plugd-bench.XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    FILE *devnull = fopen("/dev/null", "w");
    log_set_output(devnull);
    loop = ev_default_loop(EVFLAG_AUTO);
    struct plugd_options o = {.state_dir = dir};
    struct plugd_error err;
    if (plugd_open(&d, loop, &o, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.message);
        return 1;
    }
    bench_transitions();
    bench_fanout();
    bench_state();
    plugd_stop_all(&d);
    ev_run(loop, 0);
    plugd_close(&d);
    fclose(devnull);
    remove_tree(dir);
    return 0;
}
