/* The lifecycle's in-process API (plugd.h) driven directly, as the control
 * socket will drive it: a plugd in this test's own process, its registry in
 * a temp folder, a real hello worker. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugd.h"

static struct plugd d;
static char dir[] = "/tmp/plugd-api.XXXXXX";
static struct ev_loop *loop;
static FILE *devnull;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    loop = ev_default_loop(EVFLAG_AUTO);
    devnull = fopen("/dev/null", "w");
    log_set_output(devnull);
    struct plugd_options o = {.state_dir = dir};
    struct plugd_error err;
    cr_assert_eq(plugd_open(&d, loop, &o, &err), 0, "%s", err.message);
}

static bool is_any_running(void)
{
    for (size_t i = 0; i < d.n_plugins; i++)
        if (!plugin_is_stopped(d.plugins[i]))
            return true;
    return false;
}

/* The plugin's serving worker, NULL when it has none. */
static struct worker *worker_of(const struct plugin *p)
{
    struct instance *i = plugin_serving_instance(p);
    return i ? i->w : NULL;
}

static void teardown(void)
{
    plugd_stop_all(&d);
    while (is_any_running())
        ev_run(loop, EVRUN_ONCE);
    plugd_close(&d);
    log_set_output(stderr);
    fclose(devnull);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(plugins_api, .init = setup, .fini = teardown, .timeout = 60);

static bool run_until_state(struct plugin *p, enum wk_state state)
{
    double until = ev_time() + 10.0;
    while (!(worker_of(p) != NULL && worker_of(p)->state == state) && ev_time() < until)
        ev_run(loop, EVRUN_ONCE);
    return worker_of(p) != NULL && worker_of(p)->state == state;
}

struct collector {
    int n;
    char names[32][64];
};

static int collect(const struct ev_bus_event *e, void *ud)
{
    struct collector *c = ud;
    if (c->n < 32)
        snprintf(c->names[c->n], sizeof(c->names[0]), "%s", e->name);
    c->n++;
    return 0;
}

Test(plugins_api, install_disable_enable_uninstall_in_process)
{
    struct collector events = {0};
    struct ev_bus_sub *s = ev_bus_subscribe(d.bus, collect, NULL, &events);
    ev_bus_sub_add(s, "plugin.*", NULL, NULL);

    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s/examples/hello", getenv("PLUGD_BUILD_ROOT"));
    struct plugd_error err;
    cr_assert_eq(plugd_install(&d, src, "test", &err), 0, "%s", err.message);
    struct plugin *p = plugd_find(&d, "hello", 5);
    cr_assert_not_null(p);
    cr_assert_eq(p->row.status, LC_INSTALLED);
    cr_assert(run_until_state(p, WK_RUNNING));
    cr_assert_eq(p->row.status, LC_READY);
    cr_assert_eq(strncmp(p->row.package_dir, dir, strlen(dir)), 0,
                 "the worker runs from plugd's copy of the package");

    cr_assert_eq(plugd_disable(&d, "hello", "maintenance", "test", &err), 0);
    cr_assert_eq(p->row.status, LC_DISABLED, "the status is committed before the worker stops");
    cr_assert(run_until_state(p, WK_STOPPED));
    cr_assert_eq(plugd_disable(&d, "hello", NULL, "test", &err), -1);
    cr_assert_eq(err.code, PLUGD_E_INVALID_TRANSITION);
    cr_assert_str_eq(err.message, "disable: a plugin that is disabled cannot become disabled");

    cr_assert_eq(plugd_enable(&d, "hello", "test", &err), 0);
    cr_assert(run_until_state(p, WK_RUNNING));
    cr_assert_eq(plugd_uninstall(&d, "hello", false, "test", &err), 0);
    cr_assert(run_until_state(p, WK_STOPPED));
    cr_assert_eq(p->row.status, LC_UNINSTALLED);

    char *audit = reg_audit_json(d.reg, "hello", 100, &err);
    cr_assert_not_null(audit);
    json_t *rows = json_loads(audit, 0, NULL);
    free(audit);
    cr_assert_eq(json_array_size(rows), 5, "install, load, disable, enable, uninstall");
    json_t *disable = json_array_get(rows, 2);
    cr_assert_str_eq(json_string_value(json_object_get(disable, "reason")), "maintenance");
    cr_assert_str_eq(json_string_value(json_object_get(disable, "actor")), "test");
    json_decref(rows);

    cr_assert_str_eq(events.names[0], "plugin.status_changed");
    cr_assert_str_eq(events.names[events.n - 1], "plugin.worker_stopped");
    ev_bus_unsubscribe(s);
}

Test(plugins_api, a_bad_package_is_refused_and_changes_nothing)
{
    char src[PATH_MAX];
    snprintf(src, sizeof(src), "%s/tests/fixtures/manifests/capability-unknown",
             getenv("PLUGD_SOURCE_ROOT"));
    struct plugd_error err;
    cr_assert_eq(plugd_install(&d, src, "test", &err), -1);
    cr_assert_eq(err.code, PLUGD_E_INVALID_MANIFEST);
    cr_assert_eq(d.n_plugins, 0);
    cr_assert_eq(plugd_enable(&d, "ok", "test", &err), -1);
    cr_assert_eq(err.code, PLUGD_E_PLUGIN_NOT_FOUND);
}
