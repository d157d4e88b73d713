/* bench_supervisor: the worker manager of plugd (supervisor/worker*.c, in
 * this process) with real hello workers, each figure beside its reference
 * from the same run:
 *
 *   spawn_to_ready        worker_start → running (handshake + initialize), 200 times
 *                         without the sandbox, beside fork + exec + exit of a trivial
 *                         static child
 *   spawn_to_ready_sandboxed  the same with the full sandbox (plugd's default),
 *                         beside spawn_to_ready of the same run (interleaved)
 *   spawn_to_ready_sandboxed_without_view  every layer but mount_namespace,
 *                         interleaved too: what the view alone adds
 *   crash_to_ready        SIGKILL of a running worker → running again (first
 *                         restart), with and without the sandbox
 *   worker_echo_rtt       plugd → worker call "echo" [bin 32], beside a raw socketpair ping-pong
 *   worker_pipelined      64 calls in flight
 *   rss                   plugd's RSS growth with 100 workers; a hello worker's RSS
 *
 * Prints one JSON object per line. `--quick` for a short smoke run. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "logs.h"
#include "manifest.h"
#include "package.h"
#include "worker.h"

#define IN_FLIGHT 64

static struct ev_loop *loop;
static struct sb_system sandboxed, unconfined; /* --sandbox on, --sandbox off */
static struct sb_system without_view;          /* every layer but mount_namespace */
static char state_dir[] = "/tmp/bench-supervisor.XXXXXX";
static int spawn_runs = 200, rtt_samples = 20000, pipelined_calls = 200000, rss_workers = 100;
static char payload[32];

static double pct(double *v, int n, double p)
{
    return percentile(v, n, p);
}

/* ------------------------------------------------------------- workers */

static void on_state(struct worker *w, enum wk_state from, void *ud)
{
    (void)w;
    (void)from;
    (void)ud;
    ev_break(loop, EVBREAK_ONE);
}

/* hello as plugd installs it, into the state folder (the workers' view
 * holds only packages of the state) */
static char hello_dir[PATH_MAX];

static void install_hello(void)
{
    struct plugd_error err;
    char digest[PKG_DIGEST_HEX];
    struct manifest *m = manifest_load(EXAMPLES_DIR "/hello", &err);
    if (m == NULL || pkg_digest(m, digest, &err) < 0 ||
        pkg_store(state_dir, m, digest, hello_dir, sizeof(hello_dir), &err) < 0) {
        fprintf(stderr, "bench: cannot install hello: %s\n", err.message);
        exit(1);
    }
    manifest_free(m);
}

static struct worker *new_hello_in(const struct sb_system *sandbox)
{
    struct plugd_error err;
    struct manifest *m = manifest_load(hello_dir, &err);
    if (m == NULL) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    m->limits.health_interval = 3600; /* keep health checks out of the figures */
    m->limits.crash_loop_restarts = 1000;
    struct worker *w = worker_new(loop, m, on_state, NULL);
    w->confine.system = sandbox;
    w->confine.state_dir = state_dir;
    return w;
}

static struct worker *new_hello(void)
{
    return new_hello_in(&unconfined);
}

/* Runs the loop until `w` reaches `state` (at most 10 s). */
static void wait_state(struct worker *w, enum wk_state state)
{
    double until = now_us() + 10e6;
    while (w->state != state && now_us() < until)
        ev_run(loop, EVRUN_ONCE);
    if (w->state != state) {
        fprintf(stderr, "bench: worker stuck in %s\n", worker_state_name(w->state));
        exit(1);
    }
}

