/* Manifest validation against a corpus (tests/fixtures/manifests), each
 * invalid case with the message it must get; semantic versions; names. */
#include <criterion/criterion.h>
#include <limits.h>
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
    {"duplicate-key", "duplicate object key"},
    {"unknown-field", "manifest: unknown field \"capabilites\""},
    {"name-missing", "manifest: \"name\" is missing"},
    {"name-uppercase", "manifest: \"name\": \"Hello\" must be 1 to 63 characters of a-z"},
    {"name-leading-dash", "manifest: \"name\": \"-x\" must be"},
    {"name-too-long", "must be 1 to 63 characters"},
    {"name-underscore", "manifest: \"name\": \"my_plugin\" must be"},
    {"version-missing", "manifest: \"version\" is missing"},
    {"version-not-semver", "manifest: \"version\": \"1.x\" is not a semantic version"},
    {"version-two-parts", "\"version\": \"1.0\" is not a semantic version"},
    {"version-leading-zero", "\"version\": \"01.0.0\" is not a semantic version"},
    {"version-bad-prerelease", "\"version\": \"1.0.0-\" is not a semantic version"},
    {"entrypoint-missing", "manifest: \"entrypoint\" is missing"},
    {"entrypoint-absolute", "\"entrypoint\": \"/bin/sh\" must be a relative path inside"},
    {"entrypoint-escapes", "\"entrypoint\": \"../run\" must be a relative path inside"},
    {"entrypoint-absent-file", "/nosuch is not a file"},
    {"entrypoint-not-executable", "/run is not executable"},
    {"protocol-missing", "manifest: \"protocol\" must be an integer"},
    {"protocol-string", "manifest: \"protocol\" must be an integer"},
    {"protocol-unsupported",
     "manifest: \"protocol\": 7 is not supported (this plugd speaks 1 to 1)"},
    {"capabilities-not-array", "manifest: \"capabilities\" must be an array"},
    {"capability-unknown",
     "manifest: \"capabilities[1]\": \"net.everything\" is not a known capability"},
    {"capability-twice", "manifest: \"capabilities[1]\": \"events.emit\" is listed twice"},
    {"capability-not-string", "manifest: \"capabilities[0]\" is not a string"},
    {"limits-not-object", "manifest: \"limits\" must be an object"},
    {"limit-unknown", "manifest: unknown field \"limits.memory\""},
    {"limit-too-small", "manifest: \"limits.memory_mb\" must be an integer between 16 and 65536"},
    {"limit-not-integer", "\"limits.call_timeout_ms\" must be an integer of milliseconds"},
    {"limit-timeout-zero", "\"limits.shutdown_drain_ms\" must be an integer of milliseconds"},
    {"methods-reserved", "manifest: \"methods[0]\": must be 1 to 255 characters"},
    {"methods-bad-char", "manifest: \"methods[0]\": must be"},
    {"methods-twice", "manifest: \"methods[1]\": \"a\" is listed twice"},
    {"config-not-object", "manifest: \"config\" must be an object"},
    {"description-not-string", "manifest: \"description\" must be a string"},
    {"files-escapes", "\"files[0]\": \"../secret\" must be a relative path inside"},
    {"files-absent", "\"files[0]\": "},
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
    cr_assert_eq(m->limits.call_timeout, 1.0);
    cr_assert_eq(m->limits.drain_timeout, 2.0);
    cr_assert_eq(m->limits.memory_mb, 64);
    cr_assert_eq(m->limits.nofile, 128);
    cr_assert_eq(m->limits.nproc, 8);
    cr_assert_eq(m->limits.cpu_percent, 50);
    cr_assert_eq(m->limits.crash_loop_restarts, 3);
    cr_assert_eq(json_integer_value(json_object_get(m->config, "a")), 1);
    manifest_free(m);
}

Test(manifest, example_plugins_are_valid)
{
    static const char *const examples[] = {"hello", "counter", "crashy", "python-worker"};
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/examples/%s", getenv("PLUGD_BUILD_ROOT"), examples[i]);
        struct plugd_error err;
        struct manifest *m = manifest_load(dir, &err);
        cr_expect_not_null(m, "%s: %s", examples[i], err.message);
        manifest_free(m);
    }
}

Test(manifest, capability_table_grants_the_documented_services)
{
    const struct capability *c = cap_find("plugin.state.write");
    cr_assert_not_null(c);
    cr_assert_str_eq(c->services[0], "state.set");
    cr_assert_str_eq(c->services[1], "state.delete");
    cr_assert_null(c->services[2]);
    cr_assert_str_eq(cap_find("net.outbound")->sandbox[0], "network");
    cr_assert_null(cap_find("log"), "every worker may log: no capability for it");
    size_t n;
    cap_table(&n);
    cr_assert_eq(n, 6);
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
    char longest[64];
    memset(longest, 'a', 63);
    longest[63] = 0;
    cr_expect(manifest_is_valid_name(longest));
}
