/* The mount_namespace layer: the worker's filesystem as a mount namespace
 * that holds nothing but what it may use (docs/sandbox.md, "The view").
 *
 * plugd builds one view at start (sb_view_make): a read-only tmpfs root
 * with /usr and the links or folders of /bin, /lib..., the few files of /etc
 * that libc reads, /dev/null, /dev/zero and /dev/urandom, an empty /tmp,
 * and the whole state folder at VIEW_STATE. Each worker enters the view and
 * makes it its own (sb_enter_view): its tmp folder at /tmp, a tmpfs at the
 * state folder's path in which only its package (read-only), tmp and data
 * folders appear at their real paths, and VIEW_STATE unmounted. Landlock
 * then decides what within the view it may read, write or execute.
 *
 * Building the shared part once keeps the worker's share small: one setns,
 * one unshare of a namespace of a dozen mounts and five mounts of its own
 * (the measurements are in docs/sandbox.md). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "layers.h"

/* Where the whole state folder is mounted in the shared view; each worker
 * unmounts it from its own copy. */
#define VIEW_STATE "/.plugd-state"

/* binds, remounts and propagation changes take no file system type; a
 * name rather than NULL keeps valgrind's check of mount(2) quiet */
#define FS_TYPE_IGNORED "none"

#define READ_ONLY (MS_RDONLY | MS_NOSUID | MS_NODEV)
#define NO_EXEC   (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* The system's programs and libraries: a folder is mounted read-only, a
 * link (merged /usr) made again. */
static const char *const system_paths[] = {"/usr",   "/bin",   "/sbin",  "/lib",
                                           "/lib32", "/lib64", "/libx32"};
/* What libc reads of /etc besides the loader's cache: what name lookups
 * need (landlock lets only net.outbound read them). */
const char *const sb_name_lookup_files[SB_NAME_LOOKUP_FILES] = {
    "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf"};
static const char *const devices[] = {"/dev/null", "/dev/zero", "/dev/urandom"};

/* The reason into `why` (SB_REASON_MAX); returns -1. */
static int failed(char *why, const char *what, int err)
{
    sb_reason(why, what, err);
    return -1;
}

/* mkdir -p, every folder 0755. */
static int make_dirs(const char *path)
{
    char at[PATH_MAX];
    if (snprintf(at, sizeof(at), "%s", path) >= (int)sizeof(at)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *end = at + 1;; end++) {
        char saved = *end;
        if (saved != '/' && saved != '\0')
            continue;
        *end = '\0';
        if (mkdir(at, 0755) < 0 && errno != EEXIST)
            return -1;
        *end = saved;
        if (saved == '\0')
            return 0;
    }
}

