/*
 * V8's memory-pressure signal, which Node does not expose to JavaScript: moderate() tells V8 that
 * memory is short. V8 then starts a memory-reducing full collection, incremental like the ones it
 * starts itself, and when that collection ends it gives back the pages it keeps in its page pool.
 *
 * Why: a regular full collection frees V8's pages into that pool, which keeps them resident for
 * later allocations; only a memory-reducing collection releases it (V8's heap.cc and sweeper.cc:
 * ReleasePooledChunks when ShouldReduceMemory). So under a steady load RSS follows the highest
 * the old generation has reached since the load began, not what is live. The collection `gc()`
 * offers for that ("last resort": full collections in a row until nothing more is freed) stops the
 * process 60-100 ms with 40 MB live, too long under load; this one marks in steps between requests
 * and pauses about as long as a regular full collection's finish. src/runtime/malloc-trim.ts
 * sends it when memory.pressure asks (by default once 32 MiB or more are pooled); measured there.
 *
 * pagedPeak() says how large V8's pooling spaces were when its latest full collections began (a
 * GC prologue callback, once per full collection): the pages such a collection frees go to the
 * pool, so that size less what the spaces commit after it is what it pooled. Read from
 * JavaScript once a second instead, the peak is missed: 1,000 requests in flight grew the heap
 * by 40 MB and a collection took it down within one second.
 *
 * C++ because the signal and the callbacks are in V8's C++ API only, so this helper is built
 * against the headers of the runtime it runs on (the pinned one, native/build.sh), unlike the
 * Node-API-only C helpers.
 */
#include <node_api.h>
#include <v8.h>

#include <cstring>

/* What one Node environment (one isolate) keeps: the largest pooling-space size seen at a full collection's start. */
struct Instance {
  v8::Isolate *isolate;
  size_t paged_peak;
};

/* The bytes V8's spaces commit, but for the large-object spaces, which free their pages at once instead of pooling them. */
static size_t PagedCommitted(v8::Isolate *isolate) {
  static const char kLarge[] = "large_object_space";
  const size_t large_length = sizeof(kLarge) - 1;
  size_t bytes = 0;
  v8::HeapSpaceStatistics space;
  for (size_t i = 0, n = isolate->NumberOfHeapSpaces(); i < n; i++) {
    if (!isolate->GetHeapSpaceStatistics(&space, i)) continue;
    const char *name = space.space_name();
    const size_t length = name == nullptr ? 0 : std::strlen(name);
    if (length >= large_length && std::strcmp(name + length - large_length, kLarge) == 0) continue;
    bytes += space.space_size();
  }
  return bytes;
}

static void BeforeFullCollection(v8::Isolate *isolate, v8::GCType type, v8::GCCallbackFlags flags, void *data) {
  (void)type;
  (void)flags;
  Instance *instance = static_cast<Instance *>(data);
  const size_t paged = PagedCommitted(isolate);
  if (paged > instance->paged_peak) instance->paged_peak = paged;
}

static void Cleanup(void *data) {
  Instance *instance = static_cast<Instance *>(data);
  instance->isolate->RemoveGCPrologueCallback(BeforeFullCollection, instance);
  delete instance;
}

/* moderate() -> undefined */
static napi_value Moderate(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
  return nullptr;
}

/* pagedPeak() -> number: the largest pooling-space size (bytes) at a full collection's start since the last call (0: none began); starts over. */
static napi_value PagedPeak(napi_env env, napi_callback_info info) {
  Instance *instance = nullptr;
  if (napi_get_cb_info(env, info, nullptr, nullptr, nullptr, reinterpret_cast<void **>(&instance)) != napi_ok || instance == nullptr) return nullptr;
  const size_t peak = instance->paged_peak;
  instance->paged_peak = 0;
  napi_value result;
  if (napi_create_double(env, static_cast<double>(peak), &result) != napi_ok) return nullptr;
  return result;
}

static bool Export(napi_env env, napi_value exports, const char *name, napi_callback fn, void *data) {
  napi_value value;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, data, &value) == napi_ok &&
         napi_set_named_property(env, exports, name, value) == napi_ok;
}

NAPI_MODULE_INIT() {
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate == nullptr) return nullptr;
  Instance *instance = new Instance{isolate, 0};
  if (napi_add_env_cleanup_hook(env, Cleanup, instance) != napi_ok) {
    delete instance;
    return nullptr;
  }
  isolate->AddGCPrologueCallback(BeforeFullCollection, instance, v8::kGCTypeMarkSweepCompact);
  if (!Export(env, exports, "moderate", Moderate, nullptr) || !Export(env, exports, "pagedPeak", PagedPeak, instance)) return nullptr;
  return exports;
}
