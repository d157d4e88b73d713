/* What plugd prepares once for all workers: the shared namespaces, its
 * cgroup (v2 where the unified hierarchy has the memory and pids
 * controllers, v1 otherwise), the landlock ABI; and each worker's cgroup. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layers.h"

#define CPU_PERIOD_US 100000

static const char *const v1_controllers[SB_CG_COUNT] = {
    [SB_CG_MEMORY] = "memory",
    [SB_CG_PIDS] = "pids",
    [SB_CG_CPU] = "cpu",
    [SB_CG_CPUACCT] = "cpuacct",
};

/* ------------------------------------------------------------ namespaces */

/* One offline network namespace (only a loopback, down), one ipc and one
 * uts namespace, made once and entered by every worker with setns: a
 * namespace per worker would cost its teardown on every restart
 * (docs/sandbox.md measures it). */
static void make_namespaces(struct sb_system *s)
{
    static const int types[] = {CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS};
    static const char *const files[] = {"/proc/self/ns/net", "/proc/self/ns/ipc",
                                        "/proc/self/ns/uts"};
    int *made[] = {&s->offline_net, &s->shared_ipc, &s->shared_uts};
    int home[3] = {-1, -1, -1};
    for (int i = 0; i < 3; i++)
        home[i] = open(files[i], O_RDONLY | O_CLOEXEC);
    if (home[0] < 0 || home[1] < 0 || home[2] < 0) {
        snprintf(s->ns_reason, sizeof(s->ns_reason), "/proc/self/ns: %s", strerror(errno));
    } else if (unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0) {
        snprintf(s->ns_reason, sizeof(s->ns_reason), "unshare: %s", strerror(errno));
    } else {
        sethostname("plugd-worker", strlen("plugd-worker"));
        for (int i = 0; i < 3; i++) {
            *made[i] = open(files[i], O_RDONLY | O_CLOEXEC);
            if (setns(home[i], types[i]) < 0) {
                /* plugd would stay in the workers' namespace: cannot go on */
                fprintf(stderr, "plugd: cannot return to its own namespace: %s\n", strerror(errno));
                abort();
            }
        }
    }
    for (int i = 0; i < 3; i++)
        if (home[i] >= 0)
            close(home[i]);
}

/* A pid namespace per worker is made at the fork (sb_fork); here plugd
 * keeps its own to return to, and learns whether the kernel lets it. */
static void check_pid_namespace(struct sb_system *s)
{
    s->own_pid_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (s->own_pid_ns < 0) {
        snprintf(s->pid_ns_reason, sizeof(s->pid_ns_reason), "/proc/self/ns/pid: %s",
                 strerror(errno));
    } else if (unshare(CLONE_NEWPID) < 0) {
        snprintf(s->pid_ns_reason, sizeof(s->pid_ns_reason), "unshare(CLONE_NEWPID): %s",
                 strerror(errno));
    } else if (setns(s->own_pid_ns, CLONE_NEWPID) < 0) {
        fprintf(stderr, "plugd: cannot return to its own pid namespace: %s\n", strerror(errno));
        abort(); /* every later child would land in an empty namespace */
    }
}

/* ------------------------------------------------------------ user */

static bool parse_id(const char *text, unsigned long *out)
{
    char *end;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0 && *out < 0xffffffffUL;
}

int sb_resolve_user(const char *spec, uid_t *uid, gid_t *gid, char *why, size_t why_size)
{
    char user[128];
    const char *colon = strchr(spec, ':');
    size_t len = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0 || len >= sizeof(user) || (colon != NULL && colon[1] == '\0')) {
        snprintf(why, why_size, "\"%s\" is not USER, UID or USER:GROUP", spec);
        return -1;
    }
    memcpy(user, spec, len);
    user[len] = '\0';
    unsigned long id;
    struct passwd *pw = parse_id(user, &id) ? NULL : getpwnam(user);
    if (pw == NULL && !parse_id(user, &id)) {
        snprintf(why, why_size, "no user \"%s\"", user);
        return -1;
    }
    *uid = pw != NULL ? pw->pw_uid : (uid_t)id;
    *gid = pw != NULL ? pw->pw_gid : (gid_t)id; /* a bare UID: the group of the same number */
    if (colon != NULL) {
        struct group *gr = parse_id(colon + 1, &id) ? NULL : getgrnam(colon + 1);
        if (gr == NULL && !parse_id(colon + 1, &id)) {
            snprintf(why, why_size, "no group \"%s\"", colon + 1);
            return -1;
        }
        *gid = gr != NULL ? gr->gr_gid : (gid_t)id;
    }
    if (*uid == 0 || *gid == 0) {
        snprintf(why, why_size, "\"%s\" is root: workers need an unprivileged user", spec);
        return -1;
    }
    return 0;
}

