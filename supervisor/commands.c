#include "commands.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capabilities.h"
#include "jsonpack.h"
#include "plugin_json.h"

void cmd_fail(struct cmd_request *r, enum plugd_errc code, const char *fmt, ...)
{
    struct plugd_error e;
    va_list ap;
    va_start(ap, fmt);
    plugd_error_vset(&e, code, fmt, ap);
    va_end(ap);
    r->t->fail(r, &e);
}

static void reply_done(struct cmd_request *r, int rc, const struct plugd_error *err)
{
    if (rc < 0)
        r->t->fail(r, err);
    else
        r->t->reply_json(r, NULL);
}

/* ------------------------------------------------------------ arguments */

/* Arguments are checked against the command's row of ct_commands before
 * its handler runs: a field not listed is refused, so a typo never passes
 * silently. */
static const char *type_phrase(enum ct_type type)
{
    switch (type) {
    case CT_STRING:
        return "a string (not empty)";
    case CT_INTEGER:
        return "an integer";
    case CT_BOOLEAN:
        return "true or false";
    case CT_OBJECT:
        return "an object";
    default:
        return "an array";
    }
}

static bool has_type(const json_t *v, enum ct_type type)
{
    switch (type) {
    case CT_STRING:
        return json_is_string(v) && json_string_length(v) > 0 &&
               strlen(json_string_value(v)) == json_string_length(v);
    case CT_INTEGER:
        return json_is_integer(v);
    case CT_BOOLEAN:
        return json_is_boolean(v);
    case CT_OBJECT:
        return json_is_object(v);
    default:
        return json_is_array(v);
    }
}

/* A value out of the row's range (ct_arg.min, .max), else 0. */
static int check_range(struct cmd_request *r, const struct ct_command *c, const struct ct_arg *a,
                       const json_t *v)
{
    if ((a->type != CT_INTEGER && a->type != CT_STRING) || (a->min == 0 && a->max == 0))
        return 0;
    long long n =
        a->type == CT_INTEGER ? (long long)json_integer_value(v) : (long long)json_string_length(v);
    if (a->type == CT_STRING && n > a->max)
        cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: \"%s\" must be 1 to %lld bytes", c->name,
                 a->name, a->max);
    else if (a->type == CT_INTEGER && a->max == LLONG_MAX && n < a->min)
        cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: \"%s\" must be %lld or more", c->name, a->name,
                 a->min);
    else if (a->type == CT_INTEGER && (n < a->min || n > a->max))
        cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: \"%s\" must be from %lld to %lld", c->name,
                 a->name, a->min, a->max);
    else
        return 0;
    return -1;
}

static int check_args(struct cmd_request *r, const struct ct_command *c, json_t *args)
{
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v)
    {
        const struct ct_arg *a = ct_find_arg(c, key);
        if (a == NULL) {
            cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: unknown argument \"%s\"", c->name, key);
            return -1;
        }
        if (!has_type(v, a->type)) {
            cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: \"%s\" must be %s", c->name, key,
                     type_phrase(a->type));
            return -1;
        }
        if (check_range(r, c, a, v) < 0)
            return -1;
    }
    for (const struct ct_arg *a = c->args; a->name != NULL; a++) {
        if (a->is_required && json_object_get(args, a->name) == NULL) {
            cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: \"%s\" is required", c->name, a->name);
            return -1;
        }
    }
    return 0;
}

static const char *str(json_t *args, const char *name)
{
    return json_string_value(json_object_get(args, name));
}

static struct plugin *find_plugin(struct cmd_request *r, const char *cmd, const char *name)
{
    struct plugin *p = plugd_find(r->d, name, strlen(name));
    if (p == NULL)
        cmd_fail(r, PLUGD_E_PLUGIN_NOT_FOUND, "%s: no plugin named \"%s\"", cmd, name);
    return p;
}

/* ------------------------------------------------------------ status */

/* status / list {plugin?} → [status, ...] */
static void cmd_status(struct cmd_request *r, json_t *args)
{
    const char *name = str(args, "plugin");
    struct plugin *only = name ? find_plugin(r, "status", name) : NULL;
    if (name != NULL && only == NULL)
        return;
    json_t *list = json_array();
    for (size_t i = 0; i < r->d->n_plugins; i++)
        if (only == NULL || only == r->d->plugins[i])
            json_array_append_new(list, plugin_json_status(r->d->plugins[i]));
    r->t->reply_json(r, list);
}

/* ------------------------------------------------------------ lifecycle */

/* plugd's working folder means nothing to a client: paths are absolute.
 * True for one; false after failing the request. */
