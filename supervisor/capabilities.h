/* The capability table: each capability a manifest may ask for, the host
 * services it grants and the sandbox relaxations it makes
 * (docs/manifest.md lists it). A capability not in this table is refused at
 * install. */
#ifndef PLUGD_CAPABILITIES_H
#define PLUGD_CAPABILITIES_H

#include <stddef.h>

struct capability {
    const char *name;
    const char *description;
    const char *const *services; /* NULL-terminated host service methods it grants */
    const char *const *sandbox;  /* NULL-terminated sandbox relaxations */
};

const struct capability *cap_find(const char *name);
const struct capability *cap_table(size_t *n);

/* The capability that grants host service `method`; NULL when none does
 * (the service is open to every worker). */
const struct capability *cap_granting(const char *method);

#endif
