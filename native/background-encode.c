/*
 * The background encoder's thread (src/compress/background.ts): Brotli 11, zstd 19 and gzip 9 of
 * bodies worth keeping, one at a time, on one thread of its own at the lowest priority (nice 19),
 * so on a busy core the event loop gets nearly all of it and the encoding runs when the core would
 * otherwise idle.
 *
 * Why native: the same thread as a Node worker is a second V8 isolate with Node's bootstrap in it,
 * about 19 MiB of resident memory for the life of the process (measured on Node 24.21, an idle
 * worker loading only node: modules), to run three library calls. Here it is a pthread with a
 * small stack, and the encoders' own memory while a job runs.
 *
 * The encoders are the ones inside Node's binary (its Brotli, zstd and zlib), which exports their
 * C APIs for addons; they are looked up by name when the module loads, and a runtime without one
 * of them loads a helper whose available() is false (background.ts then uses the worker). Only
 * zlib's header comes with Node's headers; Brotli's and zstd's few calls are declared below as
 * their stable APIs give them. Node-API only (node_api.h, ABI-stable).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

/* Brotli (brotli/encode.h): the streaming calls Node's own zlib binding makes, so the bytes are the same. */
enum { BROTLI_PARAM_QUALITY = 1, BROTLI_PARAM_LGWIN = 2, BROTLI_PARAM_SIZE_HINT = 5 };
enum { BROTLI_OPERATION_FINISH = 2 };
typedef void *(*brotli_create_fn)(void *alloc, void *free, void *opaque);
typedef int (*brotli_set_fn)(void *state, int param, uint32_t value);
typedef int (*brotli_stream_fn)(void *state, int op, size_t *available_in, const uint8_t **next_in,
                                size_t *available_out, uint8_t **next_out, size_t *total_out);
typedef int (*brotli_finished_fn)(void *state);
typedef void (*brotli_destroy_fn)(void *state);
typedef size_t (*brotli_bound_fn)(size_t input_size);

/* zstd (zstd.h): one call with the whole input, as Node's zstdCompressSync makes it. */
enum { ZSTD_c_compressionLevel = 100 };
typedef void *(*zstd_create_fn)(void);
typedef size_t (*zstd_free_fn)(void *cctx);
typedef size_t (*zstd_set_fn)(void *cctx, int param, int value);
typedef size_t (*zstd_compress2_fn)(void *cctx, void *dst, size_t dst_capacity, const void *src, size_t src_size);
typedef size_t (*zstd_bound_fn)(size_t src_size);
typedef unsigned (*zstd_is_error_fn)(size_t code);

typedef int (*deflate_init2_fn)(z_streamp strm, int level, int method, int window_bits, int mem_level, int strategy,
                                const char *version, int stream_size);
typedef int (*deflate_fn)(z_streamp strm, int flush);
typedef int (*deflate_end_fn)(z_streamp strm);
typedef uLong (*deflate_bound_fn)(z_streamp strm, uLong source_len);

static struct {
  brotli_create_fn brotli_create;
  brotli_set_fn brotli_set;
  brotli_stream_fn brotli_stream;
  brotli_finished_fn brotli_finished;
  brotli_destroy_fn brotli_destroy;
  brotli_bound_fn brotli_bound;
  zstd_create_fn zstd_create;
  zstd_free_fn zstd_free;
  zstd_set_fn zstd_set;
  zstd_compress2_fn zstd_compress2;
  zstd_bound_fn zstd_bound;
  zstd_is_error_fn zstd_is_error;
  deflate_init2_fn deflate_init2;
  deflate_fn deflate;
  deflate_end_fn deflate_end;
  deflate_bound_fn deflate_bound;
} api;
static bool api_found;

static bool find_api(void) {
#define FIND(field, name) if ((*(void **)&api.field = dlsym(RTLD_DEFAULT, name)) == NULL) return false
  FIND(brotli_create, "BrotliEncoderCreateInstance");
  FIND(brotli_set, "BrotliEncoderSetParameter");
  FIND(brotli_stream, "BrotliEncoderCompressStream");
  FIND(brotli_finished, "BrotliEncoderIsFinished");
  FIND(brotli_destroy, "BrotliEncoderDestroyInstance");
  FIND(brotli_bound, "BrotliEncoderMaxCompressedSize");
  FIND(zstd_create, "ZSTD_createCCtx");
  FIND(zstd_free, "ZSTD_freeCCtx");
  FIND(zstd_set, "ZSTD_CCtx_setParameter");
  FIND(zstd_compress2, "ZSTD_compress2");
  FIND(zstd_bound, "ZSTD_compressBound");
  FIND(zstd_is_error, "ZSTD_isError");
  FIND(deflate_init2, "deflateInit2_");
  FIND(deflate, "deflate");
  FIND(deflate_end, "deflateEnd");
  FIND(deflate_bound, "deflateBound");
#undef FIND
  return true;
}

enum coding { BR, ZSTD, GZIP };

