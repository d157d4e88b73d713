/* Timing and percentiles shared by the benchmarks. */
#ifndef PLUGD_BENCH_UTIL_H
#define PLUGD_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

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

#endif
