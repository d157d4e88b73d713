#include "confine.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capabilities.h"
#include "logs.h"

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP ? rmdir(path) : unlink(path))
        log_plugd("warn", NULL, "cannot remove %s: %s", path, strerror(errno));
    return 0; /* go on with the rest */
}

void remove_tree(const char *dir)
{
    if (dir[0] != '\0' && access(dir, F_OK) == 0)
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static struct rlimit inherited_nofile = {RLIM_INFINITY, RLIM_INFINITY};
static bool is_nofile_raised;

int confine_raise_fd_limit(rlim_t *now)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    inherited_nofile = rl;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    is_nofile_raised = true;
    *now = rl.rlim_cur;
    return 0;
}

void confine_restore_fd_limit(void)
{
    if (is_nofile_raised)
        setrlimit(RLIMIT_NOFILE, &inherited_nofile);
}

/* A worker without a sandbox system (tests, benches) runs unconfined. */
static const struct sb_system *system_of(const struct wk_confinement *c)
{
    static const struct sb_system off = {
        .mode = SB_MODE_OFF, .own_pid_ns = -1, .own_mnt_ns = -1, .view_ns = -1};
    return c->system != NULL ? c->system : &off;
}

/* What a worker of another uid wrote stays its own: a data folder made
 * while workers ran as root is handed over whole, once. */
static uid_t give_uid;
static gid_t give_gid;

static int give_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (lchown(path, give_uid, give_gid) < 0)
        log_plugd("warn", NULL, "cannot hand %s to uid %u: %s", path, (unsigned)give_uid,
                  strerror(errno));
    return 0;
}

static int give_to_worker(const char *dir, uid_t uid, gid_t gid)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        return -1;
    if (st.st_uid == uid && st.st_gid == gid)
        return 0;
    give_uid = uid;
    give_gid = gid;
    return nftw(dir, give_entry, 16, FTW_PHYS | FTW_MOUNT);
}

/* Packages are code, not secrets (landlock keeps a worker to its own):
 * folders searchable and readable, files readable, by any uid. */
static int open_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    mode_t want = type == FTW_D             ? st->st_mode | 0755
                  : (st->st_mode & S_IXUSR) ? st->st_mode | 0555
                                            : st->st_mode | 0444;
    if (type != FTW_SL && (want & 07777) != (st->st_mode & 07777))
        chmod(path, want & 07777);
    return 0;
}

void confine_open_state(struct sb_system *s, const char *state_dir)
{
    if (s->worker_uid == 0)
        return; /* workers keep plugd's uid */
    static const char *const subs[] = {"", "/tmp", "/data", "/packages"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s%s", state_dir, subs[i]);
        if ((mkdir(dir, 0711) < 0 && errno != EEXIST) || chmod(dir, 0711) < 0)
            log_plugd("warn", NULL, "cannot open %s to the workers: %s", dir, strerror(errno));
    }
    char packages[PATH_MAX];
    snprintf(packages, sizeof(packages), "%s/packages", state_dir);
    nftw(packages, open_entry, 16, FTW_PHYS | FTW_MOUNT);
    chmod(packages, 0711); /* listing the packages stays plugd's */
    sb_system_check_reach(s, state_dir);
    if (s->user_reason[0] != '\0')
        log_plugd("warn", NULL, "workers keep plugd's uid: %s", s->user_reason);
}

pid_t confine_fork(struct wk_confinement *c, struct sb_policy *p)
{
    pid_t pid = sb_fork(system_of(c), p);
    c->is_pid1 = p->enabled && p->pid_ns_refused == NULL;
    return pid;
}

/* Whether `pid` catches or ignores `sig` (/proc/PID/status SigCgt, SigIgn). */
static bool has_disposition(pid_t pid, int sig)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL) {
        unsigned long long mask;
        if (sscanf(line, "SigIgn: %llx", &mask) == 1 || sscanf(line, "SigCgt: %llx", &mask) == 1)
            found = (mask >> (sig - 1)) & 1;
    }
    if (f != NULL)
        fclose(f);
    return found;
}

