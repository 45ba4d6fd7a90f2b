#!/usr/bin/env bash
# Installs everything stargzd, its tests and its benchmarks need on Debian 12, as root: the Debian
# packages, the npm dependencies (native modules built and proven to load), and the build.
# Used by .ci/run and scripts/quickstart.sh, so a fresh machine gets the same set both ways.
# Test and CI machines only (it stops the packaged containerd and docker-registry services): a
# node install is scripts/install-system.sh, which never runs this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

# Node.js >= 20.18 with npm comes with this project's machines; Debian 12's own nodejs (18) is too old.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' 2>/dev/null; then
  echo "error: stargzd needs Node.js >= 20.18 and npm on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# Debian packages:
#   containerd runc .............. real containerd + runtime (harness/containerd.ts); runc also
#                                  sandboxes `stargz optimize` workloads
#   stargz-snapshotter ........... ctr-remote (rpull, and the reference converter to compare)
#   docker-registry skopeo ....... a real registry, pushing OCI layouts into it
#   umoci libarchive-tools ....... interop corpus producers (umoci repack, bsdtar)
#   fuse3 libfuse2 ............... FUSE mounts (fuse-native links libfuse.so.2; fusermount3)
#   libfuse-dev .................. headers, in case fuse-native must build from source
#   busybox-static debootstrap ... rootfs fixtures (scripts/fixtures/*rootfs.sh)
#   pigz curl jq python3 openssl . fixture scripts, test helpers, benchmarks (curl/pigz compared)
#   zstd ......................... zstd:chunked tests decompress reference layers with `zstd -dc`
#   attr iproute2 util-linux ..... getfattr, ip netns/tc (WAN emulation), flock/mount/umount
#   build-essential .............. node-gyp, when a native module has no usable prebuilt binary
#   git ca-certificates .......... npm and the checkout
PACKAGES=(
  containerd runc stargz-snapshotter docker-registry skopeo umoci libarchive-tools
  fuse3 libfuse2 libfuse-dev busybox-static debootstrap
  pigz zstd curl jq python3 openssl perl attr iproute2 util-linux build-essential git ca-certificates
)
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts packaged services on install; we run private instances on loopback instead.
for svc in containerd docker-registry; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
modprobe fuse 2>/dev/null || true
[[ -e /dev/fuse ]] || { echo "error: /dev/fuse is missing" >&2; exit 1; }

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json || ${FORCE_NPM_CI:-0} == 1 ]]; then
  # Install scripts of the packages approved in package.json "allowScripts" run (native builds).
  npm ci --no-audit --no-fund --foreground-scripts </dev/null
fi
# Prove the native and binary dependencies really load, rather than failing later in a test.
node -e "
  const { createRequire } = require('node:module');
  const req = createRequire(process.cwd() + '/package.json');
  const db = new (req('better-sqlite3'))(':memory:');
  db.prepare('select 1 as x').get();
  req('fuse-native');
  req('esbuild').transformSync('let x: number = 1', { loader: 'ts' });
  req('protobufjs');
  req('zstd-napi');
  console.error('native modules load: better-sqlite3, fuse-native, esbuild, protobufjs, zstd-napi');
"
# Our own small addon (src/fuseproto: pidfd_getfd, /dev/fuse reader thread), built and load-checked.
bash scripts/build-native.sh
npm run build >/dev/null
