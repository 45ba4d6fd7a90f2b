#!/usr/bin/env bash
# Builds native/fusefd.node (pidfd_getfd + a /dev/fuse reader thread for src/fuseproto) with plain
# cc against the installed Node headers: N-API symbols resolve against node when it is loaded, so
# no node-gyp, no download of headers. Idempotent: rebuilds only when the source is newer.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/fusefd.c
out=native/build/fusefd.node
inc=${NODE_INCLUDE_DIR:-}
if [[ -z $inc ]]; then
  for d in /usr/include/node "$(dirname "$(dirname "$(command -v node)")")/include/node"; do
    [[ -f $d/node_api.h ]] && { inc=$d; break; }
  done
fi
[[ -n $inc ]] || { echo "error: node_api.h not found (set NODE_INCLUDE_DIR)" >&2; exit 1; }
if [[ ! -f $out || $src -nt $out ]]; then
  mkdir -p native/build
  cc -O2 -Wall -Wextra -shared -fPIC -DNODE_GYP_MODULE_NAME=fusefd -I"$inc" -o "$out.tmp" "$src" -lpthread
  mv "$out.tmp" "$out"
fi
node -e "const m = require('./$out'); if (typeof m.getfd !== 'function' || typeof m.startReader !== 'function') process.exit(1)"
echo "native/fusefd.node loads" >&2
