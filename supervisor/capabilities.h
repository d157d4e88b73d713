/* The capability table: each capability a manifest may ask for, the host
 * services it grants and the sandbox relaxations it makes (a mask of
 * enum sb_relax). docs/manifest.md lists it and
 * tests/supervisor/test_capabilities.c checks the list against it. Adding a
 * capability is one row of capabilities.c; a capability not in the table is
 * refused at install. */
#ifndef PLUGD_CAPABILITIES_H
#define PLUGD_CAPABILITIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox.h"

struct manifest;

struct capability {
    const char *name;
    const char *description;
    const char *const *services; /* NULL-terminated host services it grants ("host.*":
                                    every service of the host application) */
    uint32_t relax;              /* enum sb_relax: what it relaxes in the sandbox */
    const char *const *sandbox;  /* NULL-terminated names of those relaxations (doctor) */
};

const struct capability *cap_find(const char *name);
const struct capability *cap_table(size_t *n);

/* The first capability that grants host service `method`; NULL when none
 * does (the service is open to every worker). */
const struct capability *cap_granting(const char *method);

/* True when `m` may call host service `method`: no capability lists it, or
 * one of m's capabilities does. */
bool cap_grants(const struct manifest *m, const char *method);

/* The sandbox relaxations (enum sb_relax) m's capabilities make together. */
uint32_t cap_relaxations(const struct manifest *m);

/* The name of one relaxation bit ("network", "read /usr", ...). */
const char *cap_relax_name(uint32_t bit);

#endif