/* Who the workers run as: an unprivileged user where plugd is root (it can
 * switch); plugd's own, already unprivileged, uid otherwise. */
static void choose_worker_user(struct sb_system *s, const char *spec)
{
    if (geteuid() != 0)
        return;
    char why[SB_REASON_MAX];
    if (sb_resolve_user(spec != NULL ? spec : "nobody", &s->worker_uid, &s->worker_gid, why,
                        sizeof(why)) == 0)
        return;
    if (spec != NULL) {
        snprintf(s->user_reason, sizeof(s->user_reason), "%s", why);
        return;
    }
    s->worker_uid = s->worker_gid = 65534; /* no "nobody" in the passwd file */
}

/* Whether `uid`/`gid` (no supplementary groups) may search folder `st`. */
static bool may_search(const struct stat *st, uid_t uid, gid_t gid)
{
    mode_t bit = st->st_uid == uid ? S_IXUSR : st->st_gid == gid ? S_IXGRP : S_IXOTH;
    return (st->st_mode & bit) != 0;
}

void sb_system_check_reach(struct sb_system *s, const char *dir)
{
    if (s->worker_uid == 0 || s->user_reason[0] != '\0')
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *end = path + 1;; end++) {
        char saved = *end;
        if (saved != '/' && saved != '\0')
            continue;
        *end = '\0';
        struct stat st;
        if (stat(path, &st) == 0 && !may_search(&st, s->worker_uid, s->worker_gid)) {
            size_t len = strlen(path);
            snprintf(s->user_reason, sizeof(s->user_reason),
                     "uid %u cannot reach the state: %.40s is %03o", (unsigned)s->worker_uid,
                     len > 40 ? path + len - 40 : path, (unsigned)(st.st_mode & 07777));
            return;
        }
        *end = saved;
        if (saved == '\0')
            return;
    }
}

/* ------------------------------------------------------------ cgroups */

int sb_write_file(const char *dir, const char *file, const char *value)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd;
    while ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (fd < 0)
        return -1;
    ssize_t n; /* a signal to plugd must not cost a worker its cgroup */
    while ((n = write(fd, value, strlen(value))) < 0 && errno == EINTR)
        ;
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static bool read_file(const char *dir, const char *file, char *out, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return n > 0;
}

/* The unified hierarchy's root where it has memory and pids, or NULL. */
static const char *unified_with_controllers(void)
{
    static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++) {
        char list[512];
        if (read_file(roots[i], "cgroup.controllers", list, sizeof(list)) &&
            strstr(list, "memory") != NULL && strstr(list, "pids") != NULL)
            return roots[i];
    }
    return NULL;
}

/* Removes a cgroup folder with its worker folders (rmdir only: the kernel
 * refuses while a process is in one). */
static void remove_cgroup_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        if (e->d_type == DT_DIR && e->d_name[0] != '.' &&
            snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) < (int)sizeof(sub))
            rmdir(sub);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

/* The cgroups of a plugd that was killed (SIGKILL, a crash) stay behind:
 * the next plugd removes those whose pid is gone. */
static void remove_stale_cgroups(const char *root)
{
    DIR *d = opendir(root);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        int pid;
        char end;
        if (sscanf(e->d_name, "plugd-%d%c", &pid, &end) != 1 || pid <= 0 ||
            (kill(pid, 0) == 0 || errno != ESRCH))
            continue;
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name) < (int)sizeof(dir))
            remove_cgroup_tree(dir);
    }
    if (d != NULL)
        closedir(d);
}

