/* Plugin packages: the files of one plugin version (plugin.json, the
 * entrypoint, the manifest's "files"), their digest, and plugd's own copy
 * of them under STATE/packages/NAME/VERSION-DIGEST, which is what runs, so a
 * rejected upgrade or a restart never depends on the folder it came from. */
#ifndef PLUGD_PACKAGE_H
#define PLUGD_PACKAGE_H

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

#endif