static void start(struct worker *w)
{
    struct plugd_error err;
    if (worker_start(w, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
}

static void stop(struct worker *w)
{
    w->m->limits.drain_timeout = 1;
    worker_stop(w);
    wait_state(w, WK_STOPPED);
}

/* ------------------------------------------------------------- spawn */

static double bare_spawn_us(const char *exe)
{
    double t0 = now_us();
    pid_t pid = fork();
    if (pid == 0) {
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return now_us() - t0;
}

static double spawn_to_ready_us(const struct sb_system *sandbox)
{
    struct worker *w = new_hello_in(sandbox);
    double t0 = now_us();
    start(w);
    wait_state(w, WK_RUNNING);
    double t = now_us() - t0;
    if (sandbox == &sandboxed && w->confine.report.active == 0) {
        fprintf(stderr, "bench: the sandboxed worker has no layer\n");
        exit(1);
    }
    for (int l = 0; sandbox == &sandboxed && l < SB_LAYER_COUNT; l++)
        if (w->confine.report.refused & (1u << l))
            fprintf(stderr, "bench: layer %s refused: %s\n", sb_layer_name(l),
                    w->confine.report.reason[l]);
    stop(w);
    worker_free(w);
    return t;
}

static void bench_spawn(void)
{
    double *ready = calloc((size_t)spawn_runs, sizeof(double));
    double *confined = calloc((size_t)spawn_runs, sizeof(double));
    double *bare = calloc((size_t)spawn_runs, sizeof(double));
    double *viewless = calloc((size_t)spawn_runs, sizeof(double));
    for (int i = 0; i < spawn_runs; i++) {
        bare[i] = bare_spawn_us(TRIVIAL_EXE);
        ready[i] = spawn_to_ready_us(&unconfined);
        confined[i] = spawn_to_ready_us(&sandboxed);
        viewless[i] = spawn_to_ready_us(&without_view);
    }
    double ready_p50 = pct(ready, spawn_runs, 0.5), bare_p50 = pct(bare, spawn_runs, 0.5);
    double confined_p50 = pct(confined, spawn_runs, 0.5);
    printf("{\"bench\":\"spawn_to_ready\",\"median_us\":%.0f,\"p99_us\":%.0f,\"runs\":%d,"
           "\"baseline\":\"fork_exec_static_child\",\"baseline_median_us\":%.0f,"
           "\"baseline_p99_us\":%.0f,\"ratio\":%.2f}\n",
           ready_p50, pct(ready, spawn_runs, 0.99), spawn_runs, bare_p50,
           pct(bare, spawn_runs, 0.99), ready_p50 / bare_p50);
    printf("{\"bench\":\"spawn_to_ready_sandboxed\",\"median_us\":%.0f,\"p99_us\":%.0f,"
           "\"runs\":%d,\"baseline\":\"spawn_to_ready_without_sandbox\","
           "\"baseline_median_us\":%.0f,\"extra_median_us\":%.0f,\"target_extra_us\":3000}\n",
           confined_p50, pct(confined, spawn_runs, 0.99), spawn_runs, ready_p50,
           confined_p50 - ready_p50);
    double viewless_p50 = pct(viewless, spawn_runs, 0.5);
    printf("{\"bench\":\"spawn_to_ready_sandboxed_without_view\",\"median_us\":%.0f,"
           "\"p99_us\":%.0f,\"runs\":%d,\"mount_namespace_extra_median_us\":%.0f}\n",
           viewless_p50, pct(viewless, spawn_runs, 0.99), spawn_runs, confined_p50 - viewless_p50);
    free(viewless);
    free(ready);
    free(confined);
    free(bare);
}

static void bench_crash(const struct sb_system *sandbox, const char *name)
{
    int runs = spawn_runs / 4;
    double *t = calloc((size_t)runs, sizeof(double));
    for (int i = 0; i < runs; i++) {
        struct worker *w = new_hello_in(sandbox);
        start(w);
        wait_state(w, WK_RUNNING);
        double t0 = now_us();
        kill(w->pid, SIGKILL);
        while (w->restarts == 0 || w->state != WK_RUNNING)
            ev_run(loop, EVRUN_ONCE);
        t[i] = now_us() - t0;
        stop(w);
        worker_free(w);
    }
    printf("{\"bench\":\"%s\",\"median_us\":%.0f,\"p99_us\":%.0f,\"runs\":%d,"
           "\"target_us\":5000}\n",
           name, pct(t, runs, 0.5), pct(t, runs, 0.99), runs);
    free(t);
}

/* ------------------------------------------------------------- calls */

struct calls {
    struct worker *w;
    msgpack_object params;
    int sent, done, target;
    bool is_pipelined;
    double t0;
    double *samples;
};

static void send_echo(struct calls *c);

static void on_echo(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    struct calls *c = ud;
    if (err != NULL || result->type != MSGPACK_OBJECT_BIN) {
        fprintf(stderr, "bench: echo failed: %s\n", err ? err->message : "wrong result");
        exit(1);
    }
    if (!c->is_pipelined)
        c->samples[c->done] = now_us() - c->t0;
    c->done++;
    if (c->sent < c->target)
        send_echo(c);
    if (c->done == c->target)
        ev_break(loop, EVBREAK_ONE);
}

static void send_echo(struct calls *c)
{
    c->sent++;
    c->t0 = now_us();
    worker_call(c->w, "echo", &c->params, 10.0, on_echo, c);
}

/* `n` raw round trips of `bytes` into samples. */
static void raw_round_trips(int fd, size_t bytes, double *samples, int n)
{
    for (int i = 0; i < n; i++)
        samples[i] = raw_round_trip(fd, bytes);
}

static void unpin(void)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < CPU_SETSIZE; i++)
        CPU_SET(i, &all);
    sched_setaffinity(0, sizeof(all), &all);
}

/* Echo round trips with plugd on CPU 0 and its peer (the raw echo server,
 * then the worker) on `peer_cpu`, in 10 interleaved rounds so that both see
 * the same machine conditions. */
static void echo_rtt(struct calls *c, int peer_cpu, const char *placement)
{
    double *raw = calloc((size_t)rtt_samples, sizeof(double));
    pid_t raw_pid;
    int raw_fd = start_raw_echo(&raw_pid, peer_cpu);
    pin(0, 0);
    pin(c->w->pid, peer_cpu);
    int per_round = rtt_samples / 10;
    c->sent = c->done = c->target = 0;
    for (int round = 0; round < 10; round++) {
        raw_round_trips(raw_fd, 43, raw + round * per_round, per_round); /* bench_ipc's 43 bytes */
        c->target += per_round;
        send_echo(c);
        ev_run(loop, 0);
    }
    close(raw_fd);
    waitpid(raw_pid, NULL, 0);
    unpin();
    int n = per_round * 10;
    double p50 = pct(c->samples, n, 0.5), raw_p50 = pct(raw, n, 0.5);
    printf("{\"bench\":\"worker_echo_rtt\",\"placement\":\"%s\",\"p50_us\":%.2f,"
           "\"p99_us\":%.2f,\"baseline\":\"raw_socketpair_rtt\",\"baseline_p50_us\":%.2f,"
           "\"baseline_p99_us\":%.2f,\"ratio\":%.2f}\n",
           placement, p50, pct(c->samples, n, 0.99), raw_p50, pct(raw, n, 0.99), p50 / raw_p50);
    free(raw);
}

static void bench_calls(void)
{
    struct worker *w = new_hello();
    start(w);
    wait_state(w, WK_RUNNING);
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN, .via.bin = {32, payload}};
    struct calls c = {.w = w};
    c.params = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = {1, &bin}};
    c.samples = calloc((size_t)rtt_samples, sizeof(double));
    echo_rtt(&c, 1, "cross_core");
    echo_rtt(&c, 0, "same_core");

    struct calls p = c;
    p.sent = p.done = 0;
    p.target = pipelined_calls;
    p.is_pipelined = true;
    double t0 = now_us();
    for (int i = 0; i < IN_FLIGHT; i++)
        send_echo(&p);
    ev_run(loop, 0);
    printf("{\"bench\":\"worker_pipelined\",\"calls_per_s\":%.0f,\"in_flight\":%d}\n",
           pipelined_calls / ((now_us() - t0) / 1e6), IN_FLIGHT);
    free(c.samples);
    stop(w);
    worker_free(w);
}

