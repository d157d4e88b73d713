#include "logs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "jsonpack.h"

#define READ_PER_WAKE (64u << 10) /* bytes read from one pipe before yielding */

static FILE *log_out;

void log_set_output(FILE *out)
{
    log_out = out;
}

static json_t *now_iso8601(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%06ldZ", ts.tv_nsec / 1000);
    return json_string(buf);
}

/* The newest records, for `logs` (a ring of references). */
static json_t *recent[LOG_RECENT];
static uint64_t n_recent;
static struct {
    log_listener_fn fn;
    void *ud;
} listeners[LOG_LISTENERS];
static bool is_notifying; /* a listener that logs must not recurse */

int log_add_listener(log_listener_fn fn, void *ud)
{
    for (size_t i = 0; i < LOG_LISTENERS; i++) {
        if (listeners[i].fn == NULL) {
            listeners[i].fn = fn;
            listeners[i].ud = ud;
            return 0;
        }
    }
    return -1;
}

void log_remove_listener(log_listener_fn fn, void *ud)
{
    for (size_t i = 0; i < LOG_LISTENERS; i++)
        if (listeners[i].fn == fn && listeners[i].ud == ud)
            listeners[i].fn = NULL;
}

size_t log_recent(const json_t **out, size_t max)
{
    size_t kept = n_recent < LOG_RECENT ? (size_t)n_recent : LOG_RECENT;
    size_t n = kept < max ? kept : max;
    for (size_t i = 0; i < n; i++)
        out[i] = recent[(n_recent - n + i) % LOG_RECENT];
    return n;
}

void log_forget_recent(void)
{
    for (size_t i = 0; i < LOG_RECENT; i++) {
        json_decref(recent[i]);
        recent[i] = NULL;
    }
    n_recent = 0;
}

void log_record(json_t *rec)
{
    if (rec == NULL)
        return;
    if (json_object_get(rec, "time") == NULL)
        json_object_set_new(rec, "time", now_iso8601());
    FILE *out = log_out ? log_out : stderr;
    if (json_dumpf(rec, out, JSON_COMPACT | JSON_PRESERVE_ORDER) == 0)
        fputc('\n', out);
    fflush(out);
    size_t slot = n_recent++ % LOG_RECENT;
    json_decref(recent[slot]);
    recent[slot] = rec; /* the ring keeps the reference */
    if (is_notifying)
        return;
    is_notifying = true;
    for (size_t i = 0; i < LOG_LISTENERS; i++)
        if (listeners[i].fn != NULL)
            listeners[i].fn(rec, listeners[i].ud);
    is_notifying = false;
}

void log_plugd(const char *level, const char *plugin, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *rec = json_object();
    if (rec == NULL)
        return; /* out of memory: the line is lost, plugd goes on */
    json_object_set_new(rec, "time", now_iso8601());
    json_object_set_new(rec, "level", json_string(level));
    json_object_set_new(rec, "source", json_string("plugd"));
    if (plugin != NULL)
        json_object_set_new(rec, "plugin", json_string(plugin));
    json_object_set_new(rec, "message", jsonpack_string_lossy(msg, strlen(msg)));
    log_record(rec);
}

void log_tail_add(struct log_tail *t, const char *line, size_t len)
{
    if (len >= LOG_TAIL_WIDTH)
        len = LOG_TAIL_WIDTH - 1;
    memcpy(t->lines[t->next], line, len);
    t->lines[t->next][len] = '\0';
    t->next = (t->next + 1) % LOG_TAIL_LINES;
    if (t->count < LOG_TAIL_LINES)
        t->count++;
}

