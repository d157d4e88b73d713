#include "instance.h"

#include "jsonpack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugd.h"

struct instance *instance_add(struct plugin *p, struct manifest *m, const char *digest,
                              wk_state_fn on_state, wk_health_fn on_health)
{
    struct instance *i = calloc(1, sizeof(*i));
    if (i == NULL || (i->w = worker_new(p->d->loop, m, on_state, i)) == NULL) {
        log_plugd("error", p->row.name, "no memory for a worker of %s", m->version);
        manifest_free(m);
        free(i);
        return NULL;
    }
    i->p = p;
    snprintf(i->digest, sizeof(i->digest), "%s", digest ? digest : "");
    i->w->on_health = on_health;
    i->w->services = &p->d->services;
    i->w->confine.system = &p->d->sandbox;
    i->w->confine.state_dir = p->d->state_dir;
    i->next = p->instances;
    p->instances = i;
    return i;
}

struct instance *plugin_serving_instance(const struct plugin *p)
{
    for (struct instance *i = p->instances; i != NULL; i = i->next)
        if (!i->is_retiring)
            return i;
    return NULL;
}

struct instance *plugin_shown_instance(const struct plugin *p)
{
    for (struct instance *i = p->instances; i != NULL; i = i->next)
        if (i->is_retiring && i->w->state != WK_STOPPED)
            return i;
    return plugin_serving_instance(p);
}

void plugin_route_call(struct plugin *p, const char *method, const msgpack_object *params,
                       double timeout, wk_reply_fn reply, void *ud)
{
    struct instance *i = lc_serves_calls(p->row.status) ? plugin_serving_instance(p) : NULL;
    if (i == NULL) {
        struct plugd_error err;
        plugd_error_set(&err, PLUGD_E_WORKER_UNAVAILABLE, "call: %s is %s", p->row.name,
                        lc_status_name(p->row.status));
        reply(&err, NULL, ud);
        return;
    }
    worker_call(i->w, method, params, timeout, reply, ud);
}

void instance_retire(struct instance *i)
{
    i->is_retiring = true;
    worker_stop(i->w);
    if (i->w->state == WK_STOPPED)
        instances_reap_later(i->p->d);
}

bool plugin_is_draining(const struct plugin *p)
{
    for (struct instance *i = p->instances; i != NULL; i = i->next)
        if (i->is_retiring && i->w->state != WK_STOPPED)
            return true;
    return false;
}

bool plugin_is_stopped(const struct plugin *p)
{
    for (struct instance *i = p->instances; i != NULL; i = i->next)
        if (i->w->state != WK_STOPPED)
            return false;
    return true;
}

void plugin_stop_instances(struct plugin *p)
{
    for (struct instance *i = p->instances; i != NULL; i = i->next)
        worker_stop(i->w);
}

void plugin_free_instances(struct plugin *p)
{
    while (p->instances != NULL) {
        struct instance *i = p->instances;
        p->instances = i->next;
        worker_free(i->w);
        free(i);
    }
}

const struct worker *plugin_shown_worker(const struct plugin *p)
{
    const struct instance *i = plugin_shown_instance(p);
    return i ? i->w : NULL;
}

bool instance_is_listed(const struct instance *i)
{
    return !(i->is_retiring && i->w->state == WK_STOPPED);
}

/* ------------------------------------------------------------ reaping */

static void reap_plugin(struct plugin *p)
{
    for (struct instance **at = &p->instances; *at != NULL;) {
        struct instance *i = *at;
        if (i->is_retiring && i->w->state == WK_STOPPED) {
            *at = i->next;
            worker_free(i->w);
            free(i);
        } else {
            at = &i->next;
        }
    }
}

static void on_reap(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct plugd *d = w->data;
    ev_idle_stop(loop, w);
    for (size_t i = 0; i < d->n_plugins; i++)
        reap_plugin(d->plugins[i]);
}

void instances_reap_later(struct plugd *d)
{
    ev_idle_start(d->loop, &d->reap_w);
}

void instances_init(struct plugd *d)
{
    ev_idle_init(&d->reap_w, on_reap);
    d->reap_w.data = d;
}

void instances_fini(struct plugd *d)
{
    if (d->loop != NULL)
        ev_idle_stop(d->loop, &d->reap_w);
}

/* ------------------------------------------------------------ status */

json_t *instance_json(const struct instance *i)
{
    const struct worker *w = i->w;
    json_t *o = json_object();
    bool ok = jsonpack_put(o, "version", json_string(w->m->version));
    ok &= jsonpack_put(o, "digest", json_string(i->digest));
    ok &= jsonpack_put(o, "serving", json_boolean(i == plugin_serving_instance(i->p)));
    ok &= jsonpack_put(o, "state", json_string(worker_state_name(w->state)));
    ok &= jsonpack_put(o, "pid", json_integer(w->pid));
    ok &= jsonpack_put(o, "started_at",
                       w->running_since > 0 ? json_real(w->running_since) : json_null());
    ok &= jsonpack_put(o, "restarts", json_integer((json_int_t)w->restarts));
    ok &= jsonpack_put(o, "calls", json_integer((json_int_t)w->calls));
    ok &= jsonpack_put(o, "call_errors", json_integer((json_int_t)w->call_errors));
    ok &= jsonpack_put(o, "faults", json_integer((json_int_t)w->faults));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
