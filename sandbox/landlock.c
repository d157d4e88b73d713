/* The landlock layer: the worker's view of the filesystem, and (ABI 6) its
 * signals and abstract unix sockets scoped to itself. Rules are added for
 * folders and files; everything else is denied. The kernel's uapi header
 * here is older than the kernel, so the newer constants are spelled out. */
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "layers.h"

#define FS_EXECUTE     (1ULL << 0)
#define FS_WRITE_FILE  (1ULL << 1)
#define FS_READ_FILE   (1ULL << 2)
#define FS_READ_DIR    (1ULL << 3)
#define FS_REMOVE_DIR  (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR   (1ULL << 6)
#define FS_MAKE_DIR    (1ULL << 7)
#define FS_MAKE_REG    (1ULL << 8)
#define FS_MAKE_SOCK   (1ULL << 9)
#define FS_MAKE_FIFO   (1ULL << 10)
#define FS_MAKE_BLOCK  (1ULL << 11)
#define FS_MAKE_SYM    (1ULL << 12)
#define FS_REFER       (1ULL << 13) /* ABI 2 */
#define FS_TRUNCATE    (1ULL << 14) /* ABI 3 */
#define FS_IOCTL_DEV   (1ULL << 15) /* ABI 5 */
#define NET_BIND_TCP   (1ULL << 0)  /* ABI 4 */
#define NET_CONNECT    (1ULL << 1)
#define SCOPE_ABSTRACT (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL   (1ULL << 1)

/* Rights that may be granted on a file (not only on a folder). */
#define FILE_RIGHTS (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV)
#define READ_ONLY   (FS_READ_FILE | FS_READ_DIR)
#define READ_WRITE                                                                                 \
    (READ_ONLY | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG |      \
     FS_MAKE_SYM | FS_MAKE_FIFO | FS_MAKE_SOCK | FS_REFER | FS_TRUNCATE)

/* The ruleset attribute as of ABI 6 (the size passed tells the kernel which
 * fields it has). */
struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

/* Where every dynamically linked program finds its libraries. */
static const char *const system_libraries[] = {
    "/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
};

int sb_landlock_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : (int)abi;
}

static uint64_t handled_fs(int abi)
{
    uint64_t fs = (FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
    if (abi >= 2)
        fs |= FS_REFER;
    if (abi >= 3)
        fs |= FS_TRUNCATE;
    if (abi >= 5)
        fs |= FS_IOCTL_DEV;
    return fs;
}

/* Grants `rights` beneath `path`; a path that does not exist is skipped.
 * 0, or an errno. */
static int allow(int ruleset, const char *path, uint64_t rights, uint64_t handled)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
        rights &= FILE_RIGHTS;
    struct landlock_path_beneath_attr rule = {.allowed_access = rights & handled, .parent_fd = fd};
    int rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
    int e = rc < 0 ? errno : 0;
    close(fd);
    return e;
}

/* The rules of the view; 0, or the errno of the first that failed. */
static int add_view(int ruleset, const struct sb_policy *p, uint64_t handled)
{
    int e = 0;
    for (size_t i = 0; i < sizeof(system_libraries) / sizeof(system_libraries[0]); i++)
        e = e ? e : allow(ruleset, system_libraries[i], READ_ONLY, handled);
    e = e ? e : allow(ruleset, p->package_dir, READ_ONLY, handled);
    for (size_t i = 0; i < sizeof(p->exec) / sizeof(p->exec[0]); i++)
        e = e ? e : allow(ruleset, p->exec[i], FS_READ_FILE | FS_EXECUTE, handled);
    e = e ? e : allow(ruleset, "/dev/null", FS_READ_FILE | FS_WRITE_FILE, handled);
    e = e ? e : allow(ruleset, "/dev/zero", FS_READ_FILE, handled);
    e = e ? e : allow(ruleset, "/dev/urandom", FS_READ_FILE, handled);
    e = e ? e : allow(ruleset, p->tmp_dir, READ_WRITE, handled);
    e = e ? e : allow(ruleset, p->data_dir, READ_WRITE, handled);
    for (size_t i = 0; (p->relax & SB_RELAX_NETWORK) && i < SB_NAME_LOOKUP_FILES; i++)
        e = e ? e : allow(ruleset, sb_name_lookup_files[i], FS_READ_FILE, handled);
    if (p->relax & SB_RELAX_READ_USR)
        e = e ? e : allow(ruleset, "/usr", READ_ONLY, handled);
    /* process.spawn: programs of the system may run; what they read stays in the view */
    if (p->relax & SB_RELAX_SPAWN)
        e = e ? e : allow(ruleset, "/usr", FS_EXECUTE | FS_READ_FILE, handled);
    if (SB_HAS_SANITIZER) /* the runtime reads /proc/self/maps */
        e = e ? e : allow(ruleset, "/proc", READ_ONLY, handled);
    return e;
}

void sb_apply_landlock(const struct sb_policy *p, struct sb_report *r)
{
    int abi = p->landlock_abi;
    if (abi < 1) {
        sb_refuse(r, SB_LANDLOCK, "landlock_create_ruleset", EOPNOTSUPP);
        return;
    }
    struct ruleset_attr attr = {.handled_access_fs = handled_fs(abi)};
    size_t size = sizeof(attr.handled_access_fs);
    if (abi >= 4) {
        /* TCP too, unless the plugin may reach the network */
        attr.handled_access_net = (p->relax & SB_RELAX_NETWORK) ? 0 : NET_BIND_TCP | NET_CONNECT;
        size += sizeof(attr.handled_access_net);
    }
    if (abi >= 6) {
        /* signals only within the worker; with process.spawn too */
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT;
        size += sizeof(attr.scoped);
    }
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) {
        sb_refuse(r, SB_LANDLOCK, "landlock_create_ruleset", errno);
        return;
    }
    int e = add_view(ruleset, p, attr.handled_access_fs);
    if (e != 0)
        sb_refuse(r, SB_LANDLOCK, "landlock_add_rule", e);
    else if (syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
        sb_refuse(r, SB_LANDLOCK, "landlock_restrict_self", errno);
    else
        sb_activate(r, SB_LANDLOCK);
    close(ruleset);
}
