/*
 * Outpost's one native helper: glibc's malloc_trim(3) and mallinfo2(3), which Node does not expose,
 * and memory for the cache's body slabs mapped from the system (mapSlab, below).
 *
 * Why: under a cache that keeps replacing bodies, glibc's heap fills with free chunks between live
 * ones. free() gives pages back to the system only from the top of the heap; malloc_trim(0) is the
 * one call that also gives back the whole pages inside free chunks in the middle (madvise
 * MADV_DONTNEED). Measured on the bench (README: memory): 80-200 MiB back after a miss load.
 * src/runtime/malloc-trim.ts decides when to call it; without this helper nothing is trimmed.
 *
 * Node-API only (node_api.h, ABI-stable), so one build serves every Node version that loads it.
 */
#include <malloc.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 33)
#error "malloc_trim and mallinfo2 need glibc 2.33 or later"
#endif

/* trim() -> boolean: whether any memory went back to the system. */
static napi_value Trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (napi_get_boolean(env, malloc_trim(0) != 0, &result) != napi_ok) return NULL;
  return result;
}

static int set_number(napi_env env, napi_value object, const char *name, size_t value) {
  napi_value number;
  return napi_create_double(env, (double)value, &number) == napi_ok &&
         napi_set_named_property(env, object, name, number) == napi_ok;
}

/* info() -> { heap, inUse, free, mmapped } in bytes, over all arenas (mallinfo2). */
static napi_value Info(napi_env env, napi_callback_info info) {
  (void)info;
  struct mallinfo2 m = mallinfo2();
  napi_value result;
  if (napi_create_object(env, &result) != napi_ok) return NULL;
  if (!set_number(env, result, "heap", m.arena) || !set_number(env, result, "inUse", m.uordblks) ||
      !set_number(env, result, "free", m.fordblks) || !set_number(env, result, "mmapped", m.hblkhd)) return NULL;
  return result;
}

/*
 * The memory store's slabs (src/cache/store/body-arena.ts) are 1 MiB each. glibc serves a request
 * that large from its heap once any such block has been freed (its mmap threshold rises to the
 * largest block given back), so a slab V8 lets go leaves a 1 MiB hole among the short-lived buffers
 * of requests, resident until something fills it or a trim finds it. A slab mapped here goes back
 * to the system as a whole the moment V8 finalizes its buffer, and glibc's heap keeps only the
 * short-lived allocations. Measured (rig, 2026-12-03: 60,000 misses into a 512 MB cache, then 10 s
 * of 1,000 requests in flight and 10 s of 1 MiB uploads, RSS sampled every 200 ms; three
 * alternating pairs): mean RSS 704-715 MiB against 711-737, peak 847-850 against 852-885; glibc's
 * heap after the misses 71 MB (in use and free) against 618, so a trim walks a tenth of it;
 * requests per second within the noise. Not process-wide (MALLOC_MMAP_THRESHOLD_ of 1 MiB took
 * 37-47 MiB off the mean, but every other block that large then costs a mapping and its page
 * faults: a 1 MiB file over HTTP/2 took 1,251-1,401 µs of CPU per response against 727-780).
 */

/* Bytes mapped by mapSlab and not yet unmapped (every thread's), spares included. */
static size_t mapped_bytes = 0;

/*
 * Spare slabs: a slab V8 has let go (its last view collected, so nothing can read it any more: the
 * same condition under which it used to be unmapped), kept mapped for the next mapSlab of the same
 * length (the store's slab size), up to spare_limit bytes (src/cache/store/slab-memory.ts sets
 * both), last freed first out.
 * On the bench's VM a page costs a fault and more on its first write after the kernel hands it
 * over, MAP_POPULATE or not: 30 KB copied into a fresh mapping took 35 µs, into one written before
 * 0.5 µs, besides 170-205 µs of mmap per 1 MiB slab and the munmap. A full cache under misses lets
 * go of a slab for each one it fills, and V8 collects them in batches at its full collections, so
 * the spares refill at each and are used up in between. Measured (rig, 2026-12-03: 20,000 misses
 * of a 30 KB page to fill a 512 MB cache, then 18,000 more; workers: 1): 316-321 µs of CPU per
 * miss against 392-422, page faults per miss 0.16 against 9.3, RSS after within 10 MiB. The quiet
 * trim gives the spares back and keeps none until slabs are mapped again (releaseSpareSlabs;
 * src/runtime/malloc-trim.ts).
 */
#define SPARE_SLOTS 256
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *data; size_t length; } spares[SPARE_SLOTS];
static size_t spare_count = 0, spare_bytes = 0, spare_limit = 0, spare_length = 0;
/* Set by releaseSpareSlabs (the work stopped), cleared by the next mapSlab (it started again). */
static bool spares_paused = false;

static void Unmap(napi_env env, void *data, void *hint) {
  (void)env;
  size_t length = (size_t)(uintptr_t)hint;
  pthread_mutex_lock(&spare_lock);
  if (!spares_paused && length == spare_length && spare_count < SPARE_SLOTS && spare_bytes + length <= spare_limit) {
    spares[spare_count].data = data;
    spares[spare_count].length = length;
    spare_count++;
    spare_bytes += length;
    pthread_mutex_unlock(&spare_lock);
    return;
  }
  pthread_mutex_unlock(&spare_lock);
  munmap(data, length);
  __atomic_sub_fetch(&mapped_bytes, length, __ATOMIC_RELAXED);
}

