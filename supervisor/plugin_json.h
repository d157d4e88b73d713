/* A plugin as status, list, stats and doctor show it (plugin_json.c). */
#ifndef PLUGD_PLUGIN_JSON_H
#define PLUGD_PLUGIN_JSON_H

#include <jansson.h>

#include "plugd.h"

/* The status fields of docs/control.md (instances included); NULL when out
 * of memory. */
json_t *plugin_json_status(const struct plugin *p);

/* The stats fields: the shown worker's figures, then each instance's;
 * NULL when out of memory. */
json_t *plugin_json_stats(const struct plugin *p);

/* {active, refused, violations, last_violation} of `w`'s last start (NULL:
 * none). */
json_t *plugin_json_sandbox(const struct worker *w);

#endif
