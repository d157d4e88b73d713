/* plugctl: the operator's command line for a running plugd, over its
 * control socket (JSON lines, docs/control.md). Tables for people, --json
 * for scripts. Exit codes: 0 ok, 1 plugd refused, 2 usage, 3 cannot reach
 * plugd. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXIT_REFUSED     1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3

static const char usage[] =
    "usage: plugctl [--socket PATH] [--json] COMMAND [ARGS]\n"
    "\n"
    "  list                          every plugin: status, version, worker\n"
    "  status [PLUGIN]               the full status\n"
    "  install PATH                  install (or reinstall) a package folder\n"
    "  upgrade PATH                  upgrade a plugin to a package folder\n"
    "  enable PLUGIN                 disabled or error -> ready\n"
    "  disable PLUGIN [REASON]       ready -> disabled\n"
    "  approve PLUGIN                run the pending upgrade\n"
    "  reject PLUGIN                 discard the pending upgrade\n"
    "  uninstall PLUGIN [--remove-data]\n"
    "  purge PLUGIN                  delete an uninstalled plugin's data\n"
    "  call PLUGIN METHOD [ARG...]   each ARG is JSON (a bare word is a string)\n"
    "  config PLUGIN [JSON]          show, or set, the plugin's config\n"
    "  events [PATTERN] [--filter JSON] [--since SEQ]   follow events\n"
    "  logs [PLUGIN] [-n LINES] [-f] the newest log records; -f follows\n"
    "  stats [PLUGIN]                uptime, restarts, calls, latency, RSS\n"
    "  doctor PLUGIN                 what to look at when a plugin misbehaves\n"
    "  audit PLUGIN [-n LIMIT]       the plugin's audit trail\n"
    "  shutdown                      stop plugd gracefully\n"
    "  help [COMMAND]                this text\n"
    "\n"
    "The socket is --socket, else $PLUGD_SOCKET, else ./state/plugd.sock.\n"
    "Exit status: 0 ok, 1 plugd refused, 2 usage, 3 cannot reach plugd (or it\n"
    "closed a followed stream: events, logs -f).\n";

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

static int send_request(int fd, json_t *req)
{
    char *text = json_dumps(req, JSON_COMPACT);
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

static const char *s(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void print_list(json_t *list)
{
    printf("%-20s %-10s %-16s %-9s %-8s %s\n", "PLUGIN", "VERSION", "STATUS", "WORKER", "PID",
           "RESTARTS");
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        printf("%-20s %-10s %-16s %-9s %-8lld %lld\n", s(p, "plugin"), s(p, "version"),
               s(p, "status"), s(p, "state"), json_integer_value(json_object_get(p, "pid")),
               json_integer_value(json_object_get(p, "restarts")));
    }
}

static void print_stats(json_t *list)
{
    printf("%-20s %-16s %-8s %10s %8s %8s %6s %9s %9s %8s  %s\n", "PLUGIN", "STATUS", "PID",
           "UPTIME_S", "RESTARTS", "CALLS", "ERRORS", "P50_MS", "P99_MS", "RSS_KIB", "HEALTH");
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        printf("%-20s %-16s %-8lld %10.1f %8lld %8lld %6lld %9.3f %9.3f %8lld  %s\n",
               s(p, "plugin"), s(p, "status"), json_integer_value(json_object_get(p, "pid")),
               json_number_value(json_object_get(p, "uptime_s")),
               json_integer_value(json_object_get(p, "restarts")),
               json_integer_value(json_object_get(p, "calls")),
               json_integer_value(json_object_get(p, "errors")),
               json_number_value(json_object_get(p, "latency_p50_ms")),
               json_number_value(json_object_get(p, "latency_p99_ms")),
               json_integer_value(json_object_get(p, "rss_kib")), s(p, "health"));
    }
}

/* Every other result: one "key: value" line per field, JSON for nested
 * values; a bare value as it is. */
static void print_fields(json_t *result)
{
    if (json_is_object(result)) {
        const char *key;
        json_t *v;
        json_object_foreach(result, key, v)
        {
            char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%-18s %s\n", key, text ? text : json_string_value(v));
            free(text);
        }
    } else if (json_is_array(result)) {
        size_t i;
        json_t *v;
        json_array_foreach(result, i, v)
        {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            puts(text);
            free(text);
        }
    } else if (!json_is_null(result)) {
        char *text = json_dumps(result, JSON_ENCODE_ANY);
        puts(text);
        free(text);
    }
}

