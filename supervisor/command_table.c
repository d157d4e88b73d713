#include "command_table.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ arguments */

/* An argument plugctl takes as a word (POS) or a flag (FLAG), or one only
 * the wire has (WIRE): JSON key, type, [required,] [flag,] plugctl's word,
 * help; then .hints, .min, .max where they apply. */
#define POS(k, t, req, word, text, ...)                                                            \
    {                                                                                              \
        .name = k, .type = CT_##t, .is_required = req, .cli = CT_POSITIONAL, .metavar = word,      \
        .help = text, __VA_ARGS__                                                                  \
    }
#define FLAG(k, t, f, word, text, ...)                                                             \
    {                                                                                              \
        .name = k, .type = CT_##t, .cli = CT_FLAG, .flag = f, .metavar = word, .help = text,       \
        __VA_ARGS__                                                                                \
    }
#define WIRE(k, t, text, ...)                                                                      \
    {                                                                                              \
        .name = k, .type = CT_##t, .cli = CT_NOT_IN_CLI, .help = text, __VA_ARGS__                 \
    }
#define PLUGIN_ARG(req) POS("plugin", STRING, req, "PLUGIN", "the plugin's name")

static const struct ct_arg no_args[] = {{0}};
static const struct ct_arg plugin_required[] = {PLUGIN_ARG(true), {0}};
static const struct ct_arg plugin_optional[] = {PLUGIN_ARG(false), {0}};
static const struct ct_arg path_args[] = {
    POS("path", STRING, true, "PATH",
        "a package folder (absolute on the wire; plugctl makes it so)", .hints = CT_HINT_PATH),
    {0}};
static const struct ct_arg reload_args[] = {
    PLUGIN_ARG(true),
    POS("path", STRING, true, "PATH",
        "the rebuilt package's folder (absolute on the wire; plugctl makes it so)",
        .hints = CT_HINT_PATH),
    {0}};
static const struct ct_arg disable_args[] = {
    PLUGIN_ARG(true), POS("reason", STRING, false, "REASON", "kept in the audit"), {0}};
static const struct ct_arg uninstall_args[] = {
    PLUGIN_ARG(true),
    FLAG("remove_data", BOOLEAN, "--remove-data", NULL,
         "delete the plugin's data now instead of keeping it for the retention"),
    {0}};
static const struct ct_arg call_args[] = {
    PLUGIN_ARG(true),
    POS("method", STRING, true, "METHOD", "the method's name", .max = 255),
    POS("params", ARRAY, false, "ARG",
        "the method's parameters; plugctl takes each as JSON, a bare word as a string"),
    WIRE("timeout_ms", INTEGER, "the call's deadline (default: the manifest's)", .min = 1,
         .max = 86400000),
    {0}};
static const struct ct_arg config_args[] = {
    PLUGIN_ARG(true),
    POS("config", OBJECT, false, "JSON", "the new config; without it the config is shown"),
    {0}};
static const struct ct_arg subscribe_args[] = {
    POS("pattern", STRING, false, "PATTERN",
        "event names to follow, * matches any run (default *)"),
    FLAG("filter", OBJECT, "--filter", "JSON", "payload keys and the values they must have"),
    FLAG("since", INTEGER, "--since", "SEQ",
         "replay the kept events after this sequence number first", .min = 0, .max = LLONG_MAX),
    {0}};
static const struct ct_arg logs_args[] = {
    PLUGIN_ARG(false),
    FLAG("lines", INTEGER, "-n", "LINES", "how many records (default 100)", .min = 0, .max = 1000),
    FLAG("follow", BOOLEAN, "-f", NULL, "then stream new records", .hints = CT_HINT_STREAMS),
    {0}};
static const struct ct_arg audit_args[] = {
    PLUGIN_ARG(true),
    FLAG("limit", INTEGER, "-n", "LIMIT", "how many rows (default 100)", .min = 1, .max = 10000),
    {0}};

/* ------------------------------------------------------------ results */

static const char *const status_fields[] = {"plugin",
                                            "status",
                                            "version",
                                            "digest",
                                            "pending_version",
                                            "diff",
                                            "error",
                                            "state",
                                            "pid",
                                            "failed",
                                            "restarts",
                                            "calls",
                                            "call_errors",
                                            "faults",
                                            "late_replies",
                                            "dropped_notifications",
                                            "last_error",
                                            "last_exit",
                                            "sandbox",
                                            "instances",
                                            NULL};

