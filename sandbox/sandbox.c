#include "sandbox.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Sanitizer runtimes reserve terabytes of address space up front: an
 * address-space limit would stop every worker of such a build. */
#if defined(__SANITIZE_ADDRESS__)
#define HAS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAS_SANITIZER 1
#endif
#endif
#ifndef HAS_SANITIZER
#define HAS_SANITIZER 0
#endif

#define FILE_SIZE_MAX ((rlim_t)1 << 30) /* 1 GiB per file a worker writes */

static const char *const layer_names[SB_LAYER_COUNT] = {
    [SB_RLIMITS] = "rlimits",
    [SB_FDS] = "fds",
    [SB_NO_NEW_PRIVS] = "no_new_privs",
    [SB_CAPS] = "capabilities",
};

const char *sb_layer_name(enum sb_layer layer)
{
    return layer < SB_LAYER_COUNT ? layer_names[layer] : "?";
}

void sb_policy_init(struct sb_policy *p, int memory_mb, int nofile, int nproc, int keep_fd)
{
    *p = (struct sb_policy){
        .address_space = HAS_SANITIZER ? 0 : (rlim_t)memory_mb << 20,
        .open_files = (rlim_t)nofile,
        .processes = (rlim_t)nproc,
        .file_size = FILE_SIZE_MAX,
        .keep_fd = keep_fd,
    };
}

/* Records the first refusal of a layer (its reason names the call). */
static void refuse(struct sb_report *r, enum sb_layer layer, const char *what, int err)
{
    if (r->refused & (1u << layer))
        return;
    r->refused |= 1u << layer;
    snprintf(r->reason[layer], SB_REASON_MAX, "%s: %s", what, strerror(err));
}

static bool set_limit(struct sb_report *r, int resource, rlim_t value, const char *what)
{
    struct rlimit rl = {.rlim_cur = value, .rlim_max = value};
    if (setrlimit(resource, &rl) == 0)
        return true;
    refuse(r, SB_RLIMITS, what, errno);
    return false;
}

static void apply_rlimits(const struct sb_policy *p, struct sb_report *r)
{
    /* every limit is tried: one the kernel refuses does not lift the others */
    bool ok = set_limit(r, RLIMIT_CORE, 0, "RLIMIT_CORE");
    ok &= set_limit(r, RLIMIT_NOFILE, p->open_files, "RLIMIT_NOFILE");
    ok &= set_limit(r, RLIMIT_NPROC, p->processes, "RLIMIT_NPROC");
    ok &= set_limit(r, RLIMIT_FSIZE, p->file_size, "RLIMIT_FSIZE");
    ok &= p->address_space == 0 || set_limit(r, RLIMIT_AS, p->address_space, "RLIMIT_AS");
    if (ok)
        r->active |= 1u << SB_RLIMITS;
}

static void close_inherited_fds(const struct sb_policy *p, struct sb_report *r)
{
    if (syscall(SYS_close_range, (unsigned)p->keep_fd + 1, ~0U, 0) == 0)
        r->active |= 1u << SB_FDS;
    else
        refuse(r, SB_FDS, "close_range", errno);
}

/* Drops the bounding set (needs CAP_SETPCAP: plugd running as root), then
 * the effective, permitted and inheritable sets, and the ambient set. */
static void drop_capabilities(struct sb_report *r)
{
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            refuse(r, SB_CAPS, "PR_CAPBSET_DROP", errno);
            return;
        }
    }
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        refuse(r, SB_CAPS, "PR_CAP_AMBIENT", errno);
        return;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) {
        refuse(r, SB_CAPS, "capset", errno);
        return;
    }
    r->active |= 1u << SB_CAPS;
}

void sb_apply(const struct sb_policy *p, struct sb_report *r)
{
    *r = (struct sb_report){0};
    apply_rlimits(p, r);
    close_inherited_fds(p, r);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        r->active |= 1u << SB_NO_NEW_PRIVS;
    else
        refuse(r, SB_NO_NEW_PRIVS, "PR_SET_NO_NEW_PRIVS", errno);
    drop_capabilities(r);
}
