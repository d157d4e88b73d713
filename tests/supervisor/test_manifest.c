/* Manifest validation against a corpus (tests/fixtures/manifests), each
 * invalid case with the message it must get; semantic versions; names. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capabilities.h"
#include "manifest.h"

static const char *corpus(const char *name, char *buf, size_t size)
{
    const char *root = getenv("PLUGD_SOURCE_ROOT");
    cr_assert_not_null(root, "PLUGD_SOURCE_ROOT is not set (run the tests with meson test)");
    snprintf(buf, size, "%s/tests/fixtures/manifests/%s", root, name);
    return buf;
}

static const struct {
    const char *name;
    const char *message; /* a part of the refusal */
} invalid[] = {
    {"not-json", "plugin.json: "},
    {"not-object", "manifest: not a JSON object"},
    {"top-level-array", "manifest: not a JSON object"},
    {"duplicate-key", "duplicate object key"},
    {"unknown-field", "manifest: unknown field \"capabilites\""},
    {"name-missing", "manifest: \"name\" is missing"},
    {"name-not-string", "manifest: \"name\" must be a non-empty string"},
    {"name-uppercase", "manifest: \"name\": \"Hello\" must be 1 to 63 characters of a-z"},
    {"name-leading-dash", "manifest: \"name\": \"-x\" must be"},
    {"name-too-long", "must be 1 to 63 characters"},
    {"name-underscore", "manifest: \"name\": \"my_plugin\" must be"},
    {"version-missing", "manifest: \"version\" is missing"},
    {"version-not-semver", "manifest: \"version\": \"1.x\" is not a semantic version"},
    {"version-two-parts", "\"version\": \"1.0\" is not a semantic version"},
    {"version-leading-zero", "\"version\": \"01.0.0\" is not a semantic version"},
    {"version-bad-prerelease", "\"version\": \"1.0.0-\" is not a semantic version"},
    {"version-prerelease-leading-zero", "\"version\": \"1.0.0-01\" is not a semantic version"},
    {"version-empty-build", "\"version\": \"1.0.0+\" is not a semantic version"},
    {"entrypoint-missing", "manifest: \"entrypoint\" is missing"},
    {"entrypoint-absolute", "\"entrypoint\": \"/bin/sh\" must be a relative path inside"},
    {"entrypoint-escapes", "\"entrypoint\": \"../run\" must be a relative path inside"},
    {"entrypoint-absent-file", "/nosuch is not a file"},
    {"entrypoint-not-executable", "/run is not executable"},
    {"entrypoint-empty", "manifest: \"entrypoint\" must be a non-empty string"},
    {"entrypoint-directory", "/bin is not a file"},
    {"entrypoint-dotdot-inside",
     "\"entrypoint\": \"bin/../../run\" must be a relative path inside the plugin folder"},
    {"protocol-missing", "manifest: \"protocol\" is missing; it must be an integer"},
    {"protocol-string", "manifest: \"protocol\" is not an integer"},
    {"protocol-float", "manifest: \"protocol\" is not an integer"},
    {"protocol-zero", "manifest: \"protocol\": 0 is not supported (this plugd speaks 1 to 1)"},
    {"protocol-unsupported",
     "manifest: \"protocol\": 7 is not supported (this plugd speaks 1 to 1)"},
    {"capabilities-not-array", "manifest: \"capabilities\" must be an array"},
    {"capability-unknown",
     "manifest: \"capabilities[1]\": \"net.everything\" is not a known capability (known: "
     "events.emit, events.subscribe, plugin.state.read, plugin.state.write, net.outbound, "
     "fs.read, fs.data, process.spawn, host.call)"},
    {"sandbox-not-object", "manifest: \"sandbox\" must be an object"},
    {"sandbox-unknown-field", "manifest: unknown field \"sandbox.network\""},
    {"sandbox-on-violation-bad",
     "manifest: \"sandbox.on_violation\" must be \"kill\" or \"eperm\""},
    {"capability-log", "manifest: \"capabilities[0]\": \"log\" is not a known capability"},
    {"capabilities-too-many", "manifest: \"capabilities\" must be an array of at most 32 strings"},
    {"capability-twice", "manifest: \"capabilities[1]\": \"events.emit\" is listed twice"},
    {"capability-not-string", "manifest: \"capabilities[0]\" is not a string"},
    {"limits-not-object", "manifest: \"limits\" must be an object"},
    {"limit-unknown", "manifest: unknown field \"limits.memory\""},
    {"limit-too-small", "manifest: \"limits.memory_mb\" must be an integer between 16 and 65536"},
    {"limit-not-integer", "\"limits.call_timeout_ms\" must be an integer of milliseconds"},
    {"limit-timeout-zero", "\"limits.shutdown_drain_ms\" must be an integer of milliseconds"},
    {"limit-too-large", "manifest: \"limits.cpu_percent\" must be an integer between 1 and 800"},
    {"limit-nproc-zero", "manifest: \"limits.nproc\" must be an integer between 1 and 4096"},
    {"limit-cpu-seconds-zero",
     "manifest: \"limits.cpu_seconds\" must be an integer between 1 and 31536000"},
    {"methods-reserved", "manifest: \"methods[0]\": \"plugd.health\" must be 1 to 255 characters "
                         "of A-Z a-z 0-9 _ . - and not start with \"plugd.\""},
    {"methods-bad-char", "manifest: \"methods[0]\": \"has space\" must be 1 to 255"},
    {"methods-not-array", "manifest: \"methods\" must be an array of at most 256 strings"},
    {"method-not-string", "manifest: \"methods[0]\" is not a string"},
    {"method-too-long", "manifest: \"methods[0]\": \"mmmm"},
    {"method-empty", "manifest: \"methods[0]\": \"\" must be 1 to 255"},
    {"methods-twice", "manifest: \"methods[1]\": \"a\" is listed twice"},
    {"config-not-object", "manifest: \"config\" must be an object"},
    {"config-string", "manifest: \"config\" must be an object"},
    {"description-not-string", "manifest: \"description\" must be a string"},
    {"description-too-long", "manifest: \"description\" must be a string of at most 1024 bytes"},
    {"files-escapes", "\"files[0]\": \"../secret\" must be a relative path inside"},
    {"files-absent", "manifest: \"files[0]\": "},
    {"files-not-array", "manifest: \"files\" must be an array of at most 64 strings"},
    {"files-directory", "/sub is not a file"},
    {"files-empty", "manifest: \"files[0]\": \"\" must not be empty"},
    {"env-not-array", "manifest: \"env\" must be an array of at most 32 strings"},
    {"env-not-string", "manifest: \"env[0]\" is not a string"},
    {"env-bad-name", "manifest: \"env[0]\": \"MY-VAR\" is not a variable name (A-Z a-z 0-9 _, "
                     "not starting with a digit, at most 64) or is one plugd sets itself (PATH, "
                     "HOME, TMPDIR, LANG, LC_ALL, TZ, PLUGD_*)"},
    {"env-leading-digit", "manifest: \"env[0]\": \"1X\" is not a variable name"},
    {"env-reserved", "manifest: \"env[0]\": \"PATH\" is not a variable name"},
    {"env-plugd", "manifest: \"env[0]\": \"PLUGD_FD\" is not a variable name"},
    {"env-twice", "manifest: \"env[1]\": \"A\" is listed twice"},
};

