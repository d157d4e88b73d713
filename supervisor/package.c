#include "package.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The package's files, relative to its folder, in a fixed order (an
 * array the caller frees; NULL when out of memory). */
static const char **package_files(const struct manifest *m, size_t *n)
{
    const char **files = calloc(m->n_files + 2, sizeof(*files));
    if (files == NULL)
        return NULL;
    files[0] = "plugin.json";
    files[1] = m->entrypoint_rel;
    for (size_t i = 0; i < m->n_files; i++)
        files[2 + i] = m->files[i];
    *n = m->n_files + 2;
    return files;
}

static int hash_file(crypto_hash_sha256_state *h, const char *dir, const char *rel,
                     struct plugd_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return plugd_error_set(err, PLUGD_E_INVALID_MANIFEST, "package: cannot read %s: %s", path,
                               strerror(e));
    }
    /* name, size and bytes of each file, so moving bytes between files
     * changes the digest */
    uint64_t size = (uint64_t)st.st_size;
    crypto_hash_sha256_update(h, (const unsigned char *)rel, strlen(rel) + 1);
    crypto_hash_sha256_update(h, (const unsigned char *)&size, sizeof(size));
    unsigned char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        crypto_hash_sha256_update(h, buf, (unsigned long long)n);
    close(fd);
    if (n < 0)
        return plugd_error_set(err, PLUGD_E_IO, "package: reading %s failed", path);
    return 0;
}

int pkg_digest(const struct manifest *m, char out[PKG_DIGEST_HEX], struct plugd_error *err)
{
    size_t n;
    const char **files = package_files(m, &n);
    if (files == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "package: no memory");
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < n; i++) {
        if (hash_file(&h, m->dir, files[i], err) < 0) {
            free(files);
            return -1;
        }
    }
    free(files);
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&h, digest);
    sodium_bin2hex(out, PKG_DIGEST_HEX, digest, sizeof(digest));
    return 0;
}

/* mkdir -p; each folder it makes gets `mode` whatever the umask */
static int make_dirs(char *path, mode_t mode)
{
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        int rc = mkdir(path, mode) == 0 ? chmod(path, mode) : errno == EEXIST ? 0 : -1;
        *p = saved;
        if (rc < 0 || saved == '\0')
            return rc;
    }
}

static int copy_file(const char *from, const char *to, struct plugd_error *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0)
        goto fail;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    /* readable by the workers' uid; executable where the original is */
    if (out < 0 || fchmod(out, (st.st_mode & 0755) | 0444) < 0)
        goto fail;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0)
                goto fail;
            done += w;
        }
    }
    if (n < 0 || close(out) < 0) {
        out = -1;
        goto fail;
    }
    close(in);
    return 0;

fail:
    plugd_error_set(err, PLUGD_E_IO, "package: copying %s to %s: %s", from, to, strerror(errno));
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return -1;
}

/* Removes the package files `files` under `dir`, then `dir` if that
 * leaves it empty (not confine.c's remove_tree: only what a copy wrote). */
