/* plugctl: the operator's command line for a running plugd, over its
 * control socket (JSON lines, docs/control.md). Tables for people, --json
 * for scripts. Exit codes: 0 ok, 1 plugd refused, 2 usage, 3 cannot reach
 * plugd. Its commands, their arguments, help and printed columns are the
 * rows of command_table.c, the table plugd dispatches by. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "command_table.h"

#define EXIT_REFUSED     1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3

/* plugctl's own command, not plugd's */
static const char help_synopsis[] = "help [COMMAND]", help_summary[] = "every command, or one";

static const char usage_tail[] =
    "Exit status: 0 ok, 1 plugd refused, 2 usage, 3 cannot reach plugd (or it\n"
    "closed a followed stream: events, logs -f).\n";

/* "[--socket PATH] [--json]" */
static void print_options_synopsis(FILE *out)
{
    for (const struct ct_option *o = ct_options; o->name != NULL; o++)
        fprintf(out, o->metavar ? "[--%s %s] " : "[--%s] ", o->name, o->metavar);
}

/* The whole usage, from the command table. */
static void print_usage(FILE *out)
{
    fputs("usage: plugctl ", out);
    print_options_synopsis(out);
    fputs("COMMAND [ARGS]\n\n", out);
    for (size_t i = 0; i < CT_COUNT; i++) {
        char synopsis[256];
        size_t n = ct_synopsis(&ct_commands[i], synopsis, sizeof(synopsis));
        if (n < 29) /* two spaces at least before the summary */
            fprintf(out, "  %-30s%s\n", synopsis, ct_commands[i].summary);
        else
            fprintf(out, "  %s\n  %-30s%s\n", synopsis, "", ct_commands[i].summary);
    }
    fprintf(out, "  %-30s%s\n\n", help_synopsis, help_summary);
    for (const struct ct_option *o = ct_options; o->name != NULL; o++) {
        char word[64];
        snprintf(word, sizeof(word), o->metavar ? "--%s %s" : "--%s", o->name, o->metavar);
        fprintf(out, "  %-30s%s\n", word, o->help);
    }
    fputc('\n', out);
    fputs(usage_tail, out);
}

struct options {
    const char *socket;
    bool is_json;
};

/* ------------------------------------------------------------ the socket */

static int connect_to(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "plugctl: socket path %s is too long\n", path);
        return -1;
    }
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "plugctl: cannot reach plugd at %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The request as one line. -1 when it could not be written (or, out of
 * memory, not even encoded). */
static int send_request(int fd, json_t *req)
{
    char *text = json_dumps(req, JSON_COMPACT);
    if (text == NULL)
        return -1;
    size_t n = strlen(text);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0 && write(fd, "\n", 1) != 1)
        rc = -1;
    free(text);
    return rc;
}

/* Reads one line (malloc'd, without its newline); NULL at EOF. */
static char *read_line(FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, in);
    if (n <= 0) {
        free(line);
        return NULL;
    }
    if (line[n - 1] == '\n')
        line[n - 1] = 0;
    return line;
}

/* ------------------------------------------------------------ printing */

/* `v` as JSON text on a line of its own; "?" when it cannot be encoded
 * (out of memory). */
static void put_json(const json_t *v, size_t flags)
{
    char *text = json_dumps(v, flags | JSON_ENCODE_ANY);
    puts(text ? text : "?");
    free(text);
}

