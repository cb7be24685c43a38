#!/bin/sh
# Builds Outpost's three native helpers when npm installs the project (package.json's "install"
# script), each on its own, into native/build/:
#   malloc-trim.node        (malloc-trim.c) glibc's malloc_trim, mallinfo2 and the cache's mapped
#                           slabs; needs glibc 2.33+. Without it Outpost runs the same, only glibc's
#                           free pages are not given back (the startup line says so).
#   background-encode.node  (background-encode.c) Brotli 11 / zstd 19 / gzip 9 on a low-priority
#                           thread. Without it a worker thread does that job (12-20 MiB more RSS).
#   heap-pressure.node      (heap-pressure.cc) V8's memory-pressure signal and the size of its
#                           heap at each full collection's start, for memory.pressure; C++ (V8's
#                           API). Without it that setting does nothing (the startup line says so).
# They need a C compiler (and a C++ one for heap-pressure) and take Node-API's, V8's and zlib's
# headers from the pinned runtime (devDependency "node"), so the build works offline. It never
# fails the install.
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cc=${CC:-cc}
cxx=${CXX:-c++}
skip_all() { echo "outpost: native helpers not built ($1): glibc's free heap pages will not be returned, and high-quality compression runs in a worker thread (README: memory)" >&2; exit 0; }

[ "$(uname -s)" = Linux ] || skip_all "not Linux"
headers=
for dir in "$root"/node_modules/node/node_modules/node-*/include/node; do
  [ -r "$dir/node_api.h" ] && headers=$dir && break
done
[ -n "$headers" ] || skip_all "node_api.h not found: the pinned runtime is not installed"
command -v "$cc" >/dev/null 2>&1 || skip_all "no C compiler ($cc)"
mkdir -p "$root/native/build" || skip_all "cannot create native/build"

# build NAME WHAT-IS-LOST-WITHOUT-IT [LIBS...]; NAME.c with the C compiler, NAME.cc with the C++ one
build() {
  name=$1 lost=$2
  shift 2
  out="$root/native/build/$name.node"
  if [ -f "$root/native/$name.cc" ]; then
    set -- "$cxx" -std=c++20 "$root/native/$name.cc" "$@"
  else
    set -- "$cc" "$root/native/$name.c" "$@"
  fi
  compiler=$1
  shift
  if ! command -v "$compiler" >/dev/null 2>&1; then
    echo "outpost: native helper $name not built (no compiler: $compiler): $lost" >&2
    return 0
  fi
  if ! errors=$("$compiler" -O2 -fPIC -shared -Wall -Werror -I"$headers" -o "$out.tmp" "$@" 2>&1); then
    rm -f "$out.tmp"
    echo "outpost: native helper $name not built ($(printf '%s\n' "$errors" | grep -m1 -i 'error' || printf '%s' "$errors" | head -n 1)): $lost" >&2
    return 0
  fi
  mv -f "$out.tmp" "$out"
}
build malloc-trim "glibc's free heap pages will not be returned (README: memory)"
build background-encode "high-quality compression runs in a worker thread instead (README: memory)" -lpthread -ldl
build heap-pressure "V8's freed pages stay resident under load until it stops (README: memory)"