Test(manifest, every_invalid_case_is_refused_with_its_field_and_reason)
{
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        char dir[PATH_MAX];
        struct plugd_error err = {0};
        struct manifest *m = manifest_load(corpus(invalid[i].name, dir, sizeof(dir)), &err);
        cr_expect_null(m, "%s was accepted", invalid[i].name);
        manifest_free(m);
        cr_expect_eq(err.code, PLUGD_E_INVALID_MANIFEST, "%s: code %s", invalid[i].name,
                     plugd_errc_name(err.code));
        cr_expect(strstr(err.message, invalid[i].message) != NULL,
                  "%s:\n  got      %s\n  expected …%s…", invalid[i].name, err.message,
                  invalid[i].message);
    }
}

Test(manifest, minimal_manifest_gets_the_defaults)
{
    char dir[PATH_MAX];
    struct plugd_error err;
    struct manifest *m = manifest_load(corpus("valid-minimal", dir, sizeof(dir)), &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_assert_str_eq(m->name, "ok");
    cr_assert_eq(m->n_capabilities, 0);
    cr_assert_eq(m->n_methods, 0);
    cr_assert_eq(m->limits.call_timeout, 30.0);
    cr_assert_eq(m->limits.drain_timeout, 10.0);
    cr_assert_eq(m->limits.term_timeout, 5.0);
    cr_assert_eq(m->limits.crash_loop_restarts, 5);
    cr_assert_eq(m->limits.memory_mb, 256);
    cr_assert(!m->is_violation_eperm, "a refused system call kills by default");
    cr_assert(json_is_object(m->config) && json_object_size(m->config) == 0);
    cr_assert_str_eq(m->entrypoint_rel, "run");
    manifest_free(m);
}

Test(manifest, full_manifest_reads_every_field)
{
    char dir[PATH_MAX];
    struct plugd_error err;
    struct manifest *m = manifest_load(corpus("valid-full", dir, sizeof(dir)), &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_assert_eq(m->n_capabilities, 2);
    cr_assert_str_eq(m->capabilities[1], "plugin.state.read");
    cr_assert_eq(m->n_methods, 3);
    cr_assert_str_eq(m->methods[1], "math.add");
    cr_assert_eq(m->n_files, 1);
    cr_assert_str_eq(m->files[0], "data.txt");
    cr_assert_eq(m->n_env, 2);
    cr_assert_str_eq(m->env[1], "my_var_2");
    cr_assert_eq(m->limits.call_timeout, 1.0);
    cr_assert_eq(m->limits.drain_timeout, 2.0);
    cr_assert_eq(m->limits.memory_mb, 64);
    cr_assert_eq(m->limits.nofile, 128);
    cr_assert_eq(m->limits.nproc, 8);
    cr_assert_eq(m->limits.cpu_percent, 50);
    cr_assert_eq(m->limits.cpu_seconds, 600);
    cr_assert_eq(m->limits.crash_loop_restarts, 3);
    cr_assert(m->is_violation_eperm);
    cr_assert_eq(json_integer_value(json_object_get(m->config, "a")), 1);
    cr_assert_eq(m->protocol, 1);
    cr_assert_str_eq(m->entrypoint_rel, "run");
    cr_assert_str_eq(m->entrypoint + strlen(m->entrypoint) - 4, "/run");
    cr_assert_str_eq(json_string_value(json_object_get(m->json, "description")), "every field");
    manifest_free(m);
}

/* The example plugins (built into the build tree) and the fixtures the
 * integration tests start must stay valid. */
Test(manifest, example_plugins_and_test_fixtures_are_valid)
{
    static const struct {
        const char *root_env, *dir;
    } packages[] = {
        {"PLUGD_BUILD_ROOT", "examples/hello"},
        {"PLUGD_BUILD_ROOT", "examples/counter"},
        {"PLUGD_BUILD_ROOT", "examples/crashy"},
        {"PLUGD_BUILD_ROOT", "examples/python-worker"},
        {"PLUGD_SOURCE_ROOT", "tests/fixtures/silent"},
        {"PLUGD_SOURCE_ROOT", "tests/fixtures/oldproto"},
    };
    for (size_t i = 0; i < sizeof(packages) / sizeof(packages[0]); i++) {
        const char *root = getenv(packages[i].root_env);
        cr_assert_not_null(root, "%s is not set (run the tests with meson test)",
                           packages[i].root_env);
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", root, packages[i].dir);
        struct plugd_error err;
        struct manifest *m = manifest_load(dir, &err);
        cr_expect_not_null(m, "%s: %s", packages[i].dir, err.message);
        if (m != NULL)
            cr_expect_eq(m->protocol, PLUGD_PROTOCOL_CURRENT, "%s", packages[i].dir);
        manifest_free(m);
    }
}

/* Every folder of the corpus is either a valid-* case or has its expected
 * message in the table: a fixture without an expectation tests nothing. */
Test(manifest, every_corpus_folder_has_an_expectation)
{
    char path[PATH_MAX];
    DIR *d = opendir(corpus("", path, sizeof(path)));
    cr_assert_not_null(d, "%s", path);
    size_t n_invalid = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (strncmp(e->d_name, "valid-", 6) == 0)
            continue;
        bool is_listed = false;
        for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]) && !is_listed; i++)
            is_listed = strcmp(invalid[i].name, e->d_name) == 0;
        cr_expect(is_listed, "corpus case %s has no expected message", e->d_name);
        n_invalid++;
    }
    closedir(d);
    cr_expect_eq(n_invalid, sizeof(invalid) / sizeof(invalid[0]));
    cr_expect_geq(n_invalid, 25);
}