typedef struct job {
  struct job *next;
  enum coding coding;
  int level;
  int window; /* Brotli's lgwin; 0 for the others */
  uint8_t *input;
  size_t input_length;
  uint8_t *output;
  size_t output_length;
  const char *error; /* a static string, or NULL */
  napi_deferred deferred;
} job_t;

/* The queue the thread takes jobs from, oldest first. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static job_t *head, *tail;
static bool stopping; /* the environment is ending: the thread takes no more jobs and hands none back */
static bool thread_started;
/* Hands finished jobs to the main thread; referenced (keeps the process alive) only while jobs are out. */
static napi_threadsafe_function done;
static size_t outstanding; /* main thread only */
/* The environment (the main thread) that owns the thread and the queue: loaded elsewhere, the helper is not available. */
static napi_env owner;

static void encode_brotli(job_t *job) {
  void *state = api.brotli_create(NULL, NULL, NULL);
  if (state == NULL) { job->error = "out of memory"; return; }
  api.brotli_set(state, BROTLI_PARAM_QUALITY, (uint32_t)job->level);
  api.brotli_set(state, BROTLI_PARAM_LGWIN, (uint32_t)job->window);
  api.brotli_set(state, BROTLI_PARAM_SIZE_HINT, job->input_length > UINT32_MAX ? UINT32_MAX : (uint32_t)job->input_length);
  size_t bound = api.brotli_bound(job->input_length);
  size_t capacity = bound != 0 ? bound : job->input_length + 1024;
  job->output = malloc(capacity);
  size_t available_in = job->input_length, available_out = capacity;
  const uint8_t *next_in = job->input;
  uint8_t *next_out = job->output;
  while (job->output != NULL) {
    if (!api.brotli_stream(state, BROTLI_OPERATION_FINISH, &available_in, &next_in, &available_out, &next_out, NULL)) {
      job->error = "Brotli failed";
      break;
    }
    if (api.brotli_finished(state)) { job->output_length = capacity - available_out; break; }
    if (available_out == 0) { /* the bound was not enough (it is 0 for sizes it cannot bound): grow */
      uint8_t *grown = realloc(job->output, capacity * 2);
      if (grown == NULL) break;
      job->output = grown;
      next_out = grown + capacity;
      available_out = capacity;
      capacity *= 2;
    }
  }
  if (job->output == NULL && job->error == NULL) job->error = "out of memory";
  api.brotli_destroy(state);
}

static void encode_zstd(job_t *job) {
  void *cctx = api.zstd_create();
  size_t capacity = api.zstd_bound(job->input_length);
  job->output = cctx != NULL ? malloc(capacity) : NULL;
  if (job->output == NULL) { job->error = "out of memory"; if (cctx != NULL) api.zstd_free(cctx); return; }
  size_t written = api.zstd_is_error(api.zstd_set(cctx, ZSTD_c_compressionLevel, job->level))
      ? (size_t)-1 : api.zstd_compress2(cctx, job->output, capacity, job->input, job->input_length);
  if (api.zstd_is_error(written)) job->error = "zstd failed";
  else job->output_length = written;
  api.zstd_free(cctx);
}

/* gzip as Node's gzipSync makes it: zlib's defaults (window 15, memLevel 8) with a gzip wrapper (15 + 16). */
static void encode_gzip(job_t *job) {
  z_stream stream;
  memset(&stream, 0, sizeof stream);
  if (api.deflate_init2(&stream, job->level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, (int)sizeof stream) != Z_OK) {
    job->error = "gzip failed to start";
    return;
  }
  size_t capacity = api.deflate_bound(&stream, (uLong)job->input_length);
  job->output = malloc(capacity);
  if (job->output == NULL || job->input_length > UINT32_MAX || capacity > UINT32_MAX) {
    job->error = job->output == NULL ? "out of memory" : "gzip input too large";
  } else {
    stream.next_in = job->input;
    stream.avail_in = (uInt)job->input_length;
    stream.next_out = job->output;
    stream.avail_out = (uInt)capacity;
    if (api.deflate(&stream, Z_FINISH) == Z_STREAM_END) job->output_length = stream.total_out;
    else job->error = "gzip failed";
  }
  api.deflate_end(&stream);
}

static void free_job(job_t *job) {
  free(job->input);
  free(job->output);
  free(job);
}

static void *run(void *unused) {
  (void)unused;
  pthread_setname_np(pthread_self(), "outpost-encode");
  /* On Linux the nice value belongs to the thread (its tid), so only this one is lowered. */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
  pthread_mutex_lock(&lock);
  for (;;) {
    while (head == NULL && !stopping) pthread_cond_wait(&wake, &lock);
    if (stopping) break;
    job_t *job = head;
    head = job->next;
    if (head == NULL) tail = NULL;
    pthread_mutex_unlock(&lock);
    if (job->coding == BR) encode_brotli(job);
    else if (job->coding == ZSTD) encode_zstd(job);
    else encode_gzip(job);
    free(job->input);
    job->input = NULL;
    pthread_mutex_lock(&lock);
    /* Under the lock, so the environment's end (which takes it) never races a hand-back. */
    if (stopping || napi_call_threadsafe_function(done, job, napi_tsfn_nonblocking) != napi_ok) free_job(job);
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void reject(napi_env env, napi_deferred deferred, const char *message) {
  napi_value text, error;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text) == napi_ok &&
      napi_create_error(env, NULL, text, &error) == napi_ok) napi_reject_deferred(env, deferred, error);
}

