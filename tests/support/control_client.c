#include "control_client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void ctl_client_open(struct ctl_client *c, const struct harness *h)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/state/plugd.sock", h->dir);
    cr_assert_lt(strlen(path), sizeof(addr.sun_path), "socket path too long: %s", path);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    *c = (struct ctl_client){.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    cr_assert_geq(c->fd, 0, "socket: %s", strerror(errno));
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "connect %s: %s",
                 addr.sun_path, strerror(errno));
}

void ctl_client_close(struct ctl_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    *c = (struct ctl_client){.fd = -1};
}

void ctl_client_send(struct ctl_client *c, const char *line)
{
    size_t n = strlen(line);
    for (size_t off = 0; off < n;) {
        ssize_t w = send(c->fd, line + off, n - off, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        off += (size_t)w;
    }
    cr_assert_eq(send(c->fd, "\n", 1, MSG_NOSIGNAL), 1);
}

/* The next line (malloc'd, without its newline), or NULL. */
static char *read_line(struct ctl_client *c, double seconds)
{
    for (;;) {
        char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            char *line = strndup(c->buf, n);
            cr_assert_not_null(line);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return line;
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
            return NULL;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, c->cap);
            cr_assert_not_null(c->buf);
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
}

json_t *ctl_client_read(struct ctl_client *c, double seconds)
{
    char *line = read_line(c, seconds);
    if (line == NULL)
        return NULL;
    json_error_t jerr;
    json_t *msg = json_loads(line, 0, &jerr);
    cr_assert_not_null(msg, "plugd sent a line that is not JSON: %.200s (%s)", line, jerr.text);
    free(line);
    return msg;
}

json_t *ctl_client_answer(struct ctl_client *c)
{
    for (;;) {
        json_t *msg = ctl_client_read(c, 15.0);
        cr_assert_not_null(msg, "no answer from plugd");
        if (json_object_get(msg, "ok") != NULL)
            return msg;
        json_decref(msg);
    }
}

json_t *ctl_client_request(struct ctl_client *c, const char *line)
{
    ctl_client_send(c, line);
    return ctl_client_answer(c);
}

json_t *ctl_client_expect_ok(struct ctl_client *c, const char *line)
{
    json_t *answer = ctl_client_request(c, line);
    json_t *error = json_object_get(answer, "error");
    cr_assert(json_is_true(json_object_get(answer, "ok")), "%s refused: %s", line,
              json_string_value(json_object_get(error, "message")));
    json_t *result = json_incref(json_object_get(answer, "result"));
    json_decref(answer);
    return result;
}
