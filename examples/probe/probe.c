/* probe: tries one way out of its sandbox per method and answers what
 * happened: {"ok": true, ...} or {"ok": false, "error": "EACCES"}. A
 * system call outside the allow-list ends it instead (plugd reports
 * sandbox_violation), unless its manifest asks for EPERM. Used by
 * tests/supervisor/test_probe.c; handy on a new kernel too. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <plugd/worker.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int n_inherited; /* fds open when main started, beyond 0-3 */

/* params[i] as a C string into buf, or NULL */
static const char *string_param(const msgpack_object *params, uint32_t i, char *buf, size_t size)
{
    const msgpack_object *o = plugd_param(params, i);
    if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return NULL;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
    return buf;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* {"ok": ok, "error": "EXXX"?, extra_key: extra?} */
static void answer(struct plugd_request *req, bool ok, int err, const char *extra_key,
                   int64_t extra)
{
    msgpack_packer *pk = plugd_request_begin_reply(req);
    msgpack_pack_map(pk, 1 + !ok + (extra_key != NULL));
    pack_str(pk, "ok");
    ok ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    if (!ok) {
        pack_str(pk, "error");
        pack_str(pk, strerrorname_np(err) ? strerrorname_np(err) : "?");
    }
    if (extra_key != NULL) {
        pack_str(pk, extra_key);
        msgpack_pack_int64(pk, extra);
    }
    plugd_request_end(req);
}

static void answer_rc(struct plugd_request *req, int rc)
{
    answer(req, rc >= 0, errno, NULL, 0);
}

static void tcp_socket(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params, (void)ud;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    answer_rc(req, fd);
    if (fd >= 0)
        close(fd);
}

/* connect [port]: to 127.0.0.1:port */
static void connect_loopback(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t port = 0;
    plugd_get_int(plugd_param(params, 0), &port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        answer_rc(req, fd);
        return;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    answer_rc(req, connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    close(fd);
}

/* Opens params[0] with `flags`, then reads a byte or writes a line. */
static void open_and_use(struct plugd_request *req, const msgpack_object *params, int flags)
{
    char path[PATH_MAX], c;
    errno = EINVAL; /* no path given */
    int fd = string_param(params, 0, path, sizeof(path)) ? open(path, flags, 0600) : -1;
    bool writes = (flags & O_ACCMODE) == O_WRONLY;
    answer_rc(req, fd < 0 ? fd : writes ? (int)write(fd, "probe\n", 6) : (int)read(fd, &c, 1));
    if (fd >= 0)
        close(fd);
}

/* read [path]: opens it and reads a byte */
static void read_file(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    open_and_use(req, params, O_RDONLY);
}

/* write [path]: creates it with a line */
static void write_file(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    open_and_use(req, params, O_WRONLY | O_CREAT | O_TRUNC);
}

/* fork [n]: n children that wait; answers how many it got, then ends them */
static void fork_many(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t n = 0;
    plugd_get_int(plugd_param(params, 0), &n);
    pid_t kids[256];
    int made = 0, err = 0;
    for (; made < n && made < 256; made++) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            pause();
            _exit(0);
        }
        kids[made] = pid;
    }
    for (int i = 0; i < made; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    answer(req, err == 0, err, "forked", made);
}

/* alloc [mb]: allocates and touches that much, 1 MiB at a time */
static void alloc(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t mb = 0;
    plugd_get_int(plugd_param(params, 0), &mb);
    char **blocks = calloc((size_t)mb + 1, sizeof(char *));
    int64_t got = 0;
    for (; blocks != NULL && got < mb; got++) {
        blocks[got] = malloc(1 << 20);
        if (blocks[got] == NULL)
            break;
        memset(blocks[got], 1, 1 << 20);
    }
    int err = got < mb ? ENOMEM : 0;
    for (int64_t i = 0; blocks != NULL && i < got; i++)
        free(blocks[i]);
    free(blocks);
    answer(req, err == 0, err, "mb", got);
}

/* unmount [path]: tries to take a mount of its view away */
static void unmount(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    char path[PATH_MAX];
    errno = EINVAL;
    answer_rc(req, string_param(params, 0, path, sizeof(path)) ? umount2(path, MNT_DETACH) : -1);
}

/* spin [seconds]: burns that much CPU time, then answers */
static void spin(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t seconds = 0;
    plugd_get_int(plugd_param(params, 0), &seconds);
    struct timespec used = {0};
    while (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used) == 0 && used.tv_sec < seconds)
        ;
    answer(req, true, 0, "seconds", (int64_t)used.tv_sec);
}

/* exec [path]: replaces the probe with `path -c "exit 7"` */
static void exec_program(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    char path[PATH_MAX];
    if (string_param(params, 0, path, sizeof(path)) != NULL)
        execl(path, path, "-c", "exit 7", (char *)NULL);
    answer(req, false, errno, NULL, 0);
}

/* spawn [path]: runs `path -c "exit 7"` as a child; answers its status */
static void spawn_program(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    char path[PATH_MAX];
    if (string_param(params, 0, path, sizeof(path)) == NULL) {
        answer(req, false, EINVAL, NULL, 0);
        return;
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        answer(req, false, errno, NULL, 0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(path, path, "-c", "exit 7", (char *)NULL);
        int e = errno;
        ssize_t ignored = write(report[1], &e, sizeof(e));
        (void)ignored;
        _exit(127);
    }
    int err = pid < 0 ? errno : 0, status = 0;
    close(report[1]);
    if (pid > 0 && read(report[0], &err, sizeof(err)) != sizeof(err))
        err = 0;
    close(report[0]);
    if (pid > 0)
        waitpid(pid, &status, 0);
    answer(req, err == 0, err, "status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ptrace [pid]: attaches (and detaches at once) */
static void trace(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t pid = 0;
    plugd_get_int(plugd_param(params, 0), &pid);
    long rc = ptrace(PTRACE_ATTACH, (pid_t)pid, NULL, NULL);
    int err = errno;
    if (rc == 0) {
        waitpid((pid_t)pid, NULL, __WALL);
        ptrace(PTRACE_DETACH, (pid_t)pid, NULL, NULL);
    }
    answer(req, rc == 0, err, NULL, 0);
}

/* signal [pid]: SIGCONT, harmless to a running process */
static void signal_process(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t pid = 0;
    plugd_get_int(plugd_param(params, 0), &pid);
    answer_rc(req, kill((pid_t)pid, SIGCONT));
}

/* inherited_fds: how many fds beyond stdio and the channel it started with */
static void inherited_fds(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)params, (void)ud;
    answer(req, n_inherited == 0, EEXIST, "count", n_inherited);
}

/* env [name]: the variable's value, or nil */
static void env(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    char name[128];
    const char *value = string_param(params, 0, name, sizeof(name)) ? getenv(name) : NULL;
    msgpack_packer *pk = plugd_request_begin_reply(req);
    value ? pack_str(pk, value) : msgpack_pack_nil(pk);
    plugd_request_end(req);
}

int main(void)
{
    for (int fd = 4; fd < 1024; fd++)
        n_inherited += fcntl(fd, F_GETFD) >= 0;
    static const struct {
        const char *name;
        plugd_method_fn fn;
    } methods[] = {
        {"tcp_socket", tcp_socket},
        {"connect", connect_loopback},
        {"read", read_file},
        {"write", write_file},
        {"fork", fork_many},
        {"alloc", alloc},
        {"spin", spin},
        {"unmount", unmount},
        {"exec", exec_program},
        {"spawn", spawn_program},
        {"ptrace", trace},
        {"signal", signal_process},
        {"inherited_fds", inherited_fds},
        {"env", env},
    };
    struct plugd_worker *w = plugd_worker_new(NULL);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        plugd_worker_method(w, methods[i].name, methods[i].fn, NULL);
    int status = plugd_worker_run(w);
    plugd_worker_free(w);
    return status;
}
