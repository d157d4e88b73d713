#include "capabilities.h"

#include <string.h>

#include "manifest.h"

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE      ((const char *const[]){NULL})

/* One row per capability; `sandbox` is filled from `relax` (name_relaxations). */
static struct capability table[] = {
    {"events.emit", "emit events in the plugin's own namespace plugin.<name>.<event>",
     LIST("events.emit"), 0, NULL},
    {"events.subscribe", "receive events that match a pattern and filter", LIST("events.subscribe"),
     0, NULL},
    {"plugin.state.read", "read the plugin's own state", LIST("state.get", "state.list"), 0, NULL},
    {"plugin.state.write", "write and delete the plugin's own state",
     LIST("state.set", "state.delete"), 0, NULL},
    {"net.outbound",
     "open outbound network connections (the host's network namespace; socket, connect, bind)",
     NONE, SB_RELAX_NETWORK, NULL},
    {"fs.read", "read everything under /usr (every worker reads its package and the libraries)",
     NONE, SB_RELAX_READ_USR, NULL},
    {"fs.data", "a read-write data folder of its own that survives restarts ($PLUGD_DATA)", NONE,
     SB_RELAX_DATA, NULL},
    {"process.spawn", "start processes (fork, exec of programs under /usr, signals to them)", NONE,
     SB_RELAX_SPAWN, NULL},
    {"host.call", "call the services the host application serves, as host.<method>", LIST("host.*"),
     0, NULL},
};

#define N_CAPS (sizeof(table) / sizeof(table[0]))

/* What doctor and docs/manifest.md call each relaxation. */
static const struct {
    uint32_t bit;
    const char *name;
} relaxations[] = {
    {SB_RELAX_NETWORK, "network"},
    {SB_RELAX_READ_USR, "read /usr"},
    {SB_RELAX_DATA, "data folder"},
    {SB_RELAX_SPAWN, "processes"},
};

#define N_RELAX (sizeof(relaxations) / sizeof(relaxations[0]))

const char *cap_relax_name(uint32_t bit)
{
    for (size_t i = 0; i < N_RELAX; i++)
        if (relaxations[i].bit == bit)
            return relaxations[i].name;
    return NULL;
}

/* Each row's `sandbox` list, from its mask, once (plugd is single-threaded). */
static void name_relaxations(void)
{
    static const char *names[N_CAPS][N_RELAX + 1];
    static bool is_named;
    if (is_named)
        return;
    for (size_t i = 0; i < N_CAPS; i++) {
        size_t n = 0;
        for (size_t j = 0; j < N_RELAX; j++)
            if (table[i].relax & relaxations[j].bit)
                names[i][n++] = relaxations[j].name;
        table[i].sandbox = names[i];
    }
    is_named = true;
}

const struct capability *cap_table(size_t *n)
{
    name_relaxations();
    *n = N_CAPS;
    return table;
}

const struct capability *cap_find(const char *name)
{
    name_relaxations();
    for (size_t i = 0; i < N_CAPS; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

static bool lists(const struct capability *c, const char *method)
{
    for (const char *const *s = c->services; *s != NULL; s++)
        if (strcmp(*s, method) == 0)
            return true;
    return false;
}

const struct capability *cap_granting(const char *method)
{
    name_relaxations();
    for (size_t i = 0; i < N_CAPS; i++)
        if (lists(&table[i], method))
            return &table[i];
    return NULL;
}

bool cap_grants(const struct manifest *m, const char *method)
{
    if (cap_granting(method) == NULL)
        return true;
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const struct capability *c = cap_find(m->capabilities[i]);
        if (c != NULL && lists(c, method))
            return true;
    }
    return false;
}

uint32_t cap_relaxations(const struct manifest *m)
{
    uint32_t relax = 0;
    for (size_t i = 0; i < m->n_capabilities; i++) {
        const struct capability *c = cap_find(m->capabilities[i]);
        if (c != NULL) /* the manifest was validated: always */
            relax |= c->relax;
    }
    return relax;
}