void log_tail_join(const struct log_tail *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < t->count && used < size; i++) {
        unsigned idx = (t->next + LOG_TAIL_LINES - t->count + i) % LOG_TAIL_LINES;
        int n = snprintf(buf + used, size - used, "%s%s", i ? " | " : "", t->lines[idx]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

/* Token bucket: true when one more line may be logged now. */
static bool budget_take(struct log_budget *b)
{
    ev_tstamp now = ev_time();
    if (b->refilled == 0)
        b->tokens = LOG_BURST;
    else
        b->tokens += (now - b->refilled) * LOG_RATE;
    if (b->tokens > LOG_BURST)
        b->tokens = LOG_BURST;
    b->refilled = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

static json_t *worker_record(const struct log_source *src, const char *stream, const char *level)
{
    json_t *rec = json_object();
    json_object_set_new(rec, "time", now_iso8601());
    json_object_set_new(rec, "level", json_string(level ? level : "info"));
    json_object_set_new(rec, "plugin", json_string(src->plugin));
    json_object_set_new(rec, "version", json_string(src->version));
    json_object_set_new(rec, "pid", json_integer(src->pid));
    json_object_set_new(rec, "stream", json_string(stream));
    return rec;
}

void log_worker_line(const struct log_source *src, struct log_budget *budget, struct log_tail *tail,
                     const char *stream, const char *level, const char *line, size_t len,
                     json_t *fields)
{
    if (tail != NULL)
        log_tail_add(tail, line, len);
    if (!budget_take(budget)) {
        budget->dropped++;
        budget->dropped_total++;
        json_decref(fields);
        return;
    }
    if (budget->dropped > 0) {
        json_t *note = worker_record(src, "plugd", "warn");
        /* jansson's setters refuse a NULL object; log_record drops it */
        json_object_set_new(note, "message", json_string("log lines dropped: over the rate limit"));
        json_object_set_new(note, "dropped", json_integer((json_int_t)budget->dropped));
        log_record(note);
        budget->dropped = 0;
    }
    json_t *rec = worker_record(src, stream, level);
    json_object_set_new(rec, "message", jsonpack_string_lossy(line, len));
    if (json_is_object(fields))
        json_object_set(rec, "fields", fields);
    json_decref(fields);
    log_record(rec);
}

/* Emits every complete line in the buffer; a full buffer is one line. */
static void emit_lines(struct log_stream *s, bool flush_partial)
{
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            log_worker_line(s->src, s->budget, s->tail, s->name, NULL, s->buf + start, i - start,
                            NULL);
            start = i + 1;
        }
    }
    size_t rest = s->len - start;
    if (rest > 0 && (flush_partial || (start == 0 && rest == sizeof(s->buf)))) {
        log_worker_line(s->src, s->budget, s->tail, s->name, NULL, s->buf + start, rest, NULL);
        rest = 0;
        start = s->len;
    }
    memmove(s->buf, s->buf + start, rest);
    s->len = rest;
}

/* Returns false once the pipe is at its end (or failed). */
static bool drain(struct log_stream *s, size_t limit)
{
    size_t total = 0;
    while (total < limit) {
        ssize_t n = read(s->io.fd, s->buf + s->len, sizeof(s->buf) - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        if (n == 0)
            return false;
        s->len += (size_t)n;
        total += (size_t)n;
        emit_lines(s, false);
    }
    return true;
}

static void close_stream(struct ev_loop *loop, struct log_stream *s)
{
    emit_lines(s, true);
    ev_io_stop(loop, &s->io);
    if (s->io.fd >= 0)
        close(s->io.fd);
    s->io.fd = -1;
}

static void on_log_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct log_stream *s = (struct log_stream *)w;
    if (!drain(s, READ_PER_WAKE))
        close_stream(loop, s);
}

void log_stream_start(struct ev_loop *loop, struct log_stream *s, int fd, const char *name,
                      const struct log_source *src, struct log_tail *tail,
                      struct log_budget *budget)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    s->name = name;
    s->src = src;
    s->tail = tail;
    s->budget = budget;
    s->len = 0;
    ev_io_init(&s->io, on_log_readable, fd, EV_READ);
    ev_io_start(loop, &s->io);
}

void log_stream_stop(struct ev_loop *loop, struct log_stream *s)
{
    if (s->io.fd < 0)
        return;
    drain(s, 1u << 20);
    close_stream(loop, s);
}