static void remove_copy(const char *dir, const char **files, size_t n)
{
    char path[PATH_MAX * 2];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Copies the files into `tmp` and renames it to `final`; a `final` that is
 * there already (another copy won the rename) counts as done. */
static int copy_package(const struct manifest *m, const char **files, size_t n, const char *tmp,
                        const char *final, struct plugd_error *err)
{
    remove_copy(tmp, files, n); /* a leftover of an interrupted copy */
    if (make_dirs((char *)tmp, 0755) < 0)
        return plugd_error_set(err, PLUGD_E_IO, "package: cannot create %s: %s", tmp,
                               strerror(errno));
    for (size_t i = 0; i < n; i++) {
        char from[PATH_MAX], to[PATH_MAX + 40];
        snprintf(from, sizeof(from), "%s/%s", m->dir, files[i]);
        snprintf(to, sizeof(to), "%s/%s", tmp, files[i]);
        char *slash = strrchr(to, '/');
        *slash = 0;
        int rc = make_dirs(to, 0755);
        *slash = '/';
        if (rc < 0)
            return plugd_error_set(err, PLUGD_E_IO, "package: cannot create a folder for %s", to);
        if (copy_file(from, to, err) < 0)
            return -1;
    }
    if (rename(tmp, final) < 0 && errno != ENOTEMPTY && errno != EEXIST)
        return plugd_error_set(err, PLUGD_E_IO, "package: cannot move %s into place: %s", tmp,
                               strerror(errno));
    return 0;
}

int pkg_store(const char *state_dir, const struct manifest *m, const char *digest, char *out,
              size_t out_size, struct plugd_error *err)
{
    char final[PATH_MAX], tmp[PATH_MAX + 32], probe[PATH_MAX + 16], resolved[PATH_MAX];
    snprintf(final, sizeof(final), "%s/packages/%s/%s-%.12s", state_dir, m->name, m->version,
             digest);
    snprintf(probe, sizeof(probe), "%s/plugin.json", final);
    if (realpath(final, resolved) != NULL && strlen(resolved) < out_size &&
        access(probe, R_OK) == 0) {
        memcpy(out, resolved, strlen(resolved) + 1);
        return 0; /* this exact package is stored already */
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", final, (long)getpid());
    size_t n;
    const char **files = package_files(m, &n);
    if (files == NULL)
        return plugd_error_set(err, PLUGD_E_NO_MEMORY, "package: no memory");
    int rc = copy_package(m, files, n, tmp, final, err);
    remove_copy(tmp, files, n); /* left on failure, or when another copy won the rename */
    free(files);
    if (rc < 0)
        return -1;
    if (realpath(final, resolved) == NULL || strlen(resolved) >= out_size)
        return plugd_error_set(err, PLUGD_E_IO, "package: %s is not reachable", final);
    memcpy(out, resolved, strlen(resolved) + 1);
    return 0;
}

/* ------------------------------------------------------------ reading */

void pkg_clear(struct pkg *pkg)
{
    manifest_free(pkg->m);
    free(pkg->manifest_json);
    memset(pkg, 0, sizeof(*pkg));
}

int pkg_read(const char *state_dir, const char *src_dir, struct pkg *pkg, struct plugd_error *err)
{
    memset(pkg, 0, sizeof(*pkg));
    pkg->m = manifest_load(src_dir, err);
    if (pkg->m == NULL || pkg_digest(pkg->m, pkg->digest, err) < 0 ||
        pkg_store(state_dir, pkg->m, pkg->digest, pkg->dir, sizeof(pkg->dir), err) < 0)
        goto fail;
    if ((pkg->manifest_json = json_dumps(pkg->m->json, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for a manifest");
        goto fail;
    }
    return 0;

fail:
    pkg_clear(pkg);
    return -1;
}

struct manifest *pkg_load(const char *dir, const char *config, struct plugd_error *err)
{
    struct manifest *m = manifest_load(dir, err);
    if (m == NULL || config == NULL)
        return m;
    json_t *operator_config = json_loads(config, 0, NULL);
    json_t *effective = manifest_config_with(m, operator_config);
    json_decref(operator_config);
    if (effective == NULL) {
        plugd_error_set(err, PLUGD_E_NO_MEMORY, "no memory for the config of %s", m->name);
        manifest_free(m);
        return NULL;
    }
    json_decref(m->config);
    m->config = effective;
    return m;
}

/* ------------------------------------------------------------ capabilities */

/* The capabilities of `b` that `a` lacks; with `protocol`, a protocol
 * change counts as "protocol:N". */
static int append_missing(json_t *out, const struct manifest *a, const struct manifest *b,
                          bool protocol)
{
    for (size_t i = 0; i < b->n_capabilities; i++)
        if (!manifest_has_capability(a, b->capabilities[i]) &&
            json_array_append_new(out, json_string(b->capabilities[i])) < 0)
            return -1;
    if (protocol && a->protocol != b->protocol &&
        json_array_append_new(out, json_sprintf("protocol:%d", b->protocol)) < 0)
        return -1;
    return 0;
}

json_t *pkg_capability_diff(const struct manifest *running, const struct manifest *next)
{
    json_t *added = json_array(), *removed = json_array();
    if (added == NULL || removed == NULL || append_missing(added, running, next, true) < 0 ||
        append_missing(removed, next, running, false) < 0) {
        json_decref(added);
        json_decref(removed);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "added", added, "removed", removed);
}

void pkg_revoke_capabilities(struct manifest *running, const struct manifest *next)
{
    size_t kept = 0;
    for (size_t i = 0; i < running->n_capabilities; i++) {
        if (manifest_has_capability(next, running->capabilities[i]))
            running->capabilities[kept++] = running->capabilities[i];
        else
            free(running->capabilities[i]);
    }
    running->n_capabilities = kept;
}