static bool check_absolute_path(struct cmd_request *r, const char *cmd, const char *path)
{
    if (path[0] == '/')
        return true;
    struct plugd_error err;
    plugd_error_set(&err, PLUGD_E_INVALID_ARGUMENT, "%s: \"path\" must be absolute, not %.200s",
                    cmd, path);
    r->t->fail(r, &err);
    return false;
}

static void cmd_install(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    if (check_absolute_path(r, "install", str(args, "path")))
        reply_done(r, plugd_install(r->d, str(args, "path"), r->actor, &err), &err);
}

static void cmd_upgrade(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    if (check_absolute_path(r, "upgrade", str(args, "path")))
        reply_done(r, plugd_upgrade(r->d, str(args, "path"), r->actor, &err), &err);
}

static void cmd_reload(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    if (check_absolute_path(r, "reload", str(args, "path")))
        reply_done(r, plugd_reload(r->d, str(args, "plugin"), str(args, "path"), r->actor, &err),
                   &err);
}

static void cmd_enable(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    reply_done(r, plugd_enable(r->d, str(args, "plugin"), r->actor, &err), &err);
}

static void cmd_approve(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    reply_done(r, plugd_approve(r->d, str(args, "plugin"), r->actor, &err), &err);
}

static void cmd_reject(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    reply_done(r, plugd_reject(r->d, str(args, "plugin"), r->actor, &err), &err);
}

static void cmd_disable(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    reply_done(r, plugd_disable(r->d, str(args, "plugin"), str(args, "reason"), r->actor, &err),
               &err);
}

static void cmd_uninstall(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    bool remove_data = json_is_true(json_object_get(args, "remove_data"));
    reply_done(r, plugd_uninstall(r->d, str(args, "plugin"), remove_data, r->actor, &err), &err);
}

/* purge {plugin}: deletes an uninstalled plugin's retained data now. */
static void cmd_purge(struct cmd_request *r, json_t *args)
{
    struct plugin *p = find_plugin(r, "purge", str(args, "plugin"));
    if (p == NULL)
        return;
    if (!lc_is_removed(p->row.status)) {
        cmd_fail(r, PLUGD_E_INVALID_TRANSITION,
                 "purge: %s is %s; only an uninstalled plugin's data can be purged (uninstall "
                 "it with remove_data to do both)",
                 p->row.name, lc_status_name(p->row.status));
        return;
    }
    struct plugd_error err;
    int64_t rows = reg_state_count(r->d->reg, p->row.name);
    if (reg_purge_data(r->d->reg, p->row.name, &err) < 0) {
        r->t->fail(r, &err);
        return;
    }
    plugd_remove_data_folder(r->d, p->row.name);
    log_plugd("info", p->row.name, "data purged by %s (%lld values)", r->actor, (long long)rows);
    r->t->reply_json(r, json_pack("{s:I}", "deleted", (json_int_t)rows));
}

/* audit {plugin, limit?} → newest first */
static void cmd_audit(struct cmd_request *r, json_t *args)
{
    json_int_t limit = json_integer_value(json_object_get(args, "limit")); /* 1-10000 */
    struct plugd_error err;
    char *text = reg_audit_json(r->d->reg, str(args, "plugin"), limit ? (int)limit : 100, &err);
    json_t *rows = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (rows == NULL)
        r->t->fail(r, &err);
    else
        r->t->reply_json(r, rows);
}

/* history {plugin} → its generations, newest first */
static void cmd_history(struct cmd_request *r, json_t *args)
{
    struct plugd_error err;
    const char *name = str(args, "plugin");
    if (find_plugin(r, "history", name) == NULL)
        return;
    char *text = reg_history_json(r->d->reg, name, &err);
    json_t *rows = text ? json_loads(text, 0, NULL) : NULL;
    if (text != NULL && rows == NULL)
        plugd_error_set(&err, PLUGD_E_NO_MEMORY, "history: no memory");
    free(text);
    if (rows == NULL)
        r->t->fail(r, &err);
    else
        r->t->reply_json(r, rows);
}

/* ------------------------------------------------------------ calls */

static void on_call_answered(const struct plugd_error *err, const msgpack_object *result, void *ud)
{
    struct cmd_request *r = ud;
    if (err != NULL)
        r->t->fail(r, err);
    else
        r->t->reply_msgpack(r, result);
}

/* call {plugin, method, params?, timeout_ms?} → the worker's result */
static void cmd_call(struct cmd_request *r, json_t *args)
{
    const char *method = str(args, "method");
    json_int_t timeout = json_integer_value(json_object_get(args, "timeout_ms")); /* 0: none */
    struct plugin *p = find_plugin(r, "call", str(args, "plugin"));
    if (p == NULL)
        return;
    /* params as the transport got them (msgpack keeps bin and ext), else
     * packed from JSON */
    const msgpack_object *params = r->raw ? ipc_map_get(r->raw, "params") : NULL;
    msgpack_sbuffer sb;
    msgpack_zone zone;
    msgpack_object from_json;
    msgpack_sbuffer_init(&sb);
    msgpack_zone_init(&zone, 256);
    if (params == NULL && json_object_get(args, "params") != NULL) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        jsonpack_pack(&pk, json_object_get(args, "params"));
        msgpack_unpack(sb.data, sb.size, NULL, &zone, &from_json);
        params = &from_json;
    }
    plugin_route_call(p, method, params, timeout ? (double)timeout / 1000.0 : 0, on_call_answered,
                      r);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------ config */

