/* plugd's log: one JSON record per line (time, level, plugin, message, ...),
 * and the capture of each worker's stdout and stderr into it. */
#ifndef PLUGD_LOGS_H
#define PLUGD_LOGS_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define LOG_LINE_MAX   4096 /* longer lines are split into pieces this long */
#define LOG_TAIL_LINES 10   /* lines kept per worker for crash reasons */
#define LOG_TAIL_WIDTH 240
#define LOG_RATE       2000.0 /* lines per second a worker may log ... */
#define LOG_BURST      4000.0 /* ... with bursts up to this many */
#define LOG_RECENT     1000   /* records kept in memory for the `logs` command */
#define LOG_LISTENERS  64     /* streams following the log (stream.c), every transport's */

/* Where records go (stderr by default). The stream stays the caller's. */
void log_set_output(FILE *out);

/* Hears every record right after it is written (stream.c, for `logs
 * --follow`); a record logged by a listener reaches no listener. A listener
 * may remove itself or another while it runs. At most LOG_LISTENERS; -1
 * when full. */
typedef void (*log_listener_fn)(const json_t *rec, void *ud);
int log_add_listener(log_listener_fn fn, void *ud);
void log_remove_listener(log_listener_fn fn, void *ud);

/* The newest records, oldest first, at most `max` (borrowed references). */
size_t log_recent(const json_t **out, size_t max);
/* Drops the kept records (at exit, for leak checkers). */
void log_forget_recent(void);

/* Writes `rec` (adds "time" when missing) and takes ownership of it. */
void log_record(json_t *rec);

/* A record from plugd itself: level "info"/"warn"/"error", plugin may be NULL. */
void log_plugd(const char *level, const char *plugin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Identity stamped on every record of one worker. */
struct log_source {
    const char *plugin;
    const char *version;
    int pid;
};

/* The last lines of one worker, kept for the reason of a crash. */
struct log_tail {
    char lines[LOG_TAIL_LINES][LOG_TAIL_WIDTH];
    unsigned next;
    unsigned count;
};

void log_tail_add(struct log_tail *t, const char *line, size_t len);
/* The kept lines, oldest first, joined with " | " into buf. */
void log_tail_join(const struct log_tail *t, char *buf, size_t size);

/* Lines a worker may still write this second, shared by its streams. */
struct log_budget {
    double tokens;
    ev_tstamp refilled;
    uint64_t dropped; /* lines dropped since the last report */
    uint64_t dropped_total;
};

/* One captured pipe (a worker's stdout or stderr). */
struct log_stream {
    ev_io io;
    const char *name; /* "stdout" / "stderr" */
    const struct log_source *src;
    struct log_tail *tail;
    struct log_budget *budget;
    char buf[LOG_LINE_MAX];
    size_t len;
};

/* Starts reading `fd` (taken over: non-blocking, closed by log_stream_stop). */
void log_stream_start(struct ev_loop *loop, struct log_stream *s, int fd, const char *name,
                      const struct log_source *src, struct log_tail *tail,
                      struct log_budget *budget);

/* Reads what is left (the worker has exited), flushes a partial line, closes. */
void log_stream_stop(struct ev_loop *loop, struct log_stream *s);

/* Logs one line from a worker (SDK log calls come through here too), subject
 * to its budget. `level` may be NULL for raw stream lines; `fields` (taken
 * over, may be NULL) are added to the record. */
void log_worker_line(const struct log_source *src, struct log_budget *budget, struct log_tail *tail,
                     const char *stream, const char *level, const char *line, size_t len,
                     json_t *fields);

#endif