/* An empty file at `path` (its folders made), to mount a file over. */
static int make_file(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (make_dirs(dir) < 0)
            return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* The flags the mount at `path` has: a remount keeps them (in a user
 * namespace the kernel refuses one that would clear them). */
static unsigned long flags_of(const char *path)
{
    static const struct {
        unsigned long st, ms;
    } map[] = {{ST_RDONLY, MS_RDONLY},        {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},
               {ST_NOEXEC, MS_NOEXEC},        {ST_NOATIME, MS_NOATIME}, {ST_RELATIME, MS_RELATIME},
               {ST_NODIRATIME, MS_NODIRATIME}};
    struct statvfs st;
    unsigned long flags = 0;
    if (statvfs(path, &st) < 0)
        return 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (st.f_flag & map[i].st)
            flags |= map[i].ms;
    return flags;
}

/* Mounts `from` (with what is mounted below it) at `to`, which exists,
 * then adds `flags` to that mount's own: a bind takes no flags of its own
 * until it is remounted. */
static int bind(const char *from, const char *to, unsigned long flags)
{
    if (mount(from, to, FS_TYPE_IGNORED, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    if (flags == 0)
        return 0;
    return mount(NULL, to, FS_TYPE_IGNORED, MS_BIND | MS_REMOUNT | flags | flags_of(to), NULL);
}

/* ROOT + path ("" when too long: every use of it then fails) */
static const char *under(const char *root, const char *path, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s%s", root, path);
    if (n < 0 || n >= PATH_MAX)
        out[0] = '\0';
    return out;
}

/* A system folder read-only at the same place under `root`, a link as the
 * same link; what does not exist is skipped. */
static int add_system_path(const char *root, const char *path, char *why)
{
    struct stat st;
    char at[PATH_MAX], target[PATH_MAX];
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : failed(why, path, errno);
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
            return failed(why, path, errno);
        target[n] = '\0';
        return symlink(target, under(root, path, at)) < 0 ? failed(why, at, errno) : 0;
    }
    if (!S_ISDIR(st.st_mode))
        return 0;
    if (make_dirs(under(root, path, at)) < 0 || bind(path, at, READ_ONLY) < 0)
        return failed(why, path, errno);
    return 0;
}

/* A file (or device) mounted over an empty file at the same place. */
static int add_file(const char *root, const char *path, unsigned long flags, char *why)
{
    struct stat st;
    char at[PATH_MAX];
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : failed(why, path, errno);
    if (make_file(under(root, path, at)) < 0 || bind(path, at, flags) < 0)
        return failed(why, path, errno);
    return 0;
}

/* Fills the tmpfs at `root` and makes it the root of this (new) mount
 * namespace. */
static int build_view(const char *root, const char *state_dir, char *why)
{
    char at[PATH_MAX];
    /* nothing of the view propagates back into plugd's namespace */
    if (mount(NULL, "/", FS_TYPE_IGNORED, MS_REC | MS_PRIVATE, NULL) < 0)
        return failed(why, "mount --make-rprivate /", errno);
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return failed(why, "mount tmpfs", errno);
    for (size_t i = 0; i < sizeof(system_paths) / sizeof(system_paths[0]); i++)
        if (add_system_path(root, system_paths[i], why) < 0)
            return -1;
    if (add_file(root, "/etc/ld.so.cache", READ_ONLY, why) < 0)
        return -1;
    for (size_t i = 0; i < SB_NAME_LOOKUP_FILES; i++)
        if (add_file(root, sb_name_lookup_files[i], READ_ONLY, why) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++)
        if (add_file(root, devices[i], MS_NOSUID, why) < 0)
            return -1;
    if (SB_HAS_SANITIZER && add_system_path(root, "/proc", why) < 0)
        return -1; /* the runtime reads /proc/self/maps */
    /* mount points of each worker's own mounts, and the state for them */
    if (make_dirs(under(root, "/tmp", at)) < 0 || make_dirs(under(root, state_dir, at)) < 0 ||
        make_dirs(under(root, VIEW_STATE, at)) < 0)
        return failed(why, at, errno);
    /* not recursive: the root being built is mounted inside the state; not
     * noexec: the binds of the workers' packages keep the flags of this one */
    if (mount(state_dir, at, FS_TYPE_IGNORED, MS_BIND, NULL) < 0 ||
        mount(NULL, at, FS_TYPE_IGNORED, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | flags_of(at),
              NULL) < 0)
        return failed(why, state_dir, errno);
    if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        return failed(why, "pivot_root", errno);
    /* the old root was stacked beneath the new one at "." */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return failed(why, "umount the old root", errno);
    if (mount(NULL, "/", FS_TYPE_IGNORED, MS_BIND | MS_REMOUNT | READ_ONLY, NULL) < 0)
        return failed(why, "remount / read-only", errno);
    return 0;
}

void sb_view_make(struct sb_system *s, const char *state_dir)
{
    if (s->mode == SB_MODE_OFF || s->view_ns >= 0)
        return;
    char *why = s->view_reason;
    snprintf(s->view_state_dir, sizeof(s->view_state_dir), "%s", state_dir);
    mode_t mask = umask(022);
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    char root[PATH_MAX];
    snprintf(root, sizeof(root), "%s/.view-XXXXXX", state_dir);
    if (strcmp(state_dir, "/") == 0 || state_dir[0] != '/') {
        snprintf(why, SB_REASON_MAX, "the state folder must be an absolute path below /");
    } else if (cwd < 0 || s->own_mnt_ns < 0) {
        failed(why, "/proc/self/ns/mnt", errno);
    } else if (unshare(CLONE_NEWNS) < 0) {
        failed(why, "unshare(CLONE_NEWNS)", errno);
    } else {
        int view = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        bool has_root = mkdtemp(root) != NULL;
        if (view < 0 || !has_root)
            failed(why, view < 0 ? "/proc/self/ns/mnt" : root, errno);
        else if (build_view(root, state_dir, why) == 0) {
            s->view_ns = view; /* kept: the view lives as long as this fd */
            view = -1;
        }
        if (setns(s->own_mnt_ns, CLONE_NEWNS) < 0) {
            /* plugd would go on inside the workers' view: cannot go on */
            fprintf(stderr, "plugd: cannot return to its own mount namespace: %s\n",
                    strerror(errno));
            abort();
        }
        if (view >= 0)
            close(view); /* a view that failed half-way goes with its fd */
        if (has_root)
            rmdir(root);
        if (fchdir(cwd) < 0)
            fprintf(stderr, "plugd: cannot return to its folder: %s\n", strerror(errno));
    }
    if (s->view_ns >= 0)
        why[0] = '\0';
    if (cwd >= 0)
        close(cwd);
    umask(mask);
}

/* ------------------------------------------------------------ child side */

/* The part of `path` below the state folder ("/packages/x/1.0.0-ab..."),
 * or NULL when it lies elsewhere. */
static const char *below_state(const struct sb_policy *p, const char *path)
{
    size_t len = strlen(p->view_state_dir);
    if (path == NULL || strncmp(path, p->view_state_dir, len) != 0 || path[len] != '/')
        return NULL;
    return path + len;
}

/* One of the worker's folders (`path`, below the state) mounted at `at`,
 * from the view's copy of the state. */
static int mount_own(const struct sb_policy *p, const char *path, const char *at,
                     unsigned long flags, char *why)
{
    const char *rel = below_state(p, path);
    char from[PATH_MAX];
    if (rel == NULL) {
        snprintf(why, SB_REASON_MAX, "%.60s is outside the state folder", path);
        return -1;
    }
    snprintf(from, sizeof(from), "%s%s", VIEW_STATE, rel);
    if (make_dirs(at) < 0 || bind(from, at, flags) < 0)
        return failed(why, at, errno);
    return 0;
}

/* In a view: the worker's own folders in it and the rest of the state
 * gone; in the shared view, on a copy for this worker alone. */
static int make_own_view(const struct sb_policy *p, bool is_shared, char *why)
{
    const char *state = p->view_state_dir;
    bool has_tmp = p->tmp_dir != NULL && p->tmp_dir[0] != '\0';
    if (is_shared && unshare(CLONE_NEWNS) < 0)
        return failed(why, "unshare(CLONE_NEWNS)", errno);
    /* /tmp first: a state folder below /tmp gets its mount point made
     * inside the worker's tmp, and stays visible above it */
    if (has_tmp && mount_own(p, p->tmp_dir, "/tmp", NO_EXEC, why) < 0)
        return -1;
    if (make_dirs(state) < 0 ||
        mount("tmpfs", state, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0)
        return failed(why, state, errno);
    if (mount_own(p, p->package_dir, p->package_dir, READ_ONLY, why) < 0 ||
        (has_tmp && mount_own(p, p->tmp_dir, p->tmp_dir, NO_EXEC, why) < 0) ||
        (p->data_dir != NULL && mount_own(p, p->data_dir, p->data_dir, NO_EXEC, why) < 0))
        return -1;
    if (umount2(VIEW_STATE, MNT_DETACH) < 0)
        return failed(why, "umount " VIEW_STATE, errno);
    if (mount(NULL, state, FS_TYPE_IGNORED, MS_BIND | MS_REMOUNT | READ_ONLY | MS_NOEXEC, NULL) < 0)
        return failed(why, state, errno);
    return 0;
}

/* plugd without root: the worker's mount namespace, made by the clone and
 * owned by its user namespace, becomes a view of its own, built on its tmp
 * folder (no shared view can be entered from another user namespace). */
static int make_view_in_user_namespace(const struct sb_policy *p, char *why)
{
    if (p->view_state_dir[0] == '\0') {
        snprintf(why, SB_REASON_MAX, "no state folder to build the view for");
        return -1;
    }
    if (p->tmp_dir == NULL || p->tmp_dir[0] == '\0') {
        snprintf(why, SB_REASON_MAX, "no tmp folder to build the view on");
        return -1;
    }
    if (build_view(p->tmp_dir, p->view_state_dir, why) < 0) {
        umount2(p->tmp_dir, MNT_DETACH); /* its tmp folder back, if it failed before pivot_root */
        return -1;
    }
    return make_own_view(p, false, why);
}

void sb_enter_view(const struct sb_policy *p, struct sb_report *r)
{
    char why[SB_REASON_MAX], cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        sb_refuse(r, SB_MOUNT_NS, "getcwd", errno);
        return;
    }
    int rc = -1;
    mode_t mask = umask(022);
    if (p->in_user_ns) {
        rc = make_view_in_user_namespace(p, why);
    } else if (p->view_refused != NULL) {
        snprintf(why, sizeof(why), "%s", p->view_refused);
    } else if (setns(p->view_fd, CLONE_NEWNS) < 0) {
        failed(why, "setns(mnt)", errno);
    } else if ((rc = make_own_view(p, true, why)) < 0 && setns(p->home_mnt_fd, CLONE_NEWNS) < 0) {
        _exit(126); /* half a view would hide the worker's own files */
    }
    umask(mask);
    if (chdir(cwd) < 0 && rc == 0) /* setns moved it to the root */
        rc = failed(why, cwd, errno);
    if (rc == 0)
        sb_activate(r, SB_MOUNT_NS);
    else
        sb_refuse_text(r, SB_MOUNT_NS, why);
}