static void print_audit(json_t *rows)
{
    printf("%-24s %-12s %-10s %-16s %-16s %s\n", "TIME", "ACTOR", "ACTION", "FROM", "TO", "REASON");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        time_t t = (time_t)json_number_value(json_object_get(r, "time"));
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        printf("%-24s %-12s %-10s %-16s %-16s %s\n", when, s(r, "actor"), s(r, "action"),
               s(r, "from"), s(r, "to"), s(r, "reason"));
    }
}

static void print_event(json_t *e)
{
    char *payload = json_dumps(json_object_get(e, "payload"), JSON_COMPACT | JSON_ENCODE_ANY);
    printf("%8lld %-28s %-16s %s\n", json_integer_value(json_object_get(e, "seq")), s(e, "name"),
           s(e, "plugin"), payload ? payload : "");
    free(payload);
    fflush(stdout);
}

static void print_log(json_t *rec)
{
    printf("%s %-5s %-14s %s\n", s(rec, "time"),
           json_object_get(rec, "level") ? s(rec, "level") : s(rec, "stream"), s(rec, "plugin"),
           s(rec, "message"));
    fflush(stdout);
}

static void print_result(const char *cmd, json_t *result, const struct options *o)
{
    if (o->is_json) {
        char *text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
        puts(text);
        free(text);
    } else if (strcmp(cmd, "list") == 0) {
        print_list(result);
    } else if (strcmp(cmd, "stats") == 0) {
        print_stats(result);
    } else if (strcmp(cmd, "audit") == 0) {
        print_audit(result);
    } else if (strcmp(cmd, "logs") == 0) {
        size_t i;
        json_t *rec;
        json_array_foreach(json_object_get(result, "lines"), i, rec) print_log(rec);
    } else if (strcmp(cmd, "subscribe") == 0) {
        /* the stream follows */
    } else if (strcmp(cmd, "status") == 0) {
        size_t i;
        json_t *p;
        json_array_foreach(result, i, p)
        {
            print_fields(p);
            if (i + 1 < json_array_size(result))
                putchar('\n');
        }
    } else {
        print_fields(result);
    }
}

/* ------------------------------------------------------------ commands */

/* A JSON argument; a bare word that is not JSON is a string. */
static json_t *json_arg(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "plugctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (plugctl help)\n");
    return EXIT_USAGE;
}

/* `plugctl help [COMMAND]`: the whole text, or the lines about COMMAND. */
static int print_help(const char *cmd)
{
    if (cmd == NULL) {
        fputs(usage, stdout);
        return 0;
    }
    size_t n = strlen(cmd);
    bool is_found = false;
    for (const char *line = usage; *line;) {
        size_t len = strcspn(line, "\n");
        if (len > n + 2 && strncmp(line, "  ", 2) == 0 && strncmp(line + 2, cmd, n) == 0 &&
            line[n + 2] == ' ') {
            printf("usage: plugctl [--socket PATH] [--json] %.*s\n", (int)(len - 2), line + 2);
            is_found = true;
        }
        line += len + (line[len] == '\n');
    }
    if (!is_found)
        return usage_error("help: unknown command \"%s\"", cmd);
    return 0;
}

/* A whole decimal number, or NULL (a usage error names the text). */
static json_t *number_arg(const char *text)
{
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == 0 ? json_integer(n) : NULL;
}

/* Builds the request for argv (after the command name); NULL with a usage
 * message printed. *is_stream: the answer is followed by a stream. */
