/* Timing and percentiles shared by the benchmarks. */
#ifndef PLUGD_BENCH_UTIL_H
#define PLUGD_BENCH_UTIL_H

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-quantile (0..1) of n samples; sorts them. */
static inline double percentile(double *samples, long n, double p)
{
    qsort(samples, (size_t)n, sizeof(double), compare_doubles);
    return samples[(long)((double)(n - 1) * p)];
}

/* Puts `pid` (0: this process) on CPU `cpu` when the machine has two, so
 * that a raw baseline and what it is compared with run with the same
 * placement: round trips on this VM differ by ~40 % between same-core and
 * cross-core. */
static inline void pin(pid_t pid, int cpu)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(pid, sizeof(set), &set);
}

/* A raw echo server on a socketpair, on CPU `cpu` (< 0: anywhere); returns
 * the client end. The reference every round-trip figure is set beside. */
static inline int start_raw_echo(pid_t *pid, int cpu)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        exit(1);
    *pid = fork();
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (cpu >= 0)
            pin(0, cpu);
        close(sv[0]);
        char buf[256];
        ssize_t n;
        while ((n = read(sv[1], buf, sizeof(buf))) > 0)
            if (write(sv[1], buf, (size_t)n) != n)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    return sv[0];
}

/* One raw round trip of `bytes` (at most 256) through the echo server, in µs. */
static inline double raw_round_trip(int fd, size_t bytes)
{
    char buf[256] = {0};
    double t0 = now_us();
    if (write(fd, buf, bytes) != (ssize_t)bytes)
        exit(1);
    for (size_t got = 0; got < bytes;) {
        ssize_t r = read(fd, buf, bytes - got);
        if (r <= 0)
            exit(1);
        got += (size_t)r;
    }
    return now_us() - t0;
}

#endif