static void on_config_done(const struct plugd_error *err, void *ud)
{
    struct cmd_request *r = ud;
    reply_done(r, err ? -1 : 0, err);
}

/* config {plugin} → {defaults, config, effective}; config {plugin, config}
 * → nil once the worker took it (validated, then hot or by a restart). */
static void cmd_config(struct cmd_request *r, json_t *args)
{
    struct plugin *p = find_plugin(r, "config", str(args, "plugin"));
    if (p == NULL)
        return;
    json_t *config = json_object_get(args, "config");
    if (config != NULL) {
        plugd_set_config(r->d, p->row.name, config, r->actor, on_config_done, r);
        return;
    }
    json_t *manifest = json_loads(p->row.manifest, 0, NULL);
    json_t *defaults = json_incref(json_object_get(manifest, "config"));
    json_t *stored = p->row.config ? json_loads(p->row.config, 0, NULL) : NULL;
    const struct instance *serving = plugin_serving_instance(p);
    json_t *effective = serving ? json_deep_copy(serving->w->m->config) : json_null();
    json_decref(manifest);
    r->t->reply_json(r,
                     json_pack("{s:o, s:o, s:o}", "defaults", defaults ? defaults : json_object(),
                               "config", stored ? stored : json_null(), "effective", effective));
}

/* ------------------------------------------------------------ events, logs */

/* subscribe {pattern?, filter?, since?} → {seq, gap}, then the events */
static void cmd_subscribe(struct cmd_request *r, json_t *args)
{
    const char *pattern = str(args, "pattern");
    json_t *since = json_object_get(args, "since");
    int64_t from = since ? (int64_t)json_integer_value(since) : -1;
    struct stream *s = r->t->stream(r);
    struct stream_start start;
    struct plugd_error err;
    if (stream_subscribe(s, pattern ? pattern : "*", json_object_get(args, "filter"), from, &start,
                         &err) < 0) {
        r->t->fail(r, &err);
        return;
    }
    r->t->reply_json(r, json_pack("{s:I, s:b}", "seq", (json_int_t)start.seq, "gap",
                                  start.has_gap)); /* frees `r`; the stream stays */
    stream_replay(s, from);
}

static bool is_about(const json_t *rec, const char *plugin)
{
    const char *p = json_string_value(json_object_get(rec, "plugin"));
    return plugin == NULL || (p != NULL && strcmp(p, plugin) == 0);
}

/* logs {plugin?, lines?, follow?} → {lines: [record, ...]} (then, with
 * follow, every new record) */
static void cmd_logs(struct cmd_request *r, json_t *args)
{
    const char *plugin = str(args, "plugin");
    json_int_t want = /* 0 to LOG_RECENT (cmd_check_table) */
        json_object_get(args, "lines") ? json_integer_value(json_object_get(args, "lines")) : 100;
    if (plugin != NULL && find_plugin(r, "logs", plugin) == NULL)
        return;
    /* follow before the answer: the answer may free `r` */
    struct plugd_error err;
    if (json_is_true(json_object_get(args, "follow")) &&
        stream_follow_logs(r->t->stream(r), plugin, &err) < 0) {
        r->t->fail(r, &err);
        return;
    }
    static const json_t *recent[LOG_RECENT];
    size_t n = log_recent(recent, LOG_RECENT);
    json_t *lines = json_array();
    for (size_t i = n; i-- > 0 && (json_int_t)json_array_size(lines) < want;)
        if (is_about(recent[i], plugin))
            json_array_insert(lines, 0, (json_t *)recent[i]);
    r->t->reply_json(r, json_pack("{s:o}", "lines", lines));
}

/* ------------------------------------------------------------ stats, doctor */

/* stats {plugin?} → [per-plugin figures] */
static void cmd_stats(struct cmd_request *r, json_t *args)
{
    const char *name = str(args, "plugin");
    struct plugin *only = name ? find_plugin(r, "stats", name) : NULL;
    if (name != NULL && only == NULL)
        return;
    json_t *list = json_array();
    for (size_t i = 0; i < r->d->n_plugins; i++)
        if (only == NULL || only == r->d->plugins[i])
            json_array_append_new(list, plugin_json_stats(r->d->plugins[i]));
    r->t->reply_json(r, list);
}

