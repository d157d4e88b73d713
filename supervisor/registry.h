/* The registry: plugd's one SQLite database in the state folder (WAL,
 * foreign keys, busy timeout, schema version in PRAGMA user_version with
 * forward migrations). plugd is its only writer. Every lifecycle
 * transition is one transaction together with its audit row, so a kill -9
 * at any moment leaves either the old row or the new one. docs/lifecycle.md
 * describes the tables. */
#ifndef PLUGD_REGISTRY_H
#define PLUGD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lifecycle.h"
#include "plugd/error.h"

#define REG_SCHEMA_VERSION 2

struct registry;

/* One row of `plugins`. Every string is owned by the row (NULL when the
 * column is NULL); reg_plugin_copy and reg_plugin_clear manage them. */
struct reg_plugin {
    char *name;
    enum lc_status status;
    char *version, *digest, *package_dir, *manifest; /* the version that runs */
    char *config;                                    /* operator config (JSON), NULL: defaults */
    char *last_error;
    /* an upgrade waiting for approval */
    char *pending_version, *pending_digest, *pending_dir, *pending_manifest;
    char *diff; /* JSON {"added": [...], "removed": [...]} of the last upgrade */
    double installed_at, updated_at, uninstalled_at;
};

/* One row of `audit`. */
struct reg_audit {
    const char *actor;  /* "plugd", "host", "uid:1000", ... */
    const char *action; /* install, load, enable, disable, fail, upgrade, approve, ... */
    const char *reason; /* may be NULL */
};

/* Opens (creating and migrating) the database at `path`. NULL with err. */
struct registry *reg_open(const char *path, struct plugd_error *err);
void reg_close(struct registry *r);

/* Calls `fn` for every plugin row, in name order. -1 with err
 * (storage_error, or no_memory for a row it could not copy) when it could
 * not go through them all; `fn` has seen the rows before. */
int reg_each_plugin(struct registry *r, void (*fn)(const struct reg_plugin *p, void *ud), void *ud,
                    struct plugd_error *err);

/* Writes `p` (the plugin's new row) and its audit row in one transaction,
 * with the packages it names recorded in `versions`. `from` is the status
 * before (-1 for a plugin new to the registry). Nothing is written on
 * failure. */
int reg_save_transition(struct registry *r, const struct reg_plugin *p, int from,
                        const struct reg_audit *a, unsigned flags, struct plugd_error *err);

/* flags of reg_save_transition */
#define REG_PURGE_DATA 1u /* delete the plugin's state in the same transaction */
/* and REG_GEN(step), REG_GEN_KNOWN_GOOD (generations.h): the step of the
 * plugin's generations in the same transaction */

/* The worker of package `digest` of `plugin` runs initialized: its
 * generation is active and known-good (generations.h). */
int reg_mark_known_good(struct registry *r, const char *plugin, const char *digest,
                        struct plugd_error *err);

/* The plugin's generations, newest first, as a JSON array text (caller
 * frees); NULL with err. */
char *reg_history_json(struct registry *r, const char *plugin, struct plugd_error *err);

/* 1 when the registry has seen this package of `plugin`, 0 when not or
 * when it cannot tell (the query failed). */
int reg_has_version(struct registry *r, const char *plugin, const char *digest);

/* Deletes the plugin's state rows (purge, or data past its retention). */
int reg_purge_data(struct registry *r, const char *plugin, struct plugd_error *err);

/* The `n` newest audit rows of `plugin` as a JSON array text (caller
 * frees); NULL with err (storage_error, no_memory). */
char *reg_audit_json(struct registry *r, const char *plugin, int n, struct plugd_error *err);

/* ---------------------------------------------------------- plugin state
 * Values are opaque bytes (the worker's msgpack). */

/* 1 and *value (malloc'd) when found, 0 when not, -1 with err. */
int reg_state_get(struct registry *r, const char *plugin, const char *ns, const char *key,
                  void **value, size_t *len, struct plugd_error *err);
int reg_state_set(struct registry *r, const char *plugin, const char *ns, const char *key,
                  const void *value, size_t len, struct plugd_error *err);
/* 1 when a value was deleted, 0 when there was none, -1 with err. */
int reg_state_delete(struct registry *r, const char *plugin, const char *ns, const char *key,
                     struct plugd_error *err);
/* Calls `fn` for each key of `ns` greater than `after` (NULL: from the
 * start), in order, at most `limit` keys. Returns the count or -1. */
int reg_state_list(struct registry *r, const char *plugin, const char *ns, const char *after,
                   int limit, void (*fn)(const char *key, void *ud), void *ud,
                   struct plugd_error *err);
/* Number of state rows of `plugin`; -1 when it cannot count them. */
int64_t reg_state_count(struct registry *r, const char *plugin);

/* Deep copy of `src` into `dst` (cleared first). -1 on no memory. */
int reg_plugin_copy(struct reg_plugin *dst, const struct reg_plugin *src);
void reg_plugin_clear(struct reg_plugin *p);

/* Replaces the string `*field` by a copy of `value` (NULL clears it). */
int reg_set_str(char **field, const char *value);

/* Wall-clock seconds, the registry's time stamps. */
double reg_now(void);

#endif
