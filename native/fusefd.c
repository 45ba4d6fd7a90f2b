/*
 * fusefd: the two things Node cannot do for stargz-fused's own FUSE server (src/fuseproto/).
 *
 * 1. getfd(pid, fd): copy another process's open file into this one (pidfd_open + pidfd_getfd,
 *    Linux >= 5.6; needs PTRACE_MODE_ATTACH over the target, which root has). Node cannot pass
 *    fds over unix sockets, so this is how the fd holder keeps a /dev/fuse connection alive while
 *    the server dies, and how a new server takes it back: the copy is the same open file, hence
 *    the same FUSE connection.
 * 2. startReader(fd, size, cb): one thread per connection blocking in read(2) on /dev/fuse and
 *    handing each request to JS through a threadsafe function. A blocking fs.read would pin one
 *    libuv pool thread per connection (16 in all, shared with every fs call of the process).
 *
 * Built with plain `cc` by scripts/build-native.sh: N-API symbols resolve against node at load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, "napi call failed: " #call); return NULL; } } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, text, &e);
  napi_set_named_property(env, e, "errno", code);
  napi_throw(env, e);
  return NULL;
}

static napi_value get_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t pid, fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) { napi_throw_type_error(env, NULL, "getfd(pid, fd)"); return NULL; }
  CHECK(napi_get_value_int32(env, argv[0], &pid));
  CHECK(napi_get_value_int32(env, argv[1], &fd));
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return throw_errno(env, "pidfd_open", errno);
  int out = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
  int err = errno;
  close(pidfd);
  if (out < 0) return throw_errno(env, "pidfd_getfd", err);
  napi_value r;
  CHECK(napi_create_int32(env, out, &r));
  return r;
}

typedef struct {
  int fd;
  size_t size;
  napi_threadsafe_function tsfn;
} reader_t;

typedef struct {
  char *data;
  ssize_t len;   /* < 0: -errno, the reader stopped */
} msg_t;

static void free_data(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  free(data);
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  msg_t *m = data;
  if (env != NULL && cb != NULL) {
    napi_value argv[2], undef;
    napi_get_undefined(env, &undef);
    if (m->len >= 0) {
      napi_create_external_buffer(env, (size_t)m->len, m->data, free_data, NULL, &argv[0]);
      m->data = NULL;
      napi_create_int32(env, 0, &argv[1]);
    } else {
      napi_get_null(env, &argv[0]);
      napi_create_int32(env, (int32_t)-m->len, &argv[1]);
    }
    napi_call_function(env, undef, cb, 2, argv, NULL);
  }
  free(m->data);
  free(m);
}

static void *reader_loop(void *arg) {
  reader_t *r = arg;
  char *buf = malloc(r->size);
  int stop = buf == NULL ? ENOMEM : 0;
  while (!stop) {
    ssize_t n = read(r->fd, buf, r->size);
    if (n < 0) {
      /* EINTR: a signal; ENOENT: the request was interrupted before we read it; EAGAIN: spurious. */
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      stop = errno;
      break;
    }
    msg_t *m = malloc(sizeof *m);
    char *copy = malloc(n > 0 ? (size_t)n : 1);
    if (m == NULL || copy == NULL) { free(m); free(copy); stop = ENOMEM; break; }
    memcpy(copy, buf, (size_t)n);
    m->data = copy;
    m->len = n;
    if (napi_call_threadsafe_function(r->tsfn, m, napi_tsfn_blocking) != napi_ok) { free(copy); free(m); stop = ECANCELED; break; }
  }
  free(buf);
  msg_t *end = malloc(sizeof *end);
  if (end != NULL) {
    end->data = NULL;
    end->len = -(ssize_t)stop;
    if (napi_call_threadsafe_function(r->tsfn, end, napi_tsfn_blocking) != napi_ok) free(end);
  }
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  free(r);
  return NULL;
}

static napi_value start_reader(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name;
  int32_t fd;
  uint32_t size;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) { napi_throw_type_error(env, NULL, "startReader(fd, size, cb)"); return NULL; }
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_uint32(env, argv[1], &size));
  reader_t *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, "startReader", ENOMEM);
  r->fd = fd;
  r->size = size;
  CHECK(napi_create_string_utf8(env, "fusefd-reader", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, call_js, &r->tsfn) != napi_ok) {
    free(r);
    napi_throw_error(env, NULL, "napi_create_threadsafe_function failed");
    return NULL;
  }
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = pthread_create(&th, &attr, reader_loop, r);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    free(r);
    return throw_errno(env, "pthread_create", err);
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  CHECK(napi_create_function(env, "getfd", NAPI_AUTO_LENGTH, get_fd, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "getfd", f));
  CHECK(napi_create_function(env, "startReader", NAPI_AUTO_LENGTH, start_reader, NULL, &f));
  CHECK(napi_set_named_property(env, exports, "startReader", f));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
