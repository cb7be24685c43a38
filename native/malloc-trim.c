/*
 * Outpost's one native helper: glibc's malloc_trim(3) and mallinfo2(3), which Node does not expose.
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

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, Trim, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "trim", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "info", NAPI_AUTO_LENGTH, Info, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "info", fn) != napi_ok) return NULL;
  return exports;
}
