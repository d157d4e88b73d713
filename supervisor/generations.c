#include "generations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema 1 → 2. A plugin's current package becomes generation 1: active
 * (candidate while it is still installed, never loaded), known-good when
 * its status says it ran (ready, disabled, upgrade_pending), ended when
 * uninstalled; a pending upgrade becomes candidate 2. docs/decisions.md
 * says why. */
const char gen_migration_sql[] =
    "CREATE TABLE generations ("
    "  plugin TEXT NOT NULL, number INTEGER NOT NULL CHECK (number >= 1),"
    "  digest TEXT NOT NULL, package_dir TEXT NOT NULL, version TEXT NOT NULL,"
    "  manifest TEXT NOT NULL, config TEXT, capabilities TEXT NOT NULL, protocol INTEGER,"
    "  actor TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, ended_at REAL,"
    "  outcome TEXT NOT NULL CHECK (outcome IN ('candidate','active','superseded','failed',"
    "                                           'rejected','rolled_back')),"
    "  is_known_good INTEGER NOT NULL DEFAULT 0 CHECK (is_known_good IN (0, 1)),"
    "  PRIMARY KEY (plugin, number));"
    "INSERT INTO generations (plugin, number, digest, package_dir, version, manifest, config,"
    "  capabilities, protocol, actor, created_at, started_at, ended_at, outcome, is_known_good)"
    " SELECT name, 1, digest, package_dir, version, manifest, config,"
    "  coalesce(json_extract(manifest, '$.capabilities'), '[]'),"
    "  json_extract(manifest, '$.protocol'), 'migration', installed_at,"
    "  CASE WHEN status = 'installed' THEN NULL ELSE installed_at END,"
    "  CASE WHEN status = 'uninstalled' THEN uninstalled_at END,"
    "  CASE WHEN status = 'installed' THEN 'candidate' ELSE 'active' END,"
    "  status IN ('ready', 'disabled', 'upgrade_pending') FROM plugins;"
    "INSERT INTO generations (plugin, number, digest, package_dir, version, manifest, config,"
    "  capabilities, protocol, actor, created_at, outcome)"
    " SELECT name, 2, pending_digest, pending_dir, pending_version, pending_manifest, config,"
    "  coalesce(json_extract(pending_manifest, '$.capabilities'), '[]'),"
    "  json_extract(pending_manifest, '$.protocol'), 'migration', updated_at, 'candidate'"
    " FROM plugins WHERE pending_version IS NOT NULL;";

/* Runs `sql` with ?1 the plugin, ?2 `now`, ?3 `text`, ?4 `number`. */
static int exec_bound(sqlite3 *db, const char *sql, const char *plugin, double now,
                      const char *text, sqlite3_int64 number)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    reg_bind_text(st, 1, plugin);
    sqlite3_bind_double(st, 2, now);
    reg_bind_text(st, 3, text);
    sqlite3_bind_int64(st, 4, number);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The number of the plugin's newest generation with `outcome_sql` (a
 * condition) and, when given, `digest`; 0 when none, -1 on failure. */
static sqlite3_int64 newest(sqlite3 *db, const char *plugin, const char *outcome_sql,
                            const char *digest)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(max(number), 0) FROM generations WHERE plugin = ?1 AND (%s)"
             " AND (?2 IS NULL OR digest = ?2)",
             outcome_sql);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    reg_bind_text(st, 1, plugin);
    reg_bind_text(st, 2, digest);
    sqlite3_int64 n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

/* Every other active generation of the plugin is superseded by `keep`. */
static int supersede_others(sqlite3 *db, const char *plugin, sqlite3_int64 keep, double now)
{
    return exec_bound(db,
                      "UPDATE generations SET outcome = 'superseded',"
                      " ended_at = coalesce(ended_at, ?2)"
                      " WHERE plugin = ?1 AND outcome = 'active' AND number != ?4",
                      plugin, now, NULL, keep);
}

/* A new generation of the row's running package (or, `is_pending`, of its
 * pending one) with `outcome`. */