static const char *const stats_fields[] = {"plugin",
                                           "status",
                                           "version",
                                           "pid",
                                           "uptime_s",
                                           "restarts",
                                           "calls",
                                           "errors",
                                           "dropped_notifications",
                                           "latency_p50_ms",
                                           "latency_p99_ms",
                                           "rss_kib",
                                           "health",
                                           "instances",
                                           NULL};

static const char *const doctor_fields[] = {
    "plugin",       "status",  "version", "package",           "manifest",
    "capabilities", "health",  "error",   "last_worker_error", "last_exit",
    "restarts",     "sandbox", NULL};

static const char *const logs_fields[] = {"lines", NULL};

/* A column: title, key, cell, width; then .precision, .gap, .fallback */
#define COL(t, k, c, w, ...)                                                                       \
    {                                                                                              \
        .title = t, .key = k, .cell = CT_CELL_##c, .width = w, __VA_ARGS__                         \
    }

static const struct ct_column list_columns[] = {COL("PLUGIN", "plugin", STRING, -20),
                                                COL("VERSION", "version", STRING, -10),
                                                COL("STATUS", "status", STRING, -16),
                                                COL("WORKER", "state", STRING, -9),
                                                COL("PID", "pid", INTEGER, -8),
                                                COL("RESTARTS", "restarts", INTEGER, 0),
                                                {0}};

static const struct ct_column stats_columns[] = {
    COL("PLUGIN", "plugin", STRING, -20),
    COL("STATUS", "status", STRING, -16),
    COL("PID", "pid", INTEGER, -8),
    COL("UPTIME_S", "uptime_s", REAL, 10, .precision = 1),
    COL("RESTARTS", "restarts", INTEGER, 8),
    COL("CALLS", "calls", INTEGER, 8),
    COL("ERRORS", "errors", INTEGER, 6),
    COL("P50_MS", "latency_p50_ms", REAL, 9, .precision = 3),
    COL("P99_MS", "latency_p99_ms", REAL, 9, .precision = 3),
    COL("RSS_KIB", "rss_kib", INTEGER, 8),
    COL("HEALTH", "health", STRING, 0, .gap = 2),
    {0}};

static const struct ct_column audit_columns[] = {COL("TIME", "time", TIME, -24),
                                                 COL("ACTOR", "actor", STRING, -12),
                                                 COL("ACTION", "action", STRING, -10),
                                                 COL("FROM", "from", STRING, -16),
                                                 COL("TO", "to", STRING, -16),
                                                 COL("REASON", "reason", STRING, 0),
                                                 {0}};

static const struct ct_column history_columns[] = {
    COL("GEN", "generation", INTEGER, 4),
    COL("VERSION", "version", STRING, -10, .gap = 2),
    COL("OUTCOME", "outcome", STRING, -11),
    COL("GOOD", "known_good", JSON, -5),
    COL("CONFIG", "config_changed", JSON, -6),
    COL("ADDED", "capabilities_added", JSON, -16),
    COL("REMOVED", "capabilities_removed", JSON, -16),
    COL("STARTED", "started_at", TIME, -20),
    COL("ENDED", "ended_at", TIME, -20),
    COL("ACTOR", "actor", STRING, -10),
    COL("DIGEST", "digest", STRING, 0),
    {0}};

const struct ct_column ct_log_columns[] = {COL("TIME", "time", STRING, 0),
                                           COL("LEVEL", "level", STRING, -5, .fallback = "stream"),
                                           COL("PLUGIN", "plugin", STRING, -14),
                                           COL("MESSAGE", "message", STRING, 0),
                                           {0}};

const struct ct_column ct_event_columns[] = {COL("SEQ", "seq", INTEGER, 8),
                                             COL("NAME", "name", STRING, -28),
                                             COL("PLUGIN", "plugin", STRING, -16),
                                             COL("PAYLOAD", "payload", JSON, 0),
                                             {0}};

/* ------------------------------------------------------------ the table */