Test(manifest, symlinks_that_stay_inside_the_folder_are_accepted)
{
    char dir[PATH_MAX];
    struct plugd_error err;
    struct manifest *m = manifest_load(corpus("valid-symlink-inside", dir, sizeof(dir)), &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_expect_str_eq(m->version, "1.0.0-rc.1+build.5");
    cr_expect_str_eq(m->entrypoint_rel, "run");
    cr_expect_str_eq(m->files[0], "data");
    manifest_free(m);
}

Test(manifest, parse_validates_a_document_already_in_memory)
{
    char dir[PATH_MAX];
    corpus("valid-minimal", dir, sizeof(dir));
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:i, s:{s:i}, s:[s]}", "name", "mem", "version", "2.0.0",
                  "entrypoint", "run", "protocol", 1, "limits", "nofile", 1024, "methods", "ping");
    cr_assert_not_null(root);
    struct plugd_error err;
    struct manifest *m = manifest_parse(root, dir, &err);
    cr_assert_not_null(m, "%s", err.message);
    cr_expect_eq(m->json, root, "the manifest keeps the whole document");
    cr_expect_eq(root->refcount, 2, "... as its own reference");
    cr_expect_eq(m->limits.nofile, 1024);
    cr_expect_eq(m->n_methods, 1);
    cr_expect_str_eq(m->methods[0], "ping");
    cr_expect_eq(m->entrypoint[0], '/', "entrypoint is made absolute: %s", m->entrypoint);
    manifest_free(m);
    cr_expect_eq(root->refcount, 1);

    json_object_set_new(root, "capabilities", json_pack("[ss]", "fs.read", "net.outbound"));
    json_object_set_new(root, "protocol", json_integer(PLUGD_PROTOCOL_CURRENT + 1));
    m = manifest_parse(root, dir, &err);
    cr_expect_null(m);
    cr_expect_eq(err.code, PLUGD_E_INVALID_MANIFEST);
    cr_expect(strstr(err.message, "\"protocol\": 2 is not supported") != NULL, "%s", err.message);
    json_decref(root);

    json_t *array = json_array();
    cr_expect_null(manifest_parse(array, dir, &err));
    cr_expect_str_eq(err.message, "manifest: not a JSON object");
    json_decref(array);
}