static json_t *build_request(const char *cmd, int argc, char **argv, bool *is_stream)
{
    json_t *req = json_pack("{s:i, s:s}", "id", 1, "cmd", cmd);
    const char *bad = NULL; /* the argument that is not a number */
    bool takes_plugin = false, needs_plugin = false;
    static const char *const one_plugin[] = {"enable", "approve", "reject",
                                             "purge",  "doctor",  NULL};
    static const char *const optional_plugin[] = {"status", "stats", NULL};
    for (size_t i = 0; one_plugin[i]; i++)
        needs_plugin = needs_plugin || strcmp(cmd, one_plugin[i]) == 0;
    for (size_t i = 0; optional_plugin[i]; i++)
        takes_plugin = takes_plugin || strcmp(cmd, optional_plugin[i]) == 0;
    if (needs_plugin || takes_plugin) {
        if (argc > 1 || (needs_plugin && argc != 1))
            goto usage;
        if (argc == 1)
            json_object_set_new(req, "plugin", json_string(argv[0]));
    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "shutdown") == 0) {
        if (argc != 0)
            goto usage;
    } else if (strcmp(cmd, "install") == 0 || strcmp(cmd, "upgrade") == 0) {
        char path[PATH_MAX];
        if (argc != 1)
            goto usage;
        /* plugd resolves paths in its own folder: send an absolute one */
        json_object_set_new(req, "path", json_string(realpath(argv[0], path) ? path : argv[0]));
    } else if (strcmp(cmd, "disable") == 0) {
        if (argc < 1 || argc > 2)
            goto usage;
        json_object_set_new(req, "plugin", json_string(argv[0]));
        if (argc == 2)
            json_object_set_new(req, "reason", json_string(argv[1]));
    } else if (strcmp(cmd, "uninstall") == 0) {
        if (argc < 1 || argc > 2 || (argc == 2 && strcmp(argv[1], "--remove-data") != 0))
            goto usage;
        json_object_set_new(req, "plugin", json_string(argv[0]));
        if (argc == 2)
            json_object_set_new(req, "remove_data", json_true());
    } else if (strcmp(cmd, "call") == 0) {
        if (argc < 2)
            goto usage;
        json_t *params = json_array();
        for (int i = 2; i < argc; i++)
            json_array_append_new(params, json_arg(argv[i]));
        json_object_set_new(req, "plugin", json_string(argv[0]));
        json_object_set_new(req, "method", json_string(argv[1]));
        json_object_set_new(req, "params", params);
    } else if (strcmp(cmd, "config") == 0) {
        if (argc < 1 || argc > 2)
            goto usage;
        json_object_set_new(req, "plugin", json_string(argv[0]));
        if (argc == 2) {
            json_t *config = json_loads(argv[1], 0, NULL);
            if (!json_is_object(config)) {
                json_decref(config);
                json_decref(req);
                usage_error("config: \"%s\" is not a JSON object", argv[1]);
                return NULL;
            }
            json_object_set_new(req, "config", config);
        }
    } else if (strcmp(cmd, "events") == 0) {
        json_object_set_new(req, "cmd", json_string("subscribe"));
        *is_stream = true;
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
                json_t *filter = json_loads(argv[++i], 0, NULL);
                if (!json_is_object(filter)) {
                    json_decref(filter);
                    goto usage;
                }
                json_object_set_new(req, "filter", filter);
            } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
                json_t *since = number_arg(bad = argv[++i]);
                if (since == NULL)
                    goto bad_number;
                json_object_set_new(req, "since", since);
            } else if (argv[i][0] != '-' && json_object_get(req, "pattern") == NULL) {
                json_object_set_new(req, "pattern", json_string(argv[i]));
            } else {
                goto usage;
            }
        }
    } else if (strcmp(cmd, "logs") == 0 || strcmp(cmd, "audit") == 0) {
        bool is_audit = strcmp(cmd, "audit") == 0;
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
                json_t *n = number_arg(bad = argv[++i]);
                if (n == NULL)
                    goto bad_number;
                json_object_set_new(req, is_audit ? "limit" : "lines", n);
            } else if (!is_audit && strcmp(argv[i], "-f") == 0) {
                json_object_set_new(req, "follow", json_true());
                *is_stream = true;
            } else if (argv[i][0] != '-' && json_object_get(req, "plugin") == NULL) {
                json_object_set_new(req, "plugin", json_string(argv[i]));
            } else {
                goto usage;
            }
        }
        if (is_audit && json_object_get(req, "plugin") == NULL)
            goto usage;
    } else {
        json_decref(req);
        usage_error("unknown command \"%s\"", cmd);
        return NULL;
    }
    return req;

usage:
    json_decref(req);
    usage_error("%s: wrong arguments", cmd);
    return NULL;

bad_number:
    json_decref(req);
    usage_error("\"%s\" is not a number", bad);
    return NULL;
}

/* Prints one answer; returns the exit status it means. */
static int handle_answer(const char *cmd, json_t *answer, const struct options *o)
{
    if (json_is_true(json_object_get(answer, "ok"))) {
        print_result(cmd, json_object_get(answer, "result"), o);
        return 0;
    }
    json_t *error = json_object_get(answer, "error");
    (void)cmd; /* plugd's message names the command already */
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
            char *text = json_dumps(event ? event : rec, JSON_COMPACT);
            puts(text);
            fflush(stdout);
            free(text);
        } else if (event) {
            print_event(event);
        } else if (rec) {
            print_log(rec);
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

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct options o = {.socket = getenv("PLUGD_SOCKET")};
    int c;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.socket = optarg;
            break;
        case 'j':
            o.is_json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "help") == 0)
        return print_help(optind + 1 < argc ? argv[optind + 1] : NULL);
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
    char *line = NULL;
    int status = EXIT_UNREACHABLE;
    if (send_request(fd, req) == 0 && (line = read_line(in)) != NULL) {
        json_t *answer = json_loads(line, 0, NULL);
        const char *wire = json_string_value(json_object_get(req, "cmd"));
        status = answer ? handle_answer(wire, answer, &o) : EXIT_UNREACHABLE;
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