static void make_cgroups(struct sb_system *s)
{
    char name[64];
    snprintf(name, sizeof(name), "plugd-%d", (int)getpid());
    const char *unified = unified_with_controllers();
    if (unified != NULL) {
        remove_stale_cgroups(unified);
        snprintf(s->cgroup_dir[0], PATH_MAX, "%s/%s", unified, name);
        if (mkdir(s->cgroup_dir[0], 0755) < 0 ||
            sb_write_file(unified, "cgroup.subtree_control", "+memory +pids") < 0 ||
            sb_write_file(s->cgroup_dir[0], "cgroup.subtree_control", "+memory +pids") < 0) {
            sb_reason(s->cgroup_reason, s->cgroup_dir[0], errno);
            rmdir(s->cgroup_dir[0]);
            s->cgroup_dir[0][0] = '\0';
            return;
        }
        sb_write_file(s->cgroup_dir[0], "cgroup.subtree_control", "+cpu"); /* where it is */
        s->cgroup = SB_CGROUP_V2;
        return;
    }
    int made = 0;
    for (int c = 0; c < SB_CG_COUNT; c++) {
        char root[64];
        snprintf(root, sizeof(root), "/sys/fs/cgroup/%s", v1_controllers[c]);
        if (access(root, W_OK) < 0) {
            if (s->cgroup_reason[0] == '\0')
                sb_reason(s->cgroup_reason, root, errno);
            continue;
        }
        remove_stale_cgroups(root);
        snprintf(s->cgroup_dir[c], PATH_MAX, "%s/%s", root, name);
        if (mkdir(s->cgroup_dir[c], 0755) < 0 && errno != EEXIST) {
            sb_reason(s->cgroup_reason, s->cgroup_dir[c], errno);
            s->cgroup_dir[c][0] = '\0';
            continue;
        }
        made++;
    }
    /* memory and pids are the limits that matter; cpu is optional */
    if (s->cgroup_dir[SB_CG_MEMORY][0] && s->cgroup_dir[SB_CG_PIDS][0]) {
        s->cgroup = SB_CGROUP_V1;
        s->cgroup_reason[0] = '\0';
    } else if (made > 0) {
        for (int c = 0; c < SB_CG_COUNT; c++)
            if (s->cgroup_dir[c][0] && rmdir(s->cgroup_dir[c]) == 0)
                s->cgroup_dir[c][0] = '\0';
    }
    if (s->cgroup == SB_CGROUP_NONE && s->cgroup_reason[0] == '\0')
        snprintf(s->cgroup_reason, sizeof(s->cgroup_reason), "no memory and pids controllers");
}

/* Kills what is left in a worker's cgroup and removes it. */
static void remove_cgroup(const char *dir)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        char procs[4096];
        if (read_file(dir, "cgroup.procs", procs, sizeof(procs)))
            for (char *line = strtok(procs, "\n"); line != NULL; line = strtok(NULL, "\n"))
                kill((pid_t)atoi(line), SIGKILL);
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            break;
        usleep(1000); /* the killed are still exiting */
    }
}

