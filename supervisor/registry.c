#include "registry.h"

#include "generations.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct registry {
    sqlite3 *db;
    sqlite3_stmt *state_get, *state_set, *state_delete;
};

/* Forward migrations: migrations[i] takes the schema from version i to i+1. */
static const char *const migrations[] = {
    "CREATE TABLE versions ("
    "  plugin TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL,"
    "  package_dir TEXT NOT NULL, manifest TEXT NOT NULL, installed_at REAL NOT NULL,"
    "  PRIMARY KEY (plugin, version, digest));"
    "CREATE TABLE plugins ("
    "  name TEXT PRIMARY KEY,"
    "  status TEXT NOT NULL CHECK (status IN ('installed','ready','disabled','error',"
    "                                          'upgrade_pending','uninstalled')),"
    "  version TEXT NOT NULL, digest TEXT NOT NULL, package_dir TEXT NOT NULL,"
    "  manifest TEXT NOT NULL, config TEXT, last_error TEXT,"
    "  pending_version TEXT, pending_digest TEXT, pending_dir TEXT, pending_manifest TEXT,"
    "  diff TEXT, installed_at REAL NOT NULL, updated_at REAL NOT NULL, uninstalled_at REAL,"
    "  CHECK ((status = 'upgrade_pending') = (pending_version IS NOT NULL)),"
    "  FOREIGN KEY (name, version, digest) REFERENCES versions (plugin, version, digest),"
    "  FOREIGN KEY (name, pending_version, pending_digest)"
    "    REFERENCES versions (plugin, version, digest));"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, plugin TEXT NOT NULL,"
    "  action TEXT NOT NULL, from_status TEXT, to_status TEXT NOT NULL, reason TEXT);"
    "CREATE INDEX audit_by_plugin ON audit (plugin, id);"
    "CREATE TABLE state ("
    "  plugin TEXT NOT NULL, namespace TEXT NOT NULL, key TEXT NOT NULL,"
    "  value BLOB NOT NULL, updated_at REAL NOT NULL,"
    "  PRIMARY KEY (plugin, namespace, key)) WITHOUT ROWID;",
    gen_migration_sql, /* 1 → 2: generations (generations.c) */
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

double reg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int db_fail(struct registry *r, struct plugd_error *err, const char *doing)
{
    return plugd_error_set(err, PLUGD_E_STORAGE, "registry: %s: %s", doing, sqlite3_errmsg(r->db));
}

static int exec_sql(struct registry *r, const char *sql, const char *doing, struct plugd_error *err)
{
    if (sqlite3_exec(r->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(r, err, doing);
    return 0;
}

static int user_version(struct registry *r)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Brings the schema to REG_SCHEMA_VERSION, each step in its own transaction
 * with the new user_version, so a crash mid-way repeats only that step. */
static int migrate(struct registry *r, struct plugd_error *err)
{
    int v = user_version(r);
    if (v < 0)
        return db_fail(r, err, "reading the schema version");
    if (v > N_MIGRATIONS)
        return plugd_error_set(err, PLUGD_E_STORAGE,
                               "registry: schema version %d is newer than this plugd's (%d)", v,
                               N_MIGRATIONS);
    for (; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
        if (exec_sql(r, "BEGIN IMMEDIATE", "migrating", err) < 0)
            return -1;
        if (exec_sql(r, migrations[v], "migrating", err) < 0 ||
            exec_sql(r, bump, "migrating", err) < 0 ||
            exec_sql(r, "COMMIT", "migrating", err) < 0) {
            sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

static int prepare(struct registry *r, const char *sql, sqlite3_stmt **st, struct plugd_error *err)
{
    if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return db_fail(r, err, "preparing a statement");
    return 0;
}

struct registry *reg_open(const char *path, struct plugd_error *err)
{
    struct registry *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "registry: no memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &r->db, flags, NULL) != SQLITE_OK) {
        plugd_error_set(err, PLUGD_E_STORAGE, "registry: cannot open %s: %s", path,
                        r->db ? sqlite3_errmsg(r->db) : "no memory");
        goto fail;
    }
    sqlite3_busy_timeout(r->db, 5000);
    /* NORMAL in WAL mode: a crash of plugd loses nothing committed; a power
     * loss may lose the last commits, never consistency. */
    if (exec_sql(r,
                 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                 "PRAGMA foreign_keys = ON;",
                 "configuring", err) < 0 ||
        migrate(r, err) < 0)
        goto fail;
    if (prepare(r, "SELECT value FROM state WHERE plugin = ? AND namespace = ? AND key = ?",
                &r->state_get, err) < 0 ||
        prepare(r,
                "INSERT INTO state (plugin, namespace, key, value, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (plugin, namespace, key)"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &r->state_set, err) < 0 ||
        prepare(r, "DELETE FROM state WHERE plugin = ? AND namespace = ? AND key = ?",
                &r->state_delete, err) < 0)
        goto fail;
    return r;

fail:
    reg_close(r);
    return NULL;
}

void reg_close(struct registry *r)
{
    if (r == NULL)
        return;
    sqlite3_finalize(r->state_get);
    sqlite3_finalize(r->state_set);
    sqlite3_finalize(r->state_delete);
    sqlite3_close(r->db);
    free(r);
}

/* ------------------------------------------------------------ rows */

int reg_set_str(char **field, const char *value)
{
    char *copy = NULL;
    if (value != NULL && (copy = strdup(value)) == NULL)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

void reg_plugin_clear(struct reg_plugin *p)
{
    char **strings[] = {&p->name,        &p->version,          &p->digest,
                        &p->package_dir, &p->manifest,         &p->config,
                        &p->last_error,  &p->pending_version,  &p->pending_digest,
                        &p->pending_dir, &p->pending_manifest, &p->diff};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        free(*strings[i]);
    memset(p, 0, sizeof(*p));
}

int reg_plugin_copy(struct reg_plugin *dst, const struct reg_plugin *src)
{
    reg_plugin_clear(dst);
    *dst = (struct reg_plugin){.status = src->status,
                               .installed_at = src->installed_at,
                               .updated_at = src->updated_at,
                               .uninstalled_at = src->uninstalled_at};
    if (reg_set_str(&dst->name, src->name) < 0 || reg_set_str(&dst->version, src->version) < 0 ||
        reg_set_str(&dst->digest, src->digest) < 0 ||
        reg_set_str(&dst->package_dir, src->package_dir) < 0 ||
        reg_set_str(&dst->manifest, src->manifest) < 0 ||
        reg_set_str(&dst->config, src->config) < 0 ||
        reg_set_str(&dst->last_error, src->last_error) < 0 ||
        reg_set_str(&dst->pending_version, src->pending_version) < 0 ||
        reg_set_str(&dst->pending_digest, src->pending_digest) < 0 ||
        reg_set_str(&dst->pending_dir, src->pending_dir) < 0 ||
        reg_set_str(&dst->pending_manifest, src->pending_manifest) < 0 ||
        reg_set_str(&dst->diff, src->diff) < 0) {
        reg_plugin_clear(dst);
        return -1;
    }
    return 0;
}

void reg_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* A copy of text column `i` into *out (NULL for a NULL column). -1 when
 * out of memory. */
static int copy_column(sqlite3_stmt *st, int i, char **out)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    *out = s ? strdup((const char *)s) : NULL;
    return s != NULL && *out == NULL ? -1 : 0;
}

static int no_memory(struct plugd_error *err, const char *doing)
{
    return plugd_error_set(err, PLUGD_E_NO_MEMORY, "registry: %s: no memory", doing);
}

#define PLUGIN_COLUMNS                                                                             \
    "name, status, version, digest, package_dir, manifest, config, last_error,"                    \
    " pending_version, pending_digest, pending_dir, pending_manifest, diff, installed_at,"         \
    " updated_at, uninstalled_at"

/* The row under `st` into `p` (which the caller clears, also on failure).
 * -1 when out of memory. */
static int read_plugin(sqlite3_stmt *st, struct reg_plugin *p)
{
    memset(p, 0, sizeof(*p));
    if (copy_column(st, 0, &p->name) < 0)
        return -1;
    const char *status = (const char *)sqlite3_column_text(st, 1);
    if (status == NULL || lc_status_from_name(status, &p->status) < 0)
        p->status = LC_ERROR; /* the CHECK constraint makes this unreachable */
    char **fields[] = {&p->version,
                       &p->digest,
                       &p->package_dir,
                       &p->manifest,
                       &p->config,
                       &p->last_error,
                       &p->pending_version,
                       &p->pending_digest,
                       &p->pending_dir,
                       &p->pending_manifest,
                       &p->diff};
    for (int i = 0; i < (int)(sizeof(fields) / sizeof(fields[0])); i++)
        if (copy_column(st, 2 + i, fields[i]) < 0)
            return -1;
    p->installed_at = sqlite3_column_double(st, 13);
    p->updated_at = sqlite3_column_double(st, 14);
    p->uninstalled_at = sqlite3_column_double(st, 15);
    return 0;
}

int reg_each_plugin(struct registry *r, void (*fn)(const struct reg_plugin *p, void *ud), void *ud,
                    struct plugd_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "SELECT " PLUGIN_COLUMNS " FROM plugins ORDER BY name", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(r, err, "listing plugins");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct reg_plugin p;
        bool is_read = read_plugin(st, &p) == 0;
        if (is_read)
            fn(&p, ud);
        reg_plugin_clear(&p);
        if (!is_read) {
            sqlite3_finalize(st);
            return no_memory(err, "listing plugins");
        }
    }
    if (rc != SQLITE_DONE)
        db_fail(r, err, "listing plugins");
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int put_version(struct registry *r, const char *plugin, const char *version,
                       const char *digest, const char *dir, const char *manifest, double now,
                       struct plugd_error *err)
{
    if (version == NULL)
        return 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR IGNORE INTO versions (plugin, version, digest, package_dir,"
                           " manifest, installed_at) VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "recording a version");
    reg_bind_text(st, 1, plugin);
    reg_bind_text(st, 2, version);
    reg_bind_text(st, 3, digest);
    reg_bind_text(st, 4, dir);
    reg_bind_text(st, 5, manifest);
    sqlite3_bind_double(st, 6, now);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "recording a version");
}

static int put_plugin(struct registry *r, const struct reg_plugin *p, struct plugd_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO plugins (" PLUGIN_COLUMNS ") VALUES"
                           " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "writing the plugin");
    const char *texts[] = {p->name,
                           lc_status_name(p->status),
                           p->version,
                           p->digest,
                           p->package_dir,
                           p->manifest,
                           p->config,
                           p->last_error,
                           p->pending_version,
                           p->pending_digest,
                           p->pending_dir,
                           p->pending_manifest,
                           p->diff};
    for (int i = 0; i < 13; i++)
        reg_bind_text(st, i + 1, texts[i]);
    sqlite3_bind_double(st, 14, p->installed_at);
    sqlite3_bind_double(st, 15, p->updated_at);
    if (p->uninstalled_at > 0)
        sqlite3_bind_double(st, 16, p->uninstalled_at);
    else
        sqlite3_bind_null(st, 16);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "writing the plugin");
}

static int put_audit(struct registry *r, const struct reg_plugin *p, int from,
                     const struct reg_audit *a, double now, struct plugd_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "INSERT INTO audit (time, actor, plugin, action, from_status,"
                           " to_status, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "writing the audit row");
    sqlite3_bind_double(st, 1, now);
    reg_bind_text(st, 2, a->actor);
    reg_bind_text(st, 3, p->name);
    reg_bind_text(st, 4, a->action);
    reg_bind_text(st, 5, from < 0 ? NULL : lc_status_name((enum lc_status)from));
    reg_bind_text(st, 6, lc_status_name(p->status));
    reg_bind_text(st, 7, a->reason);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "writing the audit row");
}

static int purge_data(struct registry *r, const char *plugin, struct plugd_error *err);

int reg_save_transition(struct registry *r, const struct reg_plugin *p, int from,
                        const struct reg_audit *a, unsigned flags, struct plugd_error *err)
{
    double now = p->updated_at > 0 ? p->updated_at : reg_now();
    if (exec_sql(r, "BEGIN IMMEDIATE", "starting a transition", err) < 0)
        return -1;
    if (put_version(r, p->name, p->version, p->digest, p->package_dir, p->manifest, now, err) < 0 ||
        put_version(r, p->name, p->pending_version, p->pending_digest, p->pending_dir,
                    p->pending_manifest, now, err) < 0 ||
        put_plugin(r, p, err) < 0 || put_audit(r, p, from, a, now, err) < 0 ||
        (gen_apply(r->db, REG_GEN_STEP(flags), p, a->actor, now, flags) < 0 &&
         db_fail(r, err, "recording the generation") < 0) ||
        ((flags & REG_PURGE_DATA) && purge_data(r, p->name, err) < 0) ||
        exec_sql(r, "COMMIT", "committing a transition", err) < 0) {
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int reg_has_version(struct registry *r, const char *plugin, const char *digest)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "SELECT 1 FROM versions WHERE plugin = ? AND digest = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    reg_bind_text(st, 1, plugin);
    reg_bind_text(st, 2, digest);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

int reg_purge_data(struct registry *r, const char *plugin, struct plugd_error *err)
{
    return purge_data(r, plugin, err);
}

static int purge_data(struct registry *r, const char *plugin, struct plugd_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db, "DELETE FROM state WHERE plugin = ?", -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "deleting plugin data");
    reg_bind_text(st, 1, plugin);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "deleting plugin data");
}

char *reg_audit_json(struct registry *r, const char *plugin, int n, struct plugd_error *err)
{
    sqlite3_stmt *st;
    const char *sql =
        "SELECT coalesce(json_group_array(json_object('time', time, 'actor', actor, 'action',"
        " action, 'from', from_status, 'to', to_status, 'reason', reason)), '[]') FROM"
        " (SELECT * FROM audit WHERE plugin = ? ORDER BY id DESC LIMIT ?)";
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(r, err, "reading the audit");
        return NULL;
    }
    reg_bind_text(st, 1, plugin);
    sqlite3_bind_int(st, 2, n);
    char *out = NULL;
    if (sqlite3_step(st) != SQLITE_ROW)
        db_fail(r, err, "reading the audit");
    else if (copy_column(st, 0, &out) < 0)
        no_memory(err, "reading the audit");
    else if (out == NULL) /* coalesce(..., '[]') makes it unreachable */
        db_fail(r, err, "reading the audit");
    sqlite3_finalize(st);
    return out;
}

int reg_mark_known_good(struct registry *r, const char *plugin, const char *digest,
                        struct plugd_error *err)
{
    if (gen_mark_known_good(r->db, plugin, digest, reg_now()) < 0)
        return db_fail(r, err, "marking the generation known-good");
    return 0;
}

char *reg_history_json(struct registry *r, const char *plugin, struct plugd_error *err)
{
    char *out = gen_history_json(r->db, plugin);
    if (out == NULL)
        db_fail(r, err, "reading the history");
    return out;
}

/* ------------------------------------------------------------ state */

static void bind_key(sqlite3_stmt *st, const char *plugin, const char *ns, const char *key)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    reg_bind_text(st, 1, plugin);
    reg_bind_text(st, 2, ns);
    reg_bind_text(st, 3, key);
}

int reg_state_get(struct registry *r, const char *plugin, const char *ns, const char *key,
                  void **value, size_t *len, struct plugd_error *err)
{
    bind_key(r->state_get, plugin, ns, key);
    int rc = sqlite3_step(r->state_get);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW) {
        db_fail(r, err, "state.get");
        sqlite3_reset(r->state_get);
        return -1;
    }
    *len = (size_t)sqlite3_column_bytes(r->state_get, 0);
    *value = malloc(*len ? *len : 1);
    if (*value == NULL) {
        sqlite3_reset(r->state_get); /* a stepped statement holds its read transaction */
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "state.get: no memory");
    }
    if (*len)
        memcpy(*value, sqlite3_column_blob(r->state_get, 0), *len);
    sqlite3_reset(r->state_get);
    return 1;
}