Test(manifest, missing_plugin_folder_is_refused)
{
    struct plugd_error err;
    cr_expect_null(manifest_load("/nonexistent/plugd-test", &err));
    cr_expect_eq(err.code, PLUGD_E_INVALID_MANIFEST);
    cr_expect(strstr(err.message, "manifest: ") == err.message, "%s", err.message);
}

Test(manifest, capability_table_grants_the_documented_services)
{
    const struct capability *c = cap_find("plugin.state.write");
    cr_assert_not_null(c);
    cr_assert_str_eq(c->services[0], "state.set");
    cr_assert_str_eq(c->services[1], "state.delete");
    cr_assert_null(c->services[2]);
    cr_assert_str_eq(cap_find("plugin.state.read")->services[0], "state.get");
    cr_assert_str_eq(cap_find("plugin.state.read")->services[1], "state.list");
    cr_assert_str_eq(cap_find("events.emit")->services[0], "events.emit");
    cr_assert_str_eq(cap_find("events.subscribe")->services[0], "events.subscribe");
    cr_assert_str_eq(cap_find("net.outbound")->sandbox[0], "network");
    cr_assert_null(cap_find("net.outbound")->services[0]);
    cr_assert_str_eq(cap_find("fs.read")->sandbox[0], "read /usr");
    cr_assert_str_eq(cap_find("fs.data")->sandbox[0], "data folder");
    cr_assert_str_eq(cap_find("process.spawn")->sandbox[0], "processes");
    cr_assert_null(cap_find("log"), "every worker may log: no capability for it");
    cr_assert_null(cap_granting("log"));
    cr_assert_eq(cap_granting("state.delete"), c);
    size_t n;
    const struct capability *table = cap_table(&n);
    cr_assert_eq(n, 9);
    cr_assert_str_eq(cap_granting("host.*")->name, "host.call",
                     "host.call grants every service of the host application");
    for (size_t i = 0; i < n; i++) {
        cr_expect(table[i].description != NULL && table[i].description[0] != 0);
        cr_expect(table[i].services != NULL && table[i].sandbox != NULL, "%s", table[i].name);
        cr_expect_eq(cap_find(table[i].name), &table[i], "%s is listed once", table[i].name);
    }
}

