#!/bin/sh
# Builds native/malloc-trim.node (see malloc-trim.c) when npm installs the project: package.json's
# "install" script. It needs a C compiler and glibc 2.33+, and takes Node-API's header from the
# pinned runtime (devDependency "node"), so it works offline. It never fails the install: without
# it Outpost runs the same, only glibc's free pages are not given back (the startup line says so).
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
out="$root/native/build/malloc-trim.node"
cc=${CC:-cc}
skip() { echo "outpost: native helper not built ($1): glibc's free heap pages will not be returned (README: memory)" >&2; exit 0; }

[ "$(uname -s)" = Linux ] || skip "not Linux"
headers=
for dir in "$root"/node_modules/node/node_modules/node-*/include/node; do
  [ -r "$dir/node_api.h" ] && headers=$dir && break
done
[ -n "$headers" ] || skip "node_api.h not found: the pinned runtime is not installed"
command -v "$cc" >/dev/null 2>&1 || skip "no C compiler ($cc)"
mkdir -p "$root/native/build" || skip "cannot create native/build"
if ! errors=$("$cc" -O2 -fPIC -shared -Wall -Werror -I"$headers" -o "$out.tmp" "$root/native/malloc-trim.c" 2>&1); then
  rm -f "$out.tmp"
  skip "$(printf '%s\n' "$errors" | grep -m1 -i 'error' || printf '%s' "$errors" | head -n 1)"
fi
mv -f "$out.tmp" "$out"