int sb_cgroup_create(const struct sb_system *s, const char *name, int memory_mb, int nproc,
                     int cpu_percent, struct sb_cgroup *cg, char *why, size_t why_size)
{
    memset(cg, 0, sizeof(*cg));
    char(*dirs)[PATH_MAX] = cg->dir;
    if (s->cgroup == SB_CGROUP_NONE) {
        snprintf(why, why_size, "%s", s->cgroup_reason);
        return -1;
    }
    bool v2 = s->cgroup == SB_CGROUP_V2;
    char value[64];
    for (int c = 0; c < (v2 ? 1 : SB_CG_COUNT); c++) {
        if (s->cgroup_dir[c][0] == '\0')
            continue;
        snprintf(dirs[c], PATH_MAX, "%s/%s", s->cgroup_dir[c], name);
        remove_cgroup(dirs[c]); /* a run before that could not be removed */
        if (mkdir(dirs[c], 0755) < 0)
            goto fail;
    }
    long long bytes = (long long)memory_mb << 20;
    const char *mem = dirs[v2 ? 0 : SB_CG_MEMORY], *pids = dirs[v2 ? 0 : SB_CG_PIDS];
    const char *cpu = dirs[v2 ? 0 : SB_CG_CPU];
    snprintf(value, sizeof(value), "%lld", bytes);
    if (sb_write_file(mem, v2 ? "memory.max" : "memory.limit_in_bytes", value) < 0)
        goto fail;
    sb_write_file(mem, v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes", v2 ? "0" : value);
    snprintf(value, sizeof(value), "%d", nproc);
    if (sb_write_file(pids, "pids.max", value) < 0)
        goto fail;
    if (cpu[0] != '\0') {
        long quota = (long)cpu_percent * CPU_PERIOD_US / 100;
        if (v2)
            snprintf(value, sizeof(value), "%ld %d", quota, CPU_PERIOD_US);
        else
            snprintf(value, sizeof(value), "%ld", quota);
        if (sb_write_file(cpu, v2 ? "cpu.max" : "cpu.cfs_quota_us", value) < 0 && !v2)
            goto fail;
    }
    return 0;
fail:
    snprintf(why, why_size, "cgroup of %s: %s", name, strerror(errno));
    sb_cgroup_remove(cg);
    return -1;
}

void sb_cgroup_remove(struct sb_cgroup *cg)
{
    for (int c = 0; c < SB_CG_COUNT; c++) {
        if (cg->dir[c][0] != '\0')
            remove_cgroup(cg->dir[c]);
        cg->dir[c][0] = '\0';
    }
}

bool sb_cgroup_oom_killed(const struct sb_system *s, const struct sb_cgroup *cg)
{
    const char *mem = cg->dir[s->cgroup == SB_CGROUP_V2 ? 0 : SB_CG_MEMORY];
    char text[512];
    if (mem[0] == '\0' ||
        !read_file(mem, s->cgroup == SB_CGROUP_V2 ? "memory.events" : "memory.oom_control", text,
                   sizeof(text)))
        return false;
    const char *at = strstr(text, "oom_kill ");
    return at != NULL && atoll(at + strlen("oom_kill ")) > 0;
}

double sb_cgroup_cpu_seconds(const struct sb_system *s, const struct sb_cgroup *cg)
{
    bool v2 = s->cgroup == SB_CGROUP_V2;
    const char *dir = cg->dir[v2 ? 0 : SB_CG_CPUACCT];
    char text[512];
    if (dir[0] == '\0' || !read_file(dir, v2 ? "cpu.stat" : "cpuacct.usage", text, sizeof(text)))
        return -1;
    if (!v2)
        return (double)atoll(text) / 1e9; /* ns */
    const char *at = strstr(text, "usage_usec ");
    return at != NULL ? (double)atoll(at + strlen("usage_usec ")) / 1e6 : -1;
}

/* ------------------------------------------------------------ system */

void sb_system_init(struct sb_system *s, enum sb_mode mode, const char *worker_user)
{
    *s = (struct sb_system){.mode = mode,
                            .offline_net = -1,
                            .shared_ipc = -1,
                            .shared_uts = -1,
                            .own_pid_ns = -1,
                            .own_mnt_ns = -1,
                            .view_ns = -1};
    snprintf(s->view_reason, sizeof(s->view_reason), "no state folder to build the view for");
    if (mode == SB_MODE_OFF)
        return;
    s->landlock_abi = sb_landlock_abi();
    s->own_mnt_ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    make_namespaces(s);
    check_pid_namespace(s);
    choose_worker_user(s, worker_user);
    make_cgroups(s);
}

void sb_system_fini(struct sb_system *s)
{
    for (int c = 0; c < SB_CG_COUNT; c++) {
        if (s->cgroup_dir[c][0] != '\0')
            remove_cgroup_tree(s->cgroup_dir[c]);
        s->cgroup_dir[c][0] = '\0';
    }
    s->cgroup = SB_CGROUP_NONE;
    sb_filters_free();
    int *fds[] = {&s->offline_net, &s->shared_ipc, &s->shared_uts,
                  &s->own_pid_ns,  &s->own_mnt_ns, &s->view_ns};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
}

void sb_policy_init(struct sb_policy *p, const struct sb_system *s, int memory_mb, int nofile,
                    int nproc, int cpu_seconds, int keep_fd)
{
    bool has_cgroup = s->cgroup != SB_CGROUP_NONE;
    *p = (struct sb_policy){
        .enabled = s->mode != SB_MODE_OFF,
        .strict = s->mode == SB_MODE_STRICT,
        /* the cgroup limits resident memory; an address-space limit would
         * only stop runtimes that reserve more than they use */
        .address_space = SB_HAS_SANITIZER || has_cgroup ? 0 : (rlim_t)memory_mb << 20,
        .open_files = (rlim_t)nofile,
        /* RLIMIT_NPROC counts every process of the uid (all of root's
         * when plugd is root): the cgroup's pids.max counts the worker's */
        .processes = has_cgroup ? 0 : (rlim_t)nproc,
        .file_size = (rlim_t)1 << 30, /* 1 GiB per file a worker writes */
        .cpu_time = (rlim_t)cpu_seconds,
        .keep_fd = keep_fd,
        .net_fd = s->offline_net,
        .ipc_fd = s->shared_ipc,
        .uts_fd = s->shared_uts,
        .ns_refused = s->offline_net < 0 ? s->ns_reason : NULL,
        .view_fd = s->view_ns,
        .home_mnt_fd = s->own_mnt_ns,
        .view_state_dir = s->view_state_dir,
        .view_refused = s->view_ns < 0 ? s->view_reason : NULL,
        .landlock_abi = s->landlock_abi,
        .change_user = s->worker_uid != 0 && s->user_reason[0] == '\0',
        .uid = s->worker_uid,
        .gid = s->worker_gid,
        .user_refused = s->user_reason[0] != '\0' ? s->user_reason : NULL,
    };
}

void sb_policy_without_cgroup(struct sb_policy *p, int memory_mb, int nproc, const char *why)
{
    p->processes = (rlim_t)nproc;
    p->cgroup_refused = why;
    for (int c = 0; c < SB_CG_COUNT; c++)
        p->cgroup_dir[c] = NULL;
    p->address_space = SB_HAS_SANITIZER ? 0 : (rlim_t)memory_mb << 20;
}
