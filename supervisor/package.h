/* Plugin packages: the files of one plugin version (plugin.json, the
 * entrypoint, the manifest's "files"), their digest, and plugd's own copy
 * of them under STATE/packages/NAME/VERSION-DIGEST, which is what runs, so a
 * rejected upgrade or a restart never depends on the folder it came from. */
#ifndef PLUGD_PACKAGE_H
#define PLUGD_PACKAGE_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>

#include "manifest.h"
#include "plugd/error.h"

#define PKG_DIGEST_HEX 65 /* SHA-256 in hex, with its NUL */

/* The SHA-256, in hex, of `m`'s package files (in `m->dir`): each one's
 * relative name, size and bytes, in the manifest's order. */
int pkg_digest(const struct manifest *m, char out[PKG_DIGEST_HEX], struct plugd_error *err);

/* Copies `m`'s package into STATE_DIR/packages (unless a copy with this
 * digest is there already) and writes its folder's real path to `out`
 * (`out_size` bytes; a longer path is an error). Atomic: the copy appears
 * complete or not at all. */
int pkg_store(const char *state_dir, const struct manifest *m, const char *digest, char *out,
              size_t out_size, struct plugd_error *err);

/* A new package read from a source folder and stored: its manifest (as
 * read there), digest, plugd's copy and the manifest's JSON text. */
struct pkg {
    struct manifest *m;
    char digest[PKG_DIGEST_HEX];
    char dir[PATH_MAX];
    char *manifest_json;
};

/* Reads the package in `src_dir`, hashes it and stores it (pkg_store).
 * 0, or -1 with err and `pkg` cleared. */
int pkg_read(const char *state_dir, const char *src_dir, struct pkg *pkg, struct plugd_error *err);
void pkg_clear(struct pkg *pkg);

/* The manifest of the stored package in `dir` with the operator's config
 * (a JSON object text, or NULL) laid over its defaults. NULL with err. */
struct manifest *pkg_load(const char *dir, const char *config, struct plugd_error *err);

/* {"added": [...], "removed": [...]}: the capabilities `next` has and
 * `running` lacks, and the reverse; a protocol change counts as an added
 * "protocol:N". NULL when out of memory. */
json_t *pkg_capability_diff(const struct manifest *running, const struct manifest *next);

/* Removed capabilities take effect at once: `running` (a draining
 * worker's manifest) loses those that `next` lacks. */
void pkg_revoke_capabilities(struct manifest *running, const struct manifest *next);

#endif
