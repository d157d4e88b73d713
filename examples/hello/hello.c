/* hello: the smallest useful plugin. echo returns its argument; add sums two integers. */
#include <plugd/worker.h>

static void echo(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    plugd_request_reply(req, plugd_param(params, 0));
}

static void add(struct plugd_request *req, const msgpack_object *params, void *ud)
{
    (void)ud;
    int64_t a, b;
    if (!plugd_get_int(plugd_param(params, 0), &a) || !plugd_get_int(plugd_param(params, 1), &b)) {
        plugd_request_fail(req, PLUGD_E_INVALID_REQUEST, "add takes two integers");
        return;
    }
    msgpack_pack_int64(plugd_request_begin_reply(req), a + b);
    plugd_request_end(req);
}

int main(void)
{
    struct plugd_worker *w = plugd_worker_new(NULL);
    plugd_worker_method(w, "echo", echo, NULL);
    plugd_worker_method(w, "add", add, NULL);
    int status = plugd_worker_run(w);
    plugd_worker_free(w);
    return status;
}