/* ------------------------------------------------------------- memory */

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

static void bench_rss(void)
{
    long before = rss_kib(getpid());
    struct worker **ws = calloc((size_t)rss_workers, sizeof(*ws));
    for (int i = 0; i < rss_workers; i++) {
        ws[i] = new_hello();
        start(ws[i]);
    }
    for (int i = 0; i < rss_workers; i++)
        wait_state(ws[i], WK_RUNNING);
    long after = rss_kib(getpid());
    double *worker_rss = calloc((size_t)rss_workers, sizeof(double));
    for (int i = 0; i < rss_workers; i++)
        worker_rss[i] = (double)rss_kib(ws[i]->pid);
    printf("{\"bench\":\"rss\",\"workers\":%d,\"plugd_rss_kib\":%ld,\"plugd_growth_kib\":%ld,"
           "\"hello_worker_rss_median_kib\":%.0f,\"target_worker_kib\":2048}\n",
           rss_workers, after, after - before, pct(worker_rss, rss_workers, 0.5));
    for (int i = 0; i < rss_workers; i++)
        worker_stop(ws[i]);
    for (int i = 0; i < rss_workers; i++) {
        wait_state(ws[i], WK_STOPPED);
        worker_free(ws[i]);
    }
    free(ws);
    free(worker_rss);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        spawn_runs = 20;
        rtt_samples = 1000;
        pipelined_calls = 10000;
        rss_workers = 10;
    }
    signal(SIGPIPE, SIG_IGN);
    FILE *devnull = fopen("/dev/null", "w");
    log_set_output(devnull);
    loop = ev_default_loop(0);
    memset(payload, 0xab, sizeof(payload));
    if (mkdtemp(state_dir) == NULL) {
        perror("bench: mkdtemp");
        return 1;
    }
    sb_system_init(&sandboxed, SB_MODE_ON, NULL);
    sb_system_init(&unconfined, SB_MODE_OFF, NULL);
    sb_system_init(&without_view, SB_MODE_ON, NULL);
    install_hello();
    confine_open_state(&sandboxed, state_dir); /* as plugd: for the workers' user */
    confine_open_state(&without_view, state_dir);
    sb_view_make(&sandboxed, state_dir);
    bench_spawn();
    bench_crash(&unconfined, "crash_to_ready");
    bench_crash(&sandboxed, "crash_to_ready_sandboxed");
    bench_calls();
    bench_rss();
    sb_system_fini(&sandboxed);
    sb_system_fini(&without_view);
    remove_tree(state_dir);
    fclose(devnull);
    return 0;
}
