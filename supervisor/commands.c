#include "commands.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capabilities.h"
#include "jsonpack.h"

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

static json_t *nullable(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* {active: [layer], refused: {layer: reason}, violations, last_violation}
 * of the worker's last start */
static json_t *sandbox_json(const struct worker *w)
{
    json_t *active = json_array(), *refused = json_object();
    const struct sb_report *r = w ? &w->confine.report : NULL;
    for (int l = 0; r != NULL && l < SB_LAYER_COUNT; l++) {
        if (r->active & (1u << l))
            json_array_append_new(active, json_string_nocheck(sb_layer_name(l)));
        if (r->refused & (1u << l))
            jsonpack_put(refused, sb_layer_name(l), json_string(r->reason[l]));
    }
    json_t *o = json_object();
    bool ok = jsonpack_put(o, "active", active);
    ok &= jsonpack_put(o, "refused", refused);
    ok &= jsonpack_put(o, "violations", json_integer(w ? (json_int_t)w->confine.violations : 0));
    ok &= jsonpack_put(o, "last_violation",
                       w && w->confine.last_violation[0] ? json_string(w->confine.last_violation)
                                                         : json_null());
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The worker whose figures status, stats and doctor show at the top level
 * (plugin_shown_instance), or NULL. */
static const struct worker *shown_worker(const struct plugin *p)
{
    const struct instance *i = plugin_shown_instance(p);
    return i ? i->w : NULL;
}

static json_t *instances_json(const struct plugin *p)
{
    json_t *list = json_array();
    for (const struct instance *i = p->instances; i != NULL; i = i->next)
        if (instance_is_listed(i))
            json_array_append_new(list, instance_json(i));
    return list;
}

static json_t *plugin_status(const struct plugin *p)
{
    const struct worker *w = shown_worker(p);
    json_t *diff = p->row.diff ? json_loads(p->row.diff, 0, NULL) : json_null();
    uint64_t late = w ? w->late_replies + (w->conn ? ipc_conn_stats(w->conn)->late_replies : 0) : 0;
    json_t *o = json_object();
    bool ok = jsonpack_put(o, "plugin", json_string(p->row.name));
    ok &= jsonpack_put(o, "status", json_string(lc_status_name(p->row.status)));
    ok &= jsonpack_put(o, "version", json_string(p->row.version));
    ok &= jsonpack_put(o, "digest", json_string(p->row.digest));
    ok &= jsonpack_put(o, "pending_version", nullable(p->row.pending_version));
    ok &= jsonpack_put(o, "diff", diff);
    ok &= jsonpack_put(o, "error", nullable(p->row.last_error));
    ok &= jsonpack_put(o, "state", json_string(worker_state_name(w ? w->state : WK_STOPPED)));
    ok &= jsonpack_put(o, "pid", json_integer(w ? w->pid : 0));
    ok &= jsonpack_put(o, "failed", json_boolean(w && w->is_failed));
    ok &= jsonpack_put(o, "restarts", json_integer(w ? (json_int_t)w->restarts : 0));
    ok &= jsonpack_put(o, "calls", json_integer(w ? (json_int_t)w->calls : 0));
    ok &= jsonpack_put(o, "call_errors", json_integer(w ? (json_int_t)w->call_errors : 0));
    ok &= jsonpack_put(o, "faults", json_integer(w ? (json_int_t)w->faults : 0));
    ok &= jsonpack_put(o, "late_replies", json_integer((json_int_t)late));
    ok &= jsonpack_put(o, "dropped_notifications",
                       json_integer(w ? (json_int_t)w->dropped_notifications : 0));
    ok &= jsonpack_put(o, "last_error", json_string(w ? w->last_error.message : ""));
    ok &= jsonpack_put(o, "last_exit", json_string(w ? w->last_exit : ""));
    ok &= jsonpack_put(o, "sandbox", sandbox_json(w));
    ok &= jsonpack_put(o, "instances", instances_json(p));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

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
            json_array_append_new(list, plugin_status(r->d->plugins[i]));
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

static long rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    long pages = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p50 and p99 of the worker's newest routed calls, in ms (0 without any). */
static void call_latency(const struct worker *w, double *p50, double *p99)
{
    size_t n = w->n_latency < WK_LATENCY_SAMPLES ? (size_t)w->n_latency : WK_LATENCY_SAMPLES;
    double sorted[WK_LATENCY_SAMPLES];
    memcpy(sorted, w->call_latency, n * sizeof(double));
    qsort(sorted, n, sizeof(double), compare_doubles);
    *p50 = n ? sorted[(n - 1) / 2] * 1000.0 : 0;
    *p99 = n ? sorted[(size_t)((double)(n - 1) * 0.99)] * 1000.0 : 0;
}

/* A worker's figures as stats shows them; `w` NULL reads as a stopped
 * worker. */
static json_t *worker_figures(const struct worker *w)
{
    double p50 = 0, p99 = 0;
    if (w != NULL)
        call_latency(w, &p50, &p99);
    double uptime = w && w->state == WK_RUNNING ? ev_now(w->loop) - w->running_since : 0;
    return json_pack(
        "{s:I, s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:s}", "pid", (json_int_t)(w ? w->pid : 0),
        "uptime_s", uptime, "restarts", (json_int_t)(w ? w->restarts : 0), "calls",
        (json_int_t)(w ? w->calls : 0), "errors", (json_int_t)(w ? w->call_errors : 0),
        "dropped_notifications", (json_int_t)(w ? w->dropped_notifications : 0), "latency_p50_ms",
        p50, "latency_p99_ms", p99, "rss_kib", (json_int_t)(w && w->pid > 0 ? rss_kib(w->pid) : 0),
        "health", w ? w->last_health : "");
}

/* Each listed instance's version, whether it serves, and its figures. */
static json_t *instances_stats(const struct plugin *p)
{
    json_t *list = json_array();
    for (const struct instance *i = p->instances; list != NULL && i != NULL; i = i->next) {
        if (!instance_is_listed(i))
            continue;
        json_t *one = worker_figures(i->w);
        if (one == NULL || json_object_set_new(one, "version", json_string(i->w->m->version)) < 0 ||
            json_object_set_new(one, "serving", json_boolean(i == plugin_serving_instance(p))) <
                0 ||
            json_array_append_new(list, one) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* The plugin's row: the shown worker's figures at the top level (as
 * status), then every instance's. NULL when out of memory. */
static json_t *plugin_stats(const struct plugin *p)
{
    json_t *stats = json_pack("{s:s, s:s, s:s}", "plugin", p->row.name, "status",
                              lc_status_name(p->row.status), "version", p->row.version);
    json_t *figures = worker_figures(shown_worker(p));
    if (stats == NULL || figures == NULL || json_object_update(stats, figures) < 0 ||
        json_object_set_new(stats, "instances", instances_stats(p)) < 0) {
        json_decref(stats);
        stats = NULL;
    }
    json_decref(figures);
    return stats;
}

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
            json_array_append_new(list, plugin_stats(r->d->plugins[i]));
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
    const struct worker *w = shown_worker(p);
    r->t->reply_json(r, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:s, s:I, s:o}",
                                  "plugin", p->row.name, "status", lc_status_name(p->row.status),
                                  "version", p->row.version, "package", p->row.package_dir,
                                  "manifest", m ? json_string("ok") : json_string(err.message),
                                  "capabilities", caps, "health", w ? w->last_health : "", "error",
                                  nullable(p->row.last_error), "last_worker_error",
                                  w ? w->last_error.message : "", "last_exit",
                                  w ? w->last_exit : "", "restarts",
                                  (json_int_t)(w ? w->restarts : 0), "sandbox", sandbox_json(w)));
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
    [CT_LIST] = cmd_status,         [CT_STATUS] = cmd_status, [CT_INSTALL] = cmd_install,
    [CT_UPGRADE] = cmd_upgrade,     [CT_ENABLE] = cmd_enable, [CT_DISABLE] = cmd_disable,
    [CT_APPROVE] = cmd_approve,     [CT_REJECT] = cmd_reject, [CT_UNINSTALL] = cmd_uninstall,
    [CT_PURGE] = cmd_purge,         [CT_CALL] = cmd_call,     [CT_CONFIG] = cmd_config,
    [CT_SUBSCRIBE] = cmd_subscribe, [CT_LOGS] = cmd_logs,     [CT_STATS] = cmd_stats,
    [CT_DOCTOR] = cmd_doctor,       [CT_AUDIT] = cmd_audit,   [CT_SHUTDOWN] = cmd_shutdown,
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
