/* bench_ipc: msgpack-rpc over a socketpair between two processes, beside a
 * raw socketpair moving the same bytes, in the same run.
 *
 *   raw_socketpair_rtt        write the encoded request, read it back (blocking)
 *   ipc_echo_rtt              ipc call "echo" [bin 32], one at a time
 *   raw_socketpair_pipelined  64 requests' bytes in flight
 *   ipc_pipelined             64 calls in flight
 *
 * Prints one JSON object per line. `--quick` runs a short smoke version. */
#include <errno.h>
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
#include "plugd/ipc.h"

#define IN_FLIGHT 64

static long rtt_samples = 200000;
static long pipelined_msgs = 1000000;
static long warmup = 5000;

static char payload[32];
static char request[64];
static size_t request_len;

struct latency {
    double p50, p99;
};

static struct latency percentiles(double *samples, long n)
{
    return (struct latency){percentile(samples, n, 0.5), percentile(samples, n, 0.99)};
}

/* The exact bytes of one ipc echo request, for the raw baseline. */
static void encode_request(void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_str_with_body(&pk, "echo", 4);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_bin_with_body(&pk, payload, sizeof(payload));
    memcpy(request, sb.data, sb.size);
    request_len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("bench: write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            perror("bench: read");
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

/* ---------------------------------------------------------------- servers */

static void raw_server(int fd)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        write_all(fd, buf, (size_t)n);
}

static void on_echo_request(struct ipc_conn *c, const struct ipc_message *msg, void *ud)
{
    (void)ud;
    ipc_conn_reply(c, msg->msgid, ipc_param(msg, 0), NULL);
}

static void on_server_close(struct ipc_conn *c, const struct plugd_error *why, void *ud)
{
    (void)c;
    (void)why;
    ev_break(ud, EVBREAK_ALL);
}

static void ipc_server(int fd)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ipc_handlers h = {.on_request = on_echo_request, .on_close = on_server_close};
    struct ipc_conn *c = ipc_conn_new(loop, fd, fd, NULL, &h, loop, NULL);
    ev_run(loop, 0);
    ipc_conn_free(c);
    ev_loop_destroy(loop);
}

/* Forks a server process on one end of a new socketpair; returns the other. */
static int start_server(void (*serve)(int fd), pid_t *pid)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("bench: socketpair");
        exit(1);
    }
    pid_t parent = getpid();
    *pid = fork();
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close(sv[0]);
        serve(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    return sv[0];
}

static void stop_server(int fd, pid_t pid)
{
    close(fd);
    waitpid(pid, NULL, 0);
}

/* ---------------------------------------------------------------- raw */

static struct latency raw_rtt(double *samples)
{
    pid_t pid;
    int fd = start_server(raw_server, &pid);
    char back[64];
    for (long i = -warmup; i < rtt_samples; i++) {
        double t0 = now_us();
        write_all(fd, request, request_len);
        read_all(fd, back, request_len);
        if (i >= 0)
            samples[i] = now_us() - t0;
    }
    stop_server(fd, pid);
    return percentiles(samples, rtt_samples);
}

static double raw_pipelined(void)
{
    pid_t pid;
    int fd = start_server(raw_server, &pid);
    static char burst[IN_FLIGHT * 64];
    for (int i = 0; i < IN_FLIGHT; i++)
        memcpy(burst + (size_t)i * request_len, request, request_len);
    double t0 = now_us();
    long sent = IN_FLIGHT, done = 0;
    size_t partial = 0;
    write_all(fd, burst, IN_FLIGHT * request_len);
    char buf[65536];
    while (done < pipelined_msgs) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) {
            perror("bench: read");
            exit(1);
        }
        partial += (size_t)n;
        long completed = (long)(partial / request_len);
        partial %= request_len;
        done += completed;
        long more = completed;
        if (more > pipelined_msgs - sent)
            more = pipelined_msgs - sent;
        if (more > 0) {
            write_all(fd, burst, (size_t)more * request_len);
            sent += more;
        }
    }
    double elapsed = now_us() - t0;
    stop_server(fd, pid);
    return (double)pipelined_msgs / (elapsed / 1e6);
}

/* ---------------------------------------------------------------- ipc */

struct ipc_run {
    struct ev_loop *loop;
    struct ipc_conn *conn;
    double *samples;
    long next_sample; /* counts from -warmup */
    long sent, done, target;
    double t0;
};

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud);

