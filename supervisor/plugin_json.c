/* What status, list, stats and doctor say about a plugin: its row, the
 * shown worker's figures and each instance's, as JSON. The fields are the
 * command table's (supervisor/command_table.c, docs/control.md). */
#include "plugin_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"
#include "jsonpack.h"
#include "lifecycle.h"
#include "plugd/ipc.h"

/* {active: [layer], refused: {layer: reason}, violations, last_violation}
 * of the worker's last start */
json_t *plugin_json_sandbox(const struct worker *w)
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

static json_t *instances_json(const struct plugin *p)
{
    json_t *list = json_array();
    for (const struct instance *i = p->instances; i != NULL; i = i->next)
        if (instance_is_listed(i))
            json_array_append_new(list, instance_json(i));
    return list;
}

json_t *plugin_json_status(const struct plugin *p)
{
    const struct worker *w = plugin_shown_worker(p);
    json_t *diff = p->row.diff ? json_loads(p->row.diff, 0, NULL) : json_null();
    uint64_t late = w ? w->late_replies + (w->conn ? ipc_conn_stats(w->conn)->late_replies : 0) : 0;
    json_t *o = json_object();
    bool ok = jsonpack_put(o, "plugin", json_string(p->row.name));
    ok &= jsonpack_put(o, "status", json_string(lc_status_name(p->row.status)));
    ok &= jsonpack_put(o, "version", json_string(p->row.version));
    ok &= jsonpack_put(o, "digest", json_string(p->row.digest));
    ok &= jsonpack_put(o, "pending_version", jsonpack_string_or_null(p->row.pending_version));
    ok &= jsonpack_put(o, "diff", diff);
    ok &= jsonpack_put(o, "error", jsonpack_string_or_null(p->row.last_error));
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
    ok &= jsonpack_put(o, "sandbox", plugin_json_sandbox(w));
    ok &= jsonpack_put(o, "instances", instances_json(p));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

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
json_t *plugin_json_stats(const struct plugin *p)
{
    json_t *stats = json_pack("{s:s, s:s, s:s}", "plugin", p->row.name, "status",
                              lc_status_name(p->row.status), "version", p->row.version);
    json_t *figures = worker_figures(plugin_shown_worker(p));
    if (stats == NULL || figures == NULL || json_object_update(stats, figures) < 0 ||
        json_object_set_new(stats, "instances", instances_stats(p)) < 0) {
        json_decref(stats);
        stats = NULL;
    }
    json_decref(figures);
    return stats;
}
