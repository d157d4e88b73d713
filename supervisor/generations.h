/* Generations: the numbered history of what each plugin ran (issue 14).
 * Every install, upgrade, approve, reject, config change and failure moves
 * the `generations` table one step (enum gen_step) inside the transaction
 * of the plugin's row and its audit row (reg_save_transition), so the
 * history never disagrees with the status. docs/lifecycle.md
 * "Generations" describes the table and its outcomes. */
#ifndef PLUGD_GENERATIONS_H
#define PLUGD_GENERATIONS_H

#include <sqlite3.h>

#include "registry.h"

/* registry.c: binds `s` (borrowed until the step), NULL as SQL NULL; the
 * generations' statements share it with the registry's. */
void reg_bind_text(sqlite3_stmt *st, int i, const char *s);

/* What a transition does to the generations of its plugin. */
enum gen_step {
    GEN_NONE,
    GEN_CANDIDATE, /* a new generation waits: install (until load), upgrade_pending */
    GEN_SWITCH,    /* a new generation is active at once (upgrade, config); the old is superseded */
    GEN_ACTIVATE,  /* the newest candidate becomes active (load, approve); the old is superseded */
    GEN_REJECT,    /* the newest candidate is rejected */
    GEN_FAIL,      /* the current generation failed, unless it was known-good */
    GEN_END,       /* uninstall: the current generation ends, a waiting candidate is rejected */
};

/* The step of reg_save_transition's flags, and the flag marking the new
 * or activated generation known-good (its worker runs initialized). */
#define REG_GEN(step)       ((unsigned)(step) << 4)
#define REG_GEN_STEP(flags) ((enum gen_step)(((flags) >> 4) & 0xfu))
#define REG_GEN_KNOWN_GOOD  2u

/* The migration from schema 1: the table, and each plugin's current
 * package as generation 1 (and its pending upgrade as a candidate 2). */
extern const char gen_migration_sql[];

/* Applies `step` for the plugin row `p` (already written) by `actor` at
 * `now`, inside the caller's transaction. -1 (sqlite's message in the
 * db) on failure. */
int gen_apply(sqlite3 *db, enum gen_step step, const struct reg_plugin *p, const char *actor,
              double now, unsigned flags);

/* The worker of `digest` runs initialized: the current generation of
 * `plugin` (active, or failed before) is active and known-good. */
int gen_mark_known_good(sqlite3 *db, const char *plugin, const char *digest, double now);

/* The plugin's generations, newest first, as a JSON array text (caller
 * frees); NULL on failure or no memory. */
char *gen_history_json(sqlite3 *db, const char *plugin);

#endif