static json_t *string_list(const char *const *items)
{
    json_t *a = json_array();
    for (; items && *items; items++)
        json_array_append_new(a, json_string(*items));
    return a;
}

/* doctor {plugin} → what an operator looks at first when a plugin misbehaves */
static void cmd_doctor(struct cmd_request *r, json_t *args)
{
    struct plugin *p = find_plugin(r, "doctor", str(args, "plugin"));
    if (p == NULL)
        return;
    struct plugd_error err = {0};
    struct manifest *m = manifest_load(p->row.package_dir, &err);
    json_t *caps = json_array();
    for (size_t i = 0; m && i < m->n_capabilities; i++) {
        const struct capability *c = cap_find(m->capabilities[i]);
        json_array_append_new(caps, json_pack("{s:s, s:o, s:o}", "name", c->name, "services",
                                              string_list(c->services), "sandbox",
                                              string_list(c->sandbox)));
    }
    const struct worker *w = plugin_shown_worker(p);
    r->t->reply_json(
        r, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:s, s:I, s:o}", "plugin",
                     p->row.name, "status", lc_status_name(p->row.status), "version",
                     p->row.version, "package", p->row.package_dir, "manifest",
                     m ? json_string("ok") : json_string(err.message), "capabilities", caps,
                     "health", w ? w->last_health : "", "error",
                     jsonpack_string_or_null(p->row.last_error), "last_worker_error",
                     w ? w->last_error.message : "", "last_exit", w ? w->last_exit : "", "restarts",
                     (json_int_t)(w ? w->restarts : 0), "sandbox", plugin_json_sandbox(w)));
    manifest_free(m);
}

/* shutdown → nil; then every worker stops gracefully and plugd exits. */
static void cmd_shutdown(struct cmd_request *r, json_t *args)
{
    (void)args;
    struct plugd *d = r->d;
    r->t->reply_json(r, NULL); /* frees r */
    plugd_stop_all(d);
}

/* ------------------------------------------------------------ the table */

/* The handler of each row of ct_commands (command_table.c has the names,
 * arguments and help; cmd_check_table proves the two agree). */
static void (*const handlers[CT_COUNT])(struct cmd_request *r, json_t *args) = {
    [CT_LIST] = cmd_status,         [CT_STATUS] = cmd_status,       [CT_INSTALL] = cmd_install,
    [CT_UPGRADE] = cmd_upgrade,     [CT_RELOAD] = cmd_reload,       [CT_ENABLE] = cmd_enable,
    [CT_DISABLE] = cmd_disable,     [CT_APPROVE] = cmd_approve,     [CT_REJECT] = cmd_reject,
    [CT_UNINSTALL] = cmd_uninstall, [CT_PURGE] = cmd_purge,         [CT_CALL] = cmd_call,
    [CT_CONFIG] = cmd_config,       [CT_SUBSCRIBE] = cmd_subscribe, [CT_LOGS] = cmd_logs,
    [CT_STATS] = cmd_stats,         [CT_DOCTOR] = cmd_doctor,       [CT_AUDIT] = cmd_audit,
    [CT_HISTORY] = cmd_history,     [CT_SHUTDOWN] = cmd_shutdown,
};

const char *cmd_check_table(char *buf, size_t size)
{
    for (size_t i = 0; i < CT_COUNT; i++) {
        const struct ct_command *c = &ct_commands[i];
        if (c->name == NULL || c->id != (enum ct_id)i)
            snprintf(buf, size, "row %zu of ct_commands is not command %zu of enum ct_id", i, i);
        else if (handlers[i] == NULL)
            snprintf(buf, size, "command %s has no handler in commands.c", c->name);
        else if (ct_find(c->name) != c || ct_find_cli(ct_cli_name(c)) != c)
            snprintf(buf, size, "command %s is named twice", c->name);
        else if (c->id == CT_LOGS && ct_find_arg(c, "lines")->max != LOG_RECENT)
            snprintf(buf, size, "logs: \"lines\" goes to %lld in the table, LOG_RECENT is %d",
                     ct_find_arg(c, "lines")->max, LOG_RECENT);
        else
            continue;
        return buf;
    }
    return NULL;
}

void cmd_dispatch(struct cmd_request *r, const char *name, json_t *args)
{
    const struct ct_command *c = ct_find(name);
    if (c == NULL)
        cmd_fail(r, PLUGD_E_UNKNOWN_COMMAND, "unknown command \"%.64s\" (plugctl help lists them)",
                 name);
    else if (!json_is_object(args))
        cmd_fail(r, PLUGD_E_INVALID_ARGUMENT, "%s: the arguments must be an object", name);
    else if (check_args(r, c, args) == 0)
        handlers[c->id](r, args);
}