/* A spare slab of `length` bytes, taken off the list, or NULL. */
static void *TakeSpare(size_t length) {
  void *data = NULL;
  pthread_mutex_lock(&spare_lock);
  spares_paused = false;
  if (length == spare_length && spare_count > 0) {
    data = spares[--spare_count].data;
    spare_bytes -= length;
  }
  pthread_mutex_unlock(&spare_lock);
  return data;
}

/*
 * mapSlab(length) -> Buffer of `length` bytes: a spare of that length (its old bytes: the caller
 * writes before it reads, as with Buffer.allocUnsafe), else new zeroed pages, populated. When V8
 * collects it, it becomes a spare or is unmapped.
 */
static napi_value MapSlab(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int64(env, argv[0], &length) != napi_ok || length < 1 || length > (INT64_C(1) << 30)) {
    napi_throw_range_error(env, NULL, "mapSlab: expected a length from 1 to 2^30 bytes");
    return NULL;
  }
  void *data = TakeSpare((size_t)length);
  bool spare = data != NULL;
  /* MAP_POPULATE: the slab's pages in one call instead of a fault per page as bodies are copied in
   * (it is always filled): a 1 MiB mapping filled with 36 KB copies took 455 µs against 700 on the
   * bench host, a VM whose page faults cost ~2.4 µs each. */
  if (!spare) data = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (data == MAP_FAILED) {
    napi_throw_error(env, NULL, "mapSlab: mmap failed");
    return NULL;
  }
  napi_value buffer;
  if (napi_create_external_buffer(env, (size_t)length, data, Unmap, (void *)(uintptr_t)length, &buffer) != napi_ok) {
    munmap(data, (size_t)length);
    if (spare) __atomic_sub_fetch(&mapped_bytes, (size_t)length, __ATOMIC_RELAXED);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && !pending) napi_throw_error(env, NULL, "mapSlab: this runtime takes no external buffers");
    return NULL;
  }
  if (!spare) __atomic_add_fetch(&mapped_bytes, (size_t)length, __ATOMIC_RELAXED);
  return buffer;
}

/* mappedBytes() -> bytes of slabs mapped and not yet unmapped. */
static napi_value MappedBytes(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  if (napi_create_double(env, (double)__atomic_load_n(&mapped_bytes, __ATOMIC_RELAXED), &result) != napi_ok) return NULL;
  return result;
}

/* Unmaps spares until they hold at most `keep` bytes; returns the bytes unmapped. Holds the lock. */
static size_t DropSpares(size_t keep) {
  size_t released = 0;
  while (spare_bytes > keep) {
    spare_count--;
    munmap(spares[spare_count].data, spares[spare_count].length);
    spare_bytes -= spares[spare_count].length;
    released += spares[spare_count].length;
  }
  __atomic_sub_fetch(&mapped_bytes, released, __ATOMIC_RELAXED);
  return released;
}

static napi_value ReturnBytes(napi_env env, size_t bytes) {
  napi_value result;
  if (napi_create_double(env, (double)bytes, &result) != napi_ok) return NULL;
  return result;
}

/*
 * keepSpareSlabs(bytes, length) -> bytes unmapped: up to how many bytes of collected slabs of
 * `length` bytes to keep as spares; spares over the limit, or of another length, go now.
 */
static napi_value KeepSpareSlabs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t limit = 0, length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2 || napi_get_value_int64(env, argv[0], &limit) != napi_ok || limit < 0 || limit > (INT64_C(1) << 40) ||
      napi_get_value_int64(env, argv[1], &length) != napi_ok || length < 1 || length > (INT64_C(1) << 30)) {
    napi_throw_range_error(env, NULL, "keepSpareSlabs: expected a byte count from 0 to 2^40 and a slab length from 1 to 2^30");
    return NULL;
  }
  pthread_mutex_lock(&spare_lock);
  size_t released = (size_t)length != spare_length ? DropSpares(0) : 0;
  spare_length = (size_t)length;
  spare_limit = (size_t)limit;
  released += DropSpares(spare_limit);
  pthread_mutex_unlock(&spare_lock);
  return ReturnBytes(env, released);
}

/*
 * releaseSpareSlabs() -> bytes unmapped: every spare goes back to the system now, and slabs V8
 * collects from now on are unmapped, until the next mapSlab: the work has stopped, and slabs let go
 * then (a full collection frees many at once, and finalizes them later) are not needed.
 */
static napi_value ReleaseSpareSlabs(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&spare_lock);
  size_t released = DropSpares(0);
  spares_paused = true;
  pthread_mutex_unlock(&spare_lock);
  return ReturnBytes(env, released);
}

/* spareBytes() -> bytes of spares kept mapped for reuse (part of mappedBytes). */
static napi_value SpareBytes(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&spare_lock);
  size_t bytes = spare_bytes;
  pthread_mutex_unlock(&spare_lock);
  return ReturnBytes(env, bytes);
}

NAPI_MODULE_INIT() {
  static const struct { const char *name; napi_callback fn; } functions[] = {
    { "trim", Trim }, { "info", Info }, { "mapSlab", MapSlab }, { "mappedBytes", MappedBytes },
    { "keepSpareSlabs", KeepSpareSlabs }, { "releaseSpareSlabs", ReleaseSpareSlabs }, { "spareBytes", SpareBytes },
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
