#include "capabilities.h"

#include <string.h>

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE      ((const char *const[]){NULL})

static const struct capability table[] = {
    {"events.emit", "emit events in the plugin's own namespace plugin.<name>.<event>",
     LIST("events.emit"), NONE},
    {"events.subscribe", "receive events that match a pattern and filter", LIST("events.subscribe"),
     NONE},
    {"plugin.state.read", "read the plugin's own state", LIST("state.get", "state.list"), NONE},
    {"plugin.state.write", "write and delete the plugin's own state",
     LIST("state.set", "state.delete"), NONE},
    {"net.outbound",
     "open outbound network connections (the host's network namespace; socket, connect, bind)",
     NONE, LIST("network")},
    {"fs.read", "read everything under /usr (every worker reads its package and the libraries)",
     NONE, LIST("read /usr")},
    {"fs.data", "a read-write data folder of its own that survives restarts ($PLUGD_DATA)", NONE,
     LIST("data folder")},
    {"process.spawn", "start processes (fork, exec of programs under /usr, signals to them)", NONE,
     LIST("processes")},
    {"host.call", "call the services the host application serves, as host.<method>", LIST("host.*"),
     NONE},
};

const struct capability *cap_table(size_t *n)
{
    *n = sizeof(table) / sizeof(table[0]);
    return table;
}

const struct capability *cap_find(const char *name)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const struct capability *cap_granting(const char *method)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        for (const char *const *s = table[i].services; *s != NULL; s++)
            if (strcmp(*s, method) == 0)
                return &table[i];
    return NULL;
}