int reg_state_set(struct registry *r, const char *plugin, const char *ns, const char *key,
                  const void *value, size_t len, struct plugd_error *err)
{
    bind_key(r->state_set, plugin, ns, key);
    sqlite3_bind_blob(r->state_set, 4, value, (int)len, SQLITE_STATIC);
    sqlite3_bind_double(r->state_set, 5, reg_now());
    int rc = sqlite3_step(r->state_set);
    sqlite3_reset(r->state_set);
    return rc == SQLITE_DONE ? 0 : db_fail(r, err, "state.set");
}

int reg_state_delete(struct registry *r, const char *plugin, const char *ns, const char *key,
                     struct plugd_error *err)
{
    bind_key(r->state_delete, plugin, ns, key);
    int rc = sqlite3_step(r->state_delete);
    sqlite3_reset(r->state_delete);
    if (rc != SQLITE_DONE)
        return db_fail(r, err, "state.delete");
    return sqlite3_changes(r->db) > 0;
}

int reg_state_list(struct registry *r, const char *plugin, const char *ns, const char *after,
                   int limit, void (*fn)(const char *key, void *ud), void *ud,
                   struct plugd_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT key FROM state WHERE plugin = ? AND namespace = ? AND key > ?"
                           " ORDER BY key LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(r, err, "state.list");
    bind_key(st, plugin, ns, after ? after : "");
    sqlite3_bind_int(st, 4, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fn((const char *)sqlite3_column_text(st, 0), ud);
        n++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? n : db_fail(r, err, "state.list");
}

int64_t reg_state_count(struct registry *r, const char *plugin)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(r->db, "SELECT count(*) FROM state WHERE plugin = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    reg_bind_text(st, 1, plugin);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}