/* On the main thread: settles the job's promise. env is NULL when the queue is being torn down. */
static void finish(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)js_callback;
  (void)context;
  job_t *job = data;
  if (env != NULL) {
    napi_value buffer;
    if (job->error != NULL) reject(env, job->deferred, job->error);
    else if (napi_create_buffer_copy(env, job->output_length, job->output, NULL, &buffer) == napi_ok) napi_resolve_deferred(env, job->deferred, buffer);
    else reject(env, job->deferred, "out of memory");
    if (--outstanding == 0) napi_unref_threadsafe_function(env, done);
  }
  free_job(job);
}

/*
 * The environment is ending (its cleanup hook, or Node closing the completion queue, whichever
 * comes first): the thread stops taking and handing back jobs, and what was queued is dropped. The
 * thread is not waited for: a Brotli 11 of a large body can take seconds, and the process is
 * exiting.
 */
static void stop(void) {
  pthread_mutex_lock(&lock);
  stopping = true;
  for (job_t *job = head, *next; job != NULL; job = next) {
    next = job->next;
    free_job(job);
  }
  head = tail = NULL;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
}

static void cleanup(void *unused) {
  (void)unused;
  stop();
}

/* Node finalizes the completion queue at the environment's end (possibly before our cleanup hook). */
static void queue_finalized(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
  stop();
  pthread_mutex_lock(&lock);
  done = NULL;
  pthread_mutex_unlock(&lock);
}

/* available() -> whether this runtime exports the encoders (else encode() throws). */
static napi_value Available(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (napi_get_boolean(env, api_found && env == owner, &result) != napi_ok) return NULL;
  return result;
}

/*
 * encode(coding, input, level, window) -> Promise<Buffer>: coding 'br', 'zstd' or 'gzip'; input is
 * copied, so the caller's bytes may change or go; window is Brotli's lgwin (ignored otherwise).
 */
static napi_value Encode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (!api_found || env != owner) { napi_throw_error(env, NULL, "background encoder: not available here (available() is false)"); return NULL; }
  char name[8] = "";
  size_t name_length = 0;
  void *bytes = NULL;
  size_t length = 0;
  int32_t level = 0, window = 0;
  bool is_buffer = false;
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_length) != napi_ok ||
      napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok ||
      napi_get_value_int32(env, argv[2], &level) != napi_ok || napi_get_value_int32(env, argv[3], &window) != napi_ok) {
    napi_throw_type_error(env, NULL, "encode(coding: string, input: Buffer, level: number, window: number)");
    return NULL;
  }
  enum coding coding;
  if (strcmp(name, "br") == 0) coding = BR;
  else if (strcmp(name, "zstd") == 0) coding = ZSTD;
  else if (strcmp(name, "gzip") == 0) coding = GZIP;
  else { napi_throw_error(env, NULL, "background encoder: unknown coding"); return NULL; }

  if (done == NULL) {
    napi_value resource;
    if (napi_create_string_utf8(env, "outpost:background-encode", NAPI_AUTO_LENGTH, &resource) != napi_ok ||
        napi_create_threadsafe_function(env, NULL, NULL, resource, 0, 1, NULL, queue_finalized, NULL, finish, &done) != napi_ok) {
      napi_throw_error(env, NULL, "background encoder: cannot create its completion queue");
      return NULL;
    }
    napi_unref_threadsafe_function(env, done);
  }
  if (!thread_started) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1024 * 1024); /* the encoders keep their state on the heap */
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int failed = pthread_create(&thread, &attr, run, NULL);
    pthread_attr_destroy(&attr);
    if (failed) { napi_throw_error(env, NULL, "background encoder: cannot start its thread"); return NULL; }
    thread_started = true;
  }

  job_t *job = calloc(1, sizeof *job);
  uint8_t *copy = malloc(length > 0 ? length : 1);
  napi_value promise;
  if (job == NULL || copy == NULL || napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free(job);
    free(copy);
    napi_throw_error(env, NULL, "background encoder: out of memory");
    return NULL;
  }
  memcpy(copy, bytes, length);
  job->coding = coding;
  job->level = level;
  job->window = window;
  job->input = copy;
  job->input_length = length;
  if (outstanding++ == 0) napi_ref_threadsafe_function(env, done);
  pthread_mutex_lock(&lock);
  if (tail != NULL) tail->next = job;
  else head = job;
  tail = job;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
  return promise;
}

NAPI_MODULE_INIT() {
  if (owner == NULL) {
    owner = env;
    api_found = find_api();
    napi_add_env_cleanup_hook(env, cleanup, NULL);
  }
  static const struct { const char *name; napi_callback fn; } functions[] = {
    { "available", Available }, { "encode", Encode },
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