Test(manifest, semantic_versions_are_recognised)
{
    static const char *const valid[] = {"0.0.0",
                                        "1.2.3",
                                        "10.20.30",
                                        "1.0.0-alpha",
                                        "1.0.0-alpha.1",
                                        "1.0.0-0.3.7",
                                        "1.0.0-x.7.z.92",
                                        "1.0.0+20130313144700",
                                        "1.0.0-beta+exp.sha.5114f85",
                                        "1.0.0-x-y-z.--"};
    static const char *const bad[] = {"1",      "1.2",    "1.2.3.4", "01.1.1",   "1.01.1",
                                      "1.1.01", "1.2.3-", "1.2.3+",  "1.2.3-01", "1.2.3-a..b",
                                      "v1.2.3", "1.2.3 ", "",        "1.2.3-a$", "-1.2.3"};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
        cr_expect(semver_is_valid(valid[i]), "%s should be valid", valid[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(!semver_is_valid(bad[i]), "%s should be invalid", bad[i]);
}

Test(manifest, semantic_version_precedence_follows_semver_org)
{
    static const char *const ordered[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                          "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                                          "1.0.0-rc.1",  "1.0.0",         "2.0.0",
                                          "2.1.0",       "2.1.1",         "10.0.0"};
    size_t n = sizeof(ordered) / sizeof(ordered[0]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c = semver_compare(ordered[i], ordered[j]);
            int want = (i > j) - (i < j);
            cr_expect_eq((c > 0) - (c < 0), want, "%s vs %s: %d", ordered[i], ordered[j], c);
        }
    }
    cr_expect_eq(semver_compare("1.0.0+build.1", "1.0.0+build.2"), 0, "build metadata is ignored");
    cr_expect_eq(semver_compare("1.0.0-rc.1+a", "1.0.0-rc.1"), 0);
    cr_expect_lt(semver_compare("1.0.0-rc.1+zzz", "1.0.0+aaa"), 0);
    cr_expect_lt(semver_compare("1.0.0-1", "1.0.0-a"), 0, "numeric identifiers rank lower");
    cr_expect_lt(semver_compare("1.0.0-a", "1.0.0-a.0"), 0, "more identifiers rank higher");
    cr_expect_lt(semver_compare("1.9.0", "1.10.0"), 0, "numeric, not lexical");
}

Test(manifest, plugin_names_follow_the_rule)
{
    cr_expect(manifest_is_valid_name("a"));
    cr_expect(manifest_is_valid_name("hello-world-2"));
    cr_expect(manifest_is_valid_name("0abc"));
    cr_expect(!manifest_is_valid_name(""));
    cr_expect(!manifest_is_valid_name("-a"));
    cr_expect(!manifest_is_valid_name("a.b"));
    cr_expect(!manifest_is_valid_name("A"));
    cr_expect(!manifest_is_valid_name("a_b"));
    cr_expect(!manifest_is_valid_name("a b"));
    cr_expect(!manifest_is_valid_name("é"));
    cr_expect(manifest_is_valid_name("a-"), "only the first character may not be '-'");
    char longest[64];
    memset(longest, 'a', 63);
    longest[63] = 0;
    cr_expect(manifest_is_valid_name(longest));
    char too_long[65];
    memset(too_long, 'a', 64);
    too_long[64] = 0;
    cr_expect(!manifest_is_valid_name(too_long));
}