void confine_terminate(const struct wk_confinement *c, pid_t pid)
{
    kill(pid, c->is_pid1 && !has_disposition(pid, SIGTERM) ? SIGKILL : SIGTERM);
}

static void on_notify(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wk_confinement *c = io->data;
    struct sb_syscall call;
    if (sb_notify_receive(io->fd, &call) < 0)
        return; /* the caller died meanwhile */
    c->violations++;
    snprintf(c->last_violation, sizeof(c->last_violation), "%s", call.name);
    c->on_violation(c, &call);
}

void confine_init(struct wk_confinement *c,
                  void (*on_violation)(struct wk_confinement *c, const struct sb_syscall *call),
                  void *owner)
{
    ev_io_init(&c->notify_w, on_notify, -1, EV_READ);
    c->notify_w.data = c;
    c->child_pidfd = -1;
    c->on_violation = on_violation;
    c->owner = owner;
}

/* --pass-env: what the operator lets a manifest's "env" take from plugd's
 * environment (names borrowed from argv). */
static const char *passable[CONFINE_MAX_PASS_ENV];
static size_t n_passable;

int confine_allow_env(const char *name)
{
    if (n_passable == CONFINE_MAX_PASS_ENV)
        return -1;
    passable[n_passable++] = name;
    return 0;
}

static bool is_passable(const char *name)
{
    for (size_t i = 0; i < n_passable; i++)
        if (strcmp(passable[i], name) == 0)
            return true;
    return false;
}

/* Once per manifest: the names it asks for that the operator did not allow. */
static void log_refused_env(struct wk_confinement *c, const struct manifest *m)
{
    if (c->env_checked == m)
        return;
    c->env_checked = m;
    for (size_t i = 0; i < m->n_env; i++)
        if (!is_passable(m->env[i]))
            log_plugd("warn", m->name,
                      "environment variable %s is not passed: plugd was not started with "
                      "--pass-env %s",
                      m->env[i], m->env[i]);
}

/* BASE/SUB/NAME, 0700 and owned by the worker's user (SUB searchable) */
static int make_dir(const char *base, const char *sub, const char *name, const struct sb_policy *p,
                    char *out, size_t size)
{
    snprintf(out, size, "%s/%s", base, sub);
    if (mkdir(out, 0711) < 0 && errno != EEXIST)
        return -1;
    snprintf(out, size, "%s/%s/%s", base, sub, name);
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return -1;
    return p->change_user ? give_to_worker(out, p->uid, p->gid) : 0;
}

/* What must be executable: the entrypoint, the interpreter its "#!" names,
 * and the ELF interpreter (the dynamic loader) of the program that runs. */
static void find_interpreters(struct wk_confinement *c, const char *entrypoint)
{
    c->interpreter[0][0] = c->interpreter[1][0] = '\0';
    const char *program = entrypoint;
    if (sb_script_interpreter(entrypoint, c->interpreter[0], PATH_MAX))
        program = c->interpreter[0];
    sb_elf_interpreter(program, c->interpreter[1], PATH_MAX);
}

void confine_prepare(struct wk_confinement *c, const struct manifest *m, struct sb_policy *p)
{
    log_refused_env(c, m);
    const struct sb_system *s = system_of(c);
    uint32_t relax = cap_relaxations(m);
    const struct worker_limits *l = &m->limits;
    sb_policy_init(p, s, l->memory_mb, l->nofile, l->nproc, l->cpu_seconds, -1);
    c->tmp_dir[0] = c->data_dir[0] = c->cgroup_why[0] = '\0';
    memset(&c->cgroup, 0, sizeof(c->cgroup));
    if (!p->enabled)
        return;
    if (c->state_dir != NULL) {
        if (make_dir(c->state_dir, "tmp", m->name, p, c->tmp_dir, sizeof(c->tmp_dir)) < 0) {
            log_plugd("warn", m->name, "cannot create %s: %s", c->tmp_dir, strerror(errno));
            c->tmp_dir[0] = '\0';
        }
        if ((relax & SB_RELAX_DATA) &&
            make_dir(c->state_dir, "data", m->name, p, c->data_dir, sizeof(c->data_dir)) < 0) {
            log_plugd("warn", m->name, "cannot create %s: %s", c->data_dir, strerror(errno));
            c->data_dir[0] = '\0';
        }
    }
    if (sb_cgroup_create(s, m->name, l->memory_mb, l->nproc, l->cpu_percent, &c->cgroup,
                         c->cgroup_why, sizeof(c->cgroup_why)) < 0)
        sb_policy_without_cgroup(p, l->memory_mb, l->nproc, c->cgroup_why);
    else
        for (int i = 0; i < SB_CG_COUNT; i++)
            p->cgroup_dir[i] = c->cgroup.dir[i];
    find_interpreters(c, m->entrypoint);
    p->package_dir = m->dir;
    p->exec[0] = m->entrypoint;
    p->exec[1] = c->interpreter[0];
    p->exec[2] = c->interpreter[1];
    p->tmp_dir = c->tmp_dir;
    p->data_dir = c->data_dir[0] ? c->data_dir : NULL;
    p->relax = relax;
    if (relax & SB_RELAX_NETWORK)
        p->net_fd = -1; /* the host's network */
    p->on_violation = m->is_violation_eperm ? SB_VIOLATION_EPERM : SB_VIOLATION_KILL;
}