static const char *s(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* One cell of `row` as text: into `buf`, or a string of `row`, or a
 * malloc'd JSON text (*owned set). */
static const char *cell_text(json_t *row, const struct ct_column *col, char *buf, size_t size,
                             char **owned)
{
    json_t *v = json_object_get(row, col->key);
    if (v == NULL && col->fallback != NULL)
        v = json_object_get(row, col->fallback);
    switch (col->cell) {
    case CT_CELL_INTEGER:
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return buf;
    case CT_CELL_REAL:
        snprintf(buf, size, "%.*f", col->precision, json_number_value(v));
        return buf;
    case CT_CELL_TIME: {
        if (!json_is_number(v))
            return "-"; /* not yet: a generation that has not started or ended */
        time_t t = (time_t)json_number_value(v);
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
            buf[0] = 0;
        return buf;
    }
    case CT_CELL_JSON:
        *owned = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        return *owned ? *owned : "";
    default:
        return json_string_value(v) ? json_string_value(v) : "";
    }
}

/* One line of `columns`: the titles when `row` is NULL. */
static void print_row(json_t *row, const struct ct_column *columns)
{
    for (const struct ct_column *col = columns; col->title != NULL; col++) {
        char buf[64];
        char *owned = NULL;
        const char *text = row ? cell_text(row, col, buf, sizeof(buf), &owned) : col->title;
        if (col != columns)
            printf("%*s", col->gap ? col->gap : 1, "");
        printf(col->width < 0 ? "%-*s" : "%*s", col->width < 0 ? -col->width : col->width, text);
        free(owned);
    }
    putchar('\n');
}

/* An object as one "key value" line per field, JSON for nested values;
 * an array one element a line; a bare value as it is. */
static void print_fields(json_t *result)
{
    if (json_is_object(result)) {
        const char *key;
        json_t *v;
        json_object_foreach(result, key, v)
        {
            char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            const char *value = json_is_string(v) ? json_string_value(v) : text;
            printf("%-18s %s\n", key, value ? value : "?");
            free(text);
        }
    } else if (json_is_array(result)) {
        size_t i;
        json_t *v;
        json_array_foreach(result, i, v) put_json(v, JSON_COMPACT);
    } else if (!json_is_null(result)) {
        put_json(result, 0);
    }
}

static void print_result(const struct ct_command *c, json_t *result, const struct options *o)
{
    json_t *rows = c->rows_key ? json_object_get(result, c->rows_key) : result;
    size_t i;
    json_t *row;
    if (o->is_json) {
        put_json(result, JSON_COMPACT);
        return;
    }
    switch (c->output) {
    case CT_OUT_TABLE:
        print_row(NULL, c->columns);
        /* fall through */
    case CT_OUT_RECORDS:
        json_array_foreach(rows, i, row) print_row(row, c->columns);
        break;
    case CT_OUT_BLOCKS:
        if (!json_is_array(result)) {
            print_fields(result);
            break;
        }
        json_array_foreach(result, i, row)
        {
            print_fields(row);
            if (i + 1 < json_array_size(result))
                putchar('\n');
        }
        break;
    case CT_OUT_NONE:
        break; /* the stream follows */
    default:
        print_fields(result);
    }
}

/* ------------------------------------------------------------ commands */

/* A word as JSON; a bare word that is not JSON is a string. NULL when it
 * is neither (not UTF-8) or out of memory. */
static json_t *word_value(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

/* "plugctl: MESSAGE (usage: plugctl SYNOPSIS)" on one line; EXIT_USAGE. */
static int usage_error(const struct ct_command *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const struct ct_command *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "plugctl: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    char synopsis[256];
    if (c != NULL)
        ct_synopsis(c, synopsis, sizeof(synopsis));
    fprintf(stderr, c ? " (usage: plugctl %s)\n" : " (plugctl help)\n", synopsis);
    return EXIT_USAGE;
}

/* `plugctl help [COMMAND]`: the whole text, or COMMAND's line. */
static int print_help(const char *word)
{
    if (word == NULL) {
        print_usage(stdout);
        return 0;
    }
    const struct ct_command *c = ct_find_cli(word);
    char synopsis[256];
    if (c == NULL && strcmp(word, "help") != 0)
        return usage_error(NULL, "help: unknown command \"%s\"", word);
    if (c != NULL)
        ct_synopsis(c, synopsis, sizeof(synopsis));
    fputs("usage: plugctl ", stdout);
    print_options_synopsis(stdout);
    printf("%s  # %s\n", c ? synopsis : help_synopsis, c ? c->summary : help_summary);
    return 0;
}

/* A whole decimal number, or NULL. */
static json_t *number_arg(const char *text)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == 0 ? json_integer(n) : NULL;
}

/* The argument of `c` that plugctl writes as `flag`, or NULL. */
static const struct ct_arg *find_flag(const struct ct_command *c, const char *flag)
{
    for (const struct ct_arg *a = c->args; a->name != NULL; a++)
        if (a->cli == CT_FLAG && strcmp(a->flag, flag) == 0)
            return a;
    return NULL;
}

/* The first positional argument from `a` on, or NULL. */
static const struct ct_arg *next_positional(const struct ct_arg *a)
{
    for (; a->name != NULL; a++)
        if (a->cli == CT_POSITIONAL)
            return a;
    return NULL;
}

static bool has_flags(const struct ct_command *c)
{
    for (const struct ct_arg *a = c->args; a->name != NULL; a++)
        if (a->cli == CT_FLAG)
            return true;
    return false;
}

/* How the synopsis names `a`: "-n LINES", "PLUGIN". */
static const char *arg_word(const struct ct_arg *a, char *buf, size_t size)
{
    if (a->cli == CT_FLAG && a->metavar)
        snprintf(buf, size, "%s %s", a->flag, a->metavar);
    else
        snprintf(buf, size, "%s", a->cli == CT_FLAG ? a->flag : a->metavar);
    return buf;
}

/* Puts the word `text` for `a` into `req` as the argument's JSON type. 0,
 * or EXIT_USAGE with the message printed. */
static int set_arg(json_t *req, const struct ct_command *c, const struct ct_arg *a,
                   const char *text)
{
    char path[PATH_MAX], word[64];
    json_t *v = NULL;
    switch (a->type) {
    case CT_INTEGER:
        if ((v = number_arg(text)) == NULL)
            return usage_error(c, "%s: %s: \"%s\" is not a number", ct_cli_name(c),
                               arg_word(a, word, sizeof(word)), text);
        break;
    case CT_OBJECT:
        v = json_loads(text, 0, NULL);
        if (!json_is_object(v)) {
            json_decref(v);
            return usage_error(c, "%s: %s: \"%s\" is not a JSON object", ct_cli_name(c),
                               arg_word(a, word, sizeof(word)), text);
        }
        break;
    case CT_ARRAY:
        if (json_array_append_new(json_object_get(req, a->name), word_value(text)) < 0)
            return usage_error(c, "%s: %s: \"%s\" is not UTF-8 text", ct_cli_name(c),
                               arg_word(a, word, sizeof(word)), text);
        return 0;
    case CT_BOOLEAN:
        v = json_true();
        break;
    default:
        /* plugd resolves paths in its own folder: send an absolute one */
        v = json_string((a->hints & CT_HINT_PATH) && realpath(text, path) ? path : text);
    }
    if (json_object_set_new(req, a->name, v) < 0) /* v NULL: the string is not UTF-8 */
        return usage_error(c, "%s: %s: \"%s\" is not UTF-8 text", ct_cli_name(c),
                           arg_word(a, word, sizeof(word)), text);
    return 0;
}

/* Builds the request for command `c` from the words after its name, by
 * its row of the command table: positionals in order (an array takes the
 * rest), flags anywhere. NULL with a usage message printed. *is_stream: a
 * stream follows the answer. */
static json_t *build_request(const struct ct_command *c, int argc, char **argv, bool *is_stream)
{
    json_t *req = json_pack("{s:i, s:s}", "id", 1, "cmd", c->name);
    if (req == NULL) {
        fprintf(stderr, "plugctl: out of memory\n");
        return NULL;
    }
    const struct ct_arg *next = next_positional(c->args);
    bool is_flagged = has_flags(c); /* else a word starting with '-' is a value: call x add -1 */
    char word[64];
    *is_stream = (c->flags & CT_STREAMS) != 0;
    for (const struct ct_arg *a = c->args; a->name != NULL; a++)
        if (a->type == CT_ARRAY && a->cli == CT_POSITIONAL &&
            json_object_set_new(req, a->name, json_array()) < 0) {
            fprintf(stderr, "plugctl: out of memory\n");
            goto fail;
        }
    for (int i = 0; i < argc; i++) {
        const struct ct_arg *a;
        const char *text = argv[i];
        if (is_flagged && argv[i][0] == '-' && argv[i][1] != 0) {
            if ((a = find_flag(c, argv[i])) == NULL) {
                usage_error(c, "%s: unknown option \"%s\"", ct_cli_name(c), argv[i]);
                goto fail;
            }
            if (a->type != CT_BOOLEAN && i + 1 >= argc) {
                usage_error(c, "%s: %s needs a value", ct_cli_name(c),
                            arg_word(a, word, sizeof(word)));
                goto fail;
            }
            if (a->type != CT_BOOLEAN)
                text = argv[++i];
            if (a->hints & CT_HINT_STREAMS)
                *is_stream = true;
        } else if ((a = next) == NULL) {
            usage_error(c, "%s: one argument too many: \"%s\"", ct_cli_name(c), argv[i]);
            goto fail;
        } else if (a->type != CT_ARRAY) {
            next = next_positional(a + 1);
        }
        if (set_arg(req, c, a, text) != 0)
            goto fail;
    }
    for (const struct ct_arg *a = c->args; a->name != NULL; a++) {
        if (a->is_required && a->cli != CT_NOT_IN_CLI && json_object_get(req, a->name) == NULL) {
            usage_error(c, "%s: %s is missing", ct_cli_name(c), arg_word(a, word, sizeof(word)));
            goto fail;
        }
    }
    return req;

fail:
    json_decref(req);
    return NULL;
}

/* Prints one answer; returns the exit status it means. */
static int handle_answer(const struct ct_command *c, json_t *answer, const struct options *o)
{
    if (json_is_true(json_object_get(answer, "ok"))) {
        print_result(c, json_object_get(answer, "result"), o);
        return 0;
    }
    /* plugd's message names the command already */
    json_t *error = json_object_get(answer, "error");
    fprintf(stderr, "plugctl: %s (%s)\n", s(error, "message"), s(error, "code"));
    return EXIT_REFUSED;
}

/* After the answer: events and log records until plugd or the user ends
 * it. plugd ending it (it stopped, or closed this connection) is said on
 * stderr and exits EXIT_UNREACHABLE: a script must not take it for a
 * stream that is complete. */
static int follow(FILE *in, const struct options *o)
{
    char *line;
    while ((line = read_line(in)) != NULL) {
        json_t *msg = json_loads(line, 0, NULL);
        free(line);
        json_t *event = json_object_get(msg, "event"), *rec = json_object_get(msg, "log");
        if (o->is_json && (event || rec)) {
            put_json(event ? event : rec, JSON_COMPACT);
            fflush(stdout);
        } else if (event || rec) {
            print_row(event ? event : rec, event ? ct_event_columns : ct_log_columns);
            fflush(stdout);
        }
        bool is_dropped = event && strcmp(s(event, "name"), "subscriber.overflow") == 0;
        json_decref(msg);
        if (is_dropped) {
            fprintf(stderr, "plugctl: plugd dropped this subscription (too slow)\n");
            return EXIT_REFUSED;
        }
    }
    fprintf(stderr, "plugctl: plugd closed the stream\n");
    return EXIT_UNREACHABLE;
}

/* Applies option ct_options[i] with `value`. */
static void set_option(struct options *o, size_t i, const char *value)
{
    if (strcmp(ct_options[i].name, "socket") == 0)
        o->socket = value;
    else if (strcmp(ct_options[i].name, "json") == 0)
        o->is_json = true;
}

#define MAX_OPTIONS 8

int main(int argc, char **argv)
{
    struct option longopts[MAX_OPTIONS + 2] = {{"help", no_argument, NULL, 'h'}};
    for (size_t i = 0; ct_options[i].name != NULL && i < MAX_OPTIONS; i++)
        longopts[i + 1] = (struct option){ct_options[i].name,
                                          ct_options[i].metavar ? required_argument : no_argument,
                                          NULL, 256 + (int)i};
    struct options o = {.socket = getenv("PLUGD_SOCKET")};
    int c;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        if (c == 'h') {
            print_usage(stdout);
            return 0;
        }
        if (c < 256) {
            print_usage(stderr);
            return EXIT_USAGE;
        }
        set_option(&o, (size_t)(c - 256), optarg);
    }
    if (optind >= argc) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const char *word = argv[optind];
    if (strcmp(word, "help") == 0)
        return print_help(optind + 1 < argc ? argv[optind + 1] : NULL);
    const struct ct_command *cmd = ct_find_cli(word);
    if (cmd == NULL)
        return usage_error(NULL, "unknown command \"%s\"", word);
    bool is_stream = false;
    json_t *req = build_request(cmd, argc - optind - 1, argv + optind + 1, &is_stream);
    if (req == NULL)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    int fd = connect_to(o.socket ? o.socket : "state/plugd.sock");
    if (fd < 0) {
        json_decref(req);
        return EXIT_UNREACHABLE;
    }
    FILE *in = fdopen(fd, "r");
    if (in == NULL) {
        fprintf(stderr, "plugctl: %s\n", strerror(errno));
        close(fd);
        json_decref(req);
        return EXIT_UNREACHABLE;
    }
    char *line = NULL;
    int status = EXIT_UNREACHABLE;
    if (send_request(fd, req) == 0 && (line = read_line(in)) != NULL) {
        json_t *answer = json_loads(line, 0, NULL);
        status = answer ? handle_answer(cmd, answer, &o) : EXIT_UNREACHABLE;
        json_decref(answer);
        fflush(stdout); /* a follower shows the answer before the stream */
        if (status == 0 && is_stream)
            status = follow(in, &o);
    } else {
        fprintf(stderr, "plugctl: plugd closed the connection\n");
    }
    free(line);
    json_decref(req);
    fclose(in);
    return status;
}
