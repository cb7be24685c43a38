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
 * sends it under load when memory.pressure asks (off by default); measured there.
 *
 * C++ because the signal is in V8's C++ API only, so this helper is built against the headers of
 * the runtime it runs on (the pinned one, native/build.sh), unlike the Node-API-only C helpers.
 */
#include <node_api.h>
#include <v8.h>

/* moderate() -> undefined */
static napi_value Moderate(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate != nullptr) isolate->MemoryPressureNotification(v8::MemoryPressureLevel::kModerate);
  return nullptr;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "moderate", NAPI_AUTO_LENGTH, Moderate, nullptr, &fn) != napi_ok) return nullptr;
  if (napi_set_named_property(env, exports, "moderate", fn) != napi_ok) return nullptr;
  return exports;
}