/* NAME=VALUE of plugd's `name` onto envp, when set. -1 when out of memory
 * (the variable would be missing without a word). */
static int keep(char **envp, size_t *n, const char *name)
{
    const char *v = getenv(name);
    if (v == NULL)
        return 0;
    if (asprintf(&envp[*n], "%s=%s", name, v) < 0)
        return -1;
    (*n)++;
    return 0;
}

int confine_set_env(const struct wk_confinement *c, const struct manifest *m)
{
    static const char *const inherited[] = {"LANG", "LC_ALL", "TZ"};
    char *envp[3 + MANIFEST_MAX_ENV];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(inherited) / sizeof(inherited[0]); i++)
        if (keep(envp, &n, inherited[i]) < 0)
            return -1;
    for (size_t i = 0; i < m->n_env; i++)
        if (is_passable(m->env[i]) && keep(envp, &n, m->env[i]) < 0)
            return -1;
    if (clearenv() != 0 || setenv("PATH", CONFINE_PATH, 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (putenv(envp[i]) != 0) /* the child execs: envp is never freed */
            return -1;
    if (c->tmp_dir[0] != '\0' &&
        (setenv("TMPDIR", c->tmp_dir, 1) < 0 || setenv("HOME", c->tmp_dir, 1) < 0))
        return -1;
    if (c->data_dir[0] != '\0' && setenv("PLUGD_DATA", c->data_dir, 1) < 0)
        return -1;
    return 0;
}

void confine_forget_child(struct wk_confinement *c)
{
    if (c->child_pidfd >= 0)
        close(c->child_pidfd);
    c->child_pidfd = -1;
}

void confine_watch(struct wk_confinement *c, struct ev_loop *loop, int notify_fd)
{
    ev_io_set(&c->notify_w, notify_fd, EV_READ);
    ev_io_start(loop, &c->notify_w);
}

bool confine_oom_killed(const struct wk_confinement *c)
{
    return c->system != NULL && sb_cgroup_oom_killed(c->system, &c->cgroup);
}

bool confine_out_of_cpu_time(const struct wk_confinement *c, int cpu_seconds)
{
    /* the cgroup's count trails the one the kernel's limit reads (seen:
     * 17 ms of 1 s, and up to 80 ms with both cores busy), and misses the
     * child's time before it joined the cgroup: half the limit, for a
     * SIGKILL plugd did not send, is the kernel's limit */
    return c->system != NULL && sb_cgroup_cpu_seconds(c->system, &c->cgroup) >= 0.5 * cpu_seconds;
}

void confine_release(struct wk_confinement *c, struct ev_loop *loop)
{
    confine_forget_child(c);
    if (c->notify_w.fd >= 0) {
        ev_io_stop(loop, &c->notify_w);
        close(c->notify_w.fd);
        ev_io_set(&c->notify_w, -1, EV_READ);
    }
    sb_cgroup_remove(&c->cgroup);
    remove_tree(c->tmp_dir);
    c->tmp_dir[0] = '\0';
}