static void send_echo(struct ipc_run *r)
{
    msgpack_packer *pk = ipc_conn_begin_call(r->conn, "echo", 10.0, on_reply, r);
    msgpack_pack_array(pk, 1);
    msgpack_pack_bin_with_body(pk, payload, sizeof(payload));
    struct plugd_error err;
    if (ipc_conn_end(r->conn, &err) < 0) {
        fprintf(stderr, "bench: call: %s\n", err.message);
        exit(1);
    }
    r->sent++;
}

static void on_reply(struct ipc_conn *c, const struct plugd_error *err,
                     const msgpack_object *result, void *ud)
{
    (void)c;
    struct ipc_run *r = ud;
    if (err != NULL || result->type != MSGPACK_OBJECT_BIN) {
        fprintf(stderr, "bench: echo failed: %s\n", err ? err->message : "wrong result");
        exit(1);
    }
    r->done++;
    if (r->samples != NULL) { /* one at a time: time this one, start the next */
        double t = now_us();
        if (r->next_sample >= 0)
            r->samples[r->next_sample] = t - r->t0;
        r->next_sample++;
        if (r->next_sample < rtt_samples) {
            r->t0 = now_us();
            send_echo(r);
        }
    } else if (r->sent < r->target) {
        send_echo(r);
    }
    if (r->done >= r->target)
        ev_break(r->loop, EVBREAK_ALL);
}

static struct ipc_conn *connect_ipc(struct ev_loop *loop, pid_t *pid)
{
    int fd = start_server(ipc_server, pid);
    struct plugd_error err;
    struct ipc_conn *c = ipc_conn_new(loop, fd, fd, NULL, NULL, NULL, &err);
    if (c == NULL) {
        fprintf(stderr, "bench: %s\n", err.message);
        exit(1);
    }
    return c;
}

static struct latency ipc_rtt(double *samples)
{
    pid_t pid;
    struct ipc_run r = {.loop = ev_loop_new(EVFLAG_AUTO), .samples = samples};
    r.conn = connect_ipc(r.loop, &pid);
    r.next_sample = -warmup;
    r.target = warmup + rtt_samples;
    r.t0 = now_us();
    send_echo(&r);
    ev_run(r.loop, 0);
    ipc_conn_free(r.conn);
    ev_loop_destroy(r.loop);
    waitpid(pid, NULL, 0);
    return percentiles(samples, rtt_samples);
}

static double ipc_pipelined(void)
{
    pid_t pid;
    struct ipc_run r = {.loop = ev_loop_new(EVFLAG_AUTO), .target = pipelined_msgs};
    r.conn = connect_ipc(r.loop, &pid);
    double t0 = now_us();
    for (int i = 0; i < IN_FLIGHT; i++)
        send_echo(&r);
    ev_run(r.loop, 0);
    double elapsed = now_us() - t0;
    ipc_conn_free(r.conn);
    ev_loop_destroy(r.loop);
    waitpid(pid, NULL, 0);
    return (double)pipelined_msgs / (elapsed / 1e6);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
        rtt_samples = 5000;
        pipelined_msgs = 50000;
        warmup = 500;
    }
    memset(payload, 0xab, sizeof(payload));
    encode_request();
    double *samples = malloc(sizeof(double) * (size_t)rtt_samples);

    struct latency raw = raw_rtt(samples);
    struct latency ipc = ipc_rtt(samples);
    double raw_rate = raw_pipelined();
    double ipc_rate = ipc_pipelined();

    printf("{\"bench\":\"raw_socketpair_rtt\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"msgs_per_s\":%.0f,"
           "\"bytes\":%zu,\"samples\":%ld}\n",
           raw.p50, raw.p99, 1e6 / raw.p50, request_len, rtt_samples);
    printf("{\"bench\":\"ipc_echo_rtt\",\"p50_us\":%.2f,\"p99_us\":%.2f,\"msgs_per_s\":%.0f,"
           "\"baseline\":\"raw_socketpair_rtt\",\"baseline_p50_us\":%.2f,\"ratio\":%.2f}\n",
           ipc.p50, ipc.p99, 1e6 / ipc.p50, raw.p50, ipc.p50 / raw.p50);
    printf("{\"bench\":\"raw_socketpair_pipelined\",\"msgs_per_s\":%.0f,\"in_flight\":%d,"
           "\"messages\":%ld}\n",
           raw_rate, IN_FLIGHT, pipelined_msgs);
    printf("{\"bench\":\"ipc_pipelined\",\"msgs_per_s\":%.0f,\"in_flight\":%d,"
           "\"baseline\":\"raw_socketpair_pipelined\",\"baseline_msgs_per_s\":%.0f,"
           "\"ratio\":%.2f}\n",
           ipc_rate, IN_FLIGHT, raw_rate, ipc_rate / raw_rate);
    free(samples);
    return 0;
}