static int insert(sqlite3 *db, const struct reg_plugin *p, bool is_pending, const char *outcome,
                  const char *actor, double now, bool is_known_good)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            db,
            "INSERT INTO generations (plugin, number, digest, package_dir, version, manifest,"
            " config, capabilities, protocol, actor, created_at, started_at, outcome,"
            " is_known_good) SELECT ?1, coalesce(max(number), 0) + 1, ?2, ?3, ?4, ?5, ?6,"
            " coalesce(json_extract(?5, '$.capabilities'), '[]'), json_extract(?5, '$.protocol'),"
            " ?7, ?8, CASE WHEN ?9 = 'active' THEN ?8 END, ?9, ?10"
            " FROM generations WHERE plugin = ?1",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    reg_bind_text(st, 1, p->name);
    reg_bind_text(st, 2, is_pending ? p->pending_digest : p->digest);
    reg_bind_text(st, 3, is_pending ? p->pending_dir : p->package_dir);
    reg_bind_text(st, 4, is_pending ? p->pending_version : p->version);
    reg_bind_text(st, 5, is_pending ? p->pending_manifest : p->manifest);
    reg_bind_text(st, 6, p->config);
    reg_bind_text(st, 7, actor);
    sqlite3_bind_double(st, 8, now);
    reg_bind_text(st, 9, outcome);
    sqlite3_bind_int(st, 10, is_known_good);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The newest candidate becomes active (with the row's config, which may
 * have changed while it waited); the one before is superseded. */
static int activate(sqlite3 *db, const struct reg_plugin *p, double now, bool is_known_good)
{
    sqlite3_int64 n = newest(db, p->name, "outcome = 'candidate'", p->digest);
    if (n <= 0)
        return (int)n; /* nothing waits: a row from before generations, kept as it is */
    const char *sql = is_known_good
                          ? "UPDATE generations SET outcome = 'active', started_at = ?2,"
                            " config = ?3, is_known_good = 1 WHERE plugin = ?1 AND number = ?4"
                          : "UPDATE generations SET outcome = 'active', started_at = ?2,"
                            " config = ?3 WHERE plugin = ?1 AND number = ?4";
    if (exec_bound(db, sql, p->name, now, p->config, n) < 0)
        return -1;
    return supersede_others(db, p->name, n, now);
}

/* An upgrade or config change: a new active generation, except while the install's
 * candidate has not loaded yet (it takes the config) or once uninstalled
 * (nothing runs: the config waits for a reinstall). */
static int switch_now(sqlite3 *db, const struct reg_plugin *p, const char *actor, double now,
                      bool is_known_good)
{
    if (p->status == LC_UNINSTALLED)
        return 0;
    if (p->status == LC_INSTALLED)
        return exec_bound(db,
                          "UPDATE generations SET config = ?3 WHERE plugin = ?1 AND number ="
                          " (SELECT max(number) FROM generations WHERE plugin = ?1"
                          "  AND outcome = 'candidate')",
                          p->name, now, p->config, 0);
    if (insert(db, p, false, "active", actor, now, is_known_good) < 0)
        return -1;
    sqlite3_int64 n = newest(db, p->name, "1", NULL);
    return n < 0 ? -1 : supersede_others(db, p->name, n, now);
}