const struct ct_command ct_commands[CT_COUNT] = {
    {CT_LIST, "list", NULL, no_args, "every plugin: status, version, worker", 0, CT_OUT_TABLE, NULL,
     list_columns, status_fields},
    {CT_STATUS, "status", NULL, plugin_optional, "one plugin's (or every plugin's) full status", 0,
     CT_OUT_BLOCKS, NULL, NULL, status_fields},
    {CT_INSTALL, "install", NULL, path_args, "install (or reinstall) a package folder", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_UPGRADE, "upgrade", NULL, path_args, "upgrade a plugin to a package folder", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_RELOAD, "reload", NULL, reload_args,
     "load a rebuild of the running version (a new digest) from a package folder", 0, CT_OUT_VALUE,
     NULL, NULL, NULL},
    {CT_ENABLE, "enable", NULL, plugin_required, "disabled or error -> ready", 0, CT_OUT_VALUE,
     NULL, NULL, NULL},
    {CT_DISABLE, "disable", NULL, disable_args, "ready -> disabled; the worker stops gracefully", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_APPROVE, "approve", NULL, plugin_required,
     "run the pending upgrade (new capabilities granted)", 0, CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_REJECT, "reject", NULL, plugin_required,
     "discard the pending upgrade; the old version runs", 0, CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_UNINSTALL, "uninstall", NULL, uninstall_args,
     "stop and remove; its data is kept for the retention", 0, CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_PURGE, "purge", NULL, plugin_required, "delete an uninstalled plugin's retained data", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_CALL, "call", NULL, call_args, "call a plugin's method", 0, CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_CONFIG, "config", NULL, config_args, "show, or set (validated, applied hot), the config", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
    {CT_SUBSCRIBE, "subscribe", "events", subscribe_args, "follow the event stream", CT_STREAMS,
     CT_OUT_NONE, NULL, NULL, NULL},
    {CT_LOGS, "logs", NULL, logs_args, "the newest log records; -f follows", 0, CT_OUT_RECORDS,
     "lines", ct_log_columns, logs_fields},
    {CT_STATS, "stats", NULL, plugin_optional, "uptime, restarts, calls, errors, latency, RSS", 0,
     CT_OUT_TABLE, NULL, stats_columns, stats_fields},
    {CT_DOCTOR, "doctor", NULL, plugin_required, "what to look at when a plugin misbehaves", 0,
     CT_OUT_VALUE, NULL, NULL, doctor_fields},
    {CT_AUDIT, "audit", NULL, audit_args, "the plugin's audit trail, newest first", 0, CT_OUT_TABLE,
     NULL, audit_columns, NULL},
    {CT_HISTORY, "history", NULL, plugin_required,
     "the plugin's generations (what it ran, and how that ended), newest first", 0, CT_OUT_TABLE,
     NULL, history_columns, NULL},
    {CT_SHUTDOWN, "shutdown", NULL, no_args, "stop every worker gracefully, then plugd", 0,
     CT_OUT_VALUE, NULL, NULL, NULL},
};

const struct ct_option ct_options[] = {
    {"socket", "PATH", "the socket (else $PLUGD_SOCKET, else ./state/plugd.sock)"},
    {"json", NULL, "print results, events and records as JSON lines"},
    {0}};

const struct ct_command *ct_find(const char *name)
{
    for (size_t i = 0; i < CT_COUNT; i++)
        if (strcmp(ct_commands[i].name, name) == 0)
            return &ct_commands[i];
    return NULL;
}

const char *ct_cli_name(const struct ct_command *c)
{
    return c->cli_name ? c->cli_name : c->name;
}

const struct ct_command *ct_find_cli(const char *word)
{
    for (size_t i = 0; i < CT_COUNT; i++)
        if (strcmp(ct_cli_name(&ct_commands[i]), word) == 0)
            return &ct_commands[i];
    return NULL;
}

const struct ct_arg *ct_find_arg(const struct ct_command *c, const char *name)
{
    for (const struct ct_arg *a = c->args; a->name != NULL; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

const char *ct_type_name(enum ct_type type)
{
    static const char *const names[] = {[CT_STRING] = "string",
                                        [CT_INTEGER] = "integer",
                                        [CT_BOOLEAN] = "boolean",
                                        [CT_OBJECT] = "object",
                                        [CT_ARRAY] = "array"};
    return names[type];
}

/* One argument as the synopsis writes it: PLUGIN, [REASON], [ARG...],
 * [-n LINES], [--remove-data]. */
static int arg_synopsis(const struct ct_arg *a, char *buf, size_t size)
{
    bool is_optional = !a->is_required || a->type == CT_ARRAY;
    const char *rest = a->type == CT_ARRAY ? "..." : "";
    if (a->cli == CT_FLAG && a->metavar == NULL)
        return snprintf(buf, size, " [%s]", a->flag);
    if (a->cli == CT_FLAG)
        return snprintf(buf, size, is_optional ? " [%s %s]" : " %s %s", a->flag, a->metavar);
    return snprintf(buf, size, is_optional ? " [%s%s]" : " %s%s", a->metavar, rest);
}

size_t ct_synopsis(const struct ct_command *c, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s", ct_cli_name(c));
    for (const struct ct_arg *a = c->args; a->name != NULL; a++)
        if (a->cli != CT_NOT_IN_CLI)
            n += (size_t)arg_synopsis(a, n < size ? buf + n : NULL, n < size ? size - n : 0);
    return n;
}