int gen_apply(sqlite3 *db, enum gen_step step, const struct reg_plugin *p, const char *actor,
              double now, unsigned flags)
{
    bool is_known_good = (flags & REG_GEN_KNOWN_GOOD) != 0;
    switch (step) {
    case GEN_NONE:
        return 0;
    case GEN_CANDIDATE:
        return insert(db, p, p->pending_version != NULL, "candidate", actor, now, false);
    case GEN_SWITCH:
        return switch_now(db, p, actor, now, is_known_good);
    case GEN_ACTIVATE:
        return activate(db, p, now, is_known_good);
    case GEN_REJECT:
        return exec_bound(db,
                          "UPDATE generations SET outcome = 'rejected', ended_at = ?2"
                          " WHERE plugin = ?1 AND outcome = 'candidate'",
                          p->name, now, NULL, 0);
    case GEN_FAIL: {
        /* what the row runs: the install's candidate, or the active one */
        sqlite3_int64 n = newest(db, p->name, "outcome IN ('active', 'candidate')", p->digest);
        if (n <= 0)
            return (int)n;
        return exec_bound(db,
                          "UPDATE generations SET outcome = 'failed', ended_at = ?2"
                          " WHERE plugin = ?1 AND number = ?4 AND is_known_good = 0",
                          p->name, now, NULL, n);
    }
    case GEN_END:
        return exec_bound(db,
                          "UPDATE generations SET ended_at = ?2 WHERE plugin = ?1"
                          " AND outcome = 'active' AND ended_at IS NULL;",
                          p->name, now, NULL, 0) < 0 ||
                       exec_bound(db,
                                  "UPDATE generations SET outcome = 'rejected', ended_at = ?2"
                                  " WHERE plugin = ?1 AND outcome = 'candidate'",
                                  p->name, now, NULL, 0) < 0
                   ? -1
                   : 0;
    }
    return 0;
}

int gen_mark_known_good(sqlite3 *db, const char *plugin, const char *digest, double now)
{
    sqlite3_int64 n = newest(db, plugin, "outcome IN ('active', 'failed')", digest);
    if (n <= 0)
        return (int)n;
    /* every start and restart comes here: write only when it changes */
    sqlite3_int64 todo = newest(
        db, plugin, "outcome = 'failed' OR (outcome = 'active' AND is_known_good = 0)", digest);
    if (todo != n)
        return todo < 0 ? -1 : 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (exec_bound(db,
                   "UPDATE generations SET outcome = 'active', is_known_good = 1,"
                   " started_at = coalesce(started_at, ?2), ended_at = NULL"
                   " WHERE plugin = ?1 AND number = ?4",
                   plugin, now, NULL, n) < 0 ||
        supersede_others(db, plugin, n, now) < 0 ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Each generation beside the one it followed: the newest lower-numbered
 * one that was not rejected (a rejected candidate never ran, so the next
 * one is compared with what ran before it). */
char *gen_history_json(sqlite3 *db, const char *plugin)
{
    static const char sql[] =
        "SELECT coalesce(json_group_array(json(row)), '[]') FROM (SELECT json_object("
        " 'generation', g.number, 'version', g.version, 'digest', g.digest,"
        " 'package_dir', g.package_dir, 'protocol', g.protocol,"
        " 'capabilities', json(g.capabilities),"
        " 'capabilities_added', (SELECT json_group_array(c.value) FROM json_each(g.capabilities) c"
        "   WHERE c.value NOT IN (SELECT value FROM json_each(p.capabilities))),"
        " 'capabilities_removed', (SELECT json_group_array(c.value)"
        "   FROM json_each(p.capabilities) c"
        "   WHERE c.value NOT IN (SELECT value FROM json_each(g.capabilities))),"
        " 'config_changed', json(CASE WHEN p.number IS NOT NULL AND g.config IS NOT p.config"
        "   THEN 'true' ELSE 'false' END),"
        " 'created_at', g.created_at, 'started_at', g.started_at, 'ended_at', g.ended_at,"
        " 'outcome', g.outcome, 'actor', g.actor,"
        " 'known_good', json(CASE WHEN g.is_known_good THEN 'true' ELSE 'false' END)) AS row"
        " FROM generations g LEFT JOIN generations p ON p.plugin = g.plugin AND p.number ="
        "  (SELECT max(number) FROM generations WHERE plugin = g.plugin AND number < g.number"
        "   AND outcome != 'rejected')"
        " WHERE g.plugin = ?1 ORDER BY g.number DESC)";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    reg_bind_text(st, 1, plugin);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *text = sqlite3_column_text(st, 0);
        out = text ? strdup((const char *)text) : NULL;
    }
    sqlite3_finalize(st);
    return out;
}
