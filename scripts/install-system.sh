#!/usr/bin/env bash
# Installs stargzd on a node: the built tree with its RUNTIME dependencies only (no dev tools, no
# test tools), wrappers for stargzd/stargz/stargz-fused, /etc/stargzd/config.toml (kept if it
# exists), the systemd units — stargzd.service, stargz-fused.service and the drop-in
# stargzd.service.d/10-fuse-manager.conf that makes stargzd serve FUSE through stargz-fused, so
# running containers keep their lazy layers across stargzd restarts and upgrades (README "Crash,
# restart and upgrade") — and with --containerd stargzd's settings merged into containerd's config.
#
# It never stops or disables containerd (nor anything else): with --containerd it merges the
# config idempotently (a second run leaves the file byte for byte as it is), keeps a backup of the
# old file, and asks systemd to `try-restart` containerd only when the file changed, after
# stargzd is up (containerd dials its proxy snapshotter when it starts).
#
#   scripts/install-system.sh [--containerd] [--prefix DIR] [--root DIR] [--bin-dir DIR]
#       [--etc-dir DIR] [--systemd-dir DIR] [--containerd-config FILE] [--deps ci|copy]
#       [--no-build] [--no-packages] [--no-fuse-manager]
#
#   --prefix DIR          where the tree goes (default /opt/stargzd)
#   --root DIR            base of the default system paths below (default /); with a root other
#                         than /, nothing is started (an image or a test tree is being filled)
#   --bin-dir DIR         wrappers (default ROOT/usr/local/bin)
#   --etc-dir DIR         stargzd's config dir (default ROOT/etc/stargzd)
#   --systemd-dir DIR     unit files (default ROOT/etc/systemd/system)
#   --containerd-config FILE   (default ROOT/etc/containerd/config.toml)
#   --deps ci             `npm ci --omit=dev` into the prefix (default; needs the npm registry)
#   --deps copy           copy the runtime closure (`npm ls --omit=dev`) of this checkout's
#                         node_modules, already built for this machine; no network
#   --no-build            use dist/ as it is (default: `npm run build` first)
#   --no-packages         do not apt-get the runtime packages (fuse3, libfuse2)
#   --no-fuse-manager     FUSE in stargzd itself (no stargz-fused unit, no drop-in; an existing
#                         drop-in is removed): a stargzd restart then ends running containers' layers
# Environment: STARGZD_ASSUME_SYSTEMD=1 talks to systemctl even without /run/systemd/system and
# with --root (tests use it with a recording systemctl on PATH).
#
# Test-only tools (docker-registry, skopeo, debootstrap, build-essential, dev node_modules) come
# from scripts/install-deps.sh, which CI and the quick start use; this script never runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=$PWD

PREFIX=${PREFIX:-/opt/stargzd}
ROOT=/
BIN_DIR= ETC_DIR= SYSTEMD_DIR= CONTAINERD_CONFIG=
DEPS=ci BUILD=1 PACKAGES=1 CONTAINERD=0 FUSED=1
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case $1 in
    --containerd) CONTAINERD=1 ;;
    --prefix) PREFIX=${2:?--prefix needs a value}; shift ;;
    --root) ROOT=${2:?--root needs a value}; shift ;;
    --bin-dir) BIN_DIR=${2:?}; shift ;;
    --etc-dir) ETC_DIR=${2:?}; shift ;;
    --systemd-dir) SYSTEMD_DIR=${2:?}; shift ;;
    --containerd-config) CONTAINERD_CONFIG=${2:?}; shift ;;
    --deps) DEPS=${2:?}; shift; [[ $DEPS == ci || $DEPS == copy ]] || usage ;;
    --no-build) BUILD=0 ;;
    --no-packages) PACKAGES=0 ;;
    --no-fuse-manager) FUSED=0 ;;
    -h|--help) usage ;;
    *) echo "install-system.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
ROOT=${ROOT%/}
BIN_DIR=${BIN_DIR:-$ROOT/usr/local/bin}
ETC_DIR=${ETC_DIR:-$ROOT/etc/stargzd}
SYSTEMD_DIR=${SYSTEMD_DIR:-$ROOT/etc/systemd/system}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG:-$ROOT/etc/containerd/config.toml}
for p in "$PREFIX" "$BIN_DIR" "$ETC_DIR" "$SYSTEMD_DIR" "$CONTAINERD_CONFIG"; do
  [[ $p == /* ]] || { echo "install-system.sh: $p is not an absolute path" >&2; exit 2; }
done

if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=18)?0:1)' 2>/dev/null; then
  echo "error: stargzd needs Node.js >= 20.18 on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# Runtime packages: libfuse.so.2 for fuse-native, fusermount3 for unmounting. containerd and runc
# are the node's own (they may not be Debian's): never installed or touched here.
if ((PACKAGES)); then
  missing=()
  for p in fuse3 libfuse2 ca-certificates; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if ((BUILD)); then npm run build >&2 || { echo "error: npm run build failed" >&2; exit 1; }; fi
[[ -f dist/daemon/stargzd.js ]] || { echo "error: dist/ is not built (npm run build)" >&2; exit 1; }

# The tree: dist/ and proto/ (loaded at run time), package files, config samples, deploy files.
install -d "$PREFIX"
rm -rf "$PREFIX/dist" "$PREFIX/proto"
tar -cf - dist/src dist/daemon proto package.json package-lock.json config systemd | tar -xf - -C "$PREFIX"
case $DEPS in
  ci)
    (cd "$PREFIX" && npm ci --omit=dev --no-audit --no-fund --foreground-scripts </dev/null >&2)
    ;;
  copy)
    # Exactly the packages `npm ls --omit=dev` reports: the runtime closure, native builds included.
    # Nested node_modules/ come with their parent package.
    rm -rf "$PREFIX/node_modules"
    install -d "$PREFIX/node_modules"
    mapfile -t pkgs < <(npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$SRC/node_modules/||p" | grep -v '/node_modules/' | sort -u)
    ((${#pkgs[@]})) || { echo "error: npm ls found no runtime packages in $SRC/node_modules" >&2; exit 1; }
    (cd "$(readlink -f "$SRC/node_modules")" && tar -cf - "${pkgs[@]}") | tar -xf - -C "$PREFIX/node_modules"
    ;;
esac
# Prove the runtime dependencies load from the prefix alone.
(cd "$PREFIX" && node -e "
  const req = require('node:module').createRequire(process.cwd() + '/package.json');
  for (const m of ['@grpc/grpc-js', '@grpc/proto-loader', 'better-sqlite3', 'fuse-native', 'pino', 'prom-client', 'smol-toml', 'undici', 'fflate']) req(m);
  new (req('better-sqlite3'))(':memory:').prepare('select 1').get();
")

install -d "$PREFIX/bin" "$BIN_DIR"
for bin in stargzd:dist/daemon/stargzd.js stargz:dist/src/cli/main.js stargz-fused:dist/daemon/stargz-fused.js stargz-fdholder:dist/daemon/fused-holder.js; do
  name=${bin%%:*}; target=${bin#*:}
  printf '#!/bin/sh\nexec node %s/%s "$@"\n' "$PREFIX" "$target" > "$PREFIX/bin/$name.tmp"
  chmod 755 "$PREFIX/bin/$name.tmp"
  mv "$PREFIX/bin/$name.tmp" "$PREFIX/bin/$name"
  ln -sfn "$PREFIX/bin/$name" "$BIN_DIR/$name"
done

install -d "$ETC_DIR" "$SYSTEMD_DIR"
[[ -e $ETC_DIR/config.toml ]] || install -m 644 config/config.toml "$ETC_DIR/config.toml"
# A unit file with the installed paths: ExecStart= lines keep their flags after the binary's name.
install_unit() { # SRC DEST
  sed -e "s|^ExecStart=/[^ ]*/bin/\([a-z-]*\) --config [^ ]*|ExecStart=$PREFIX/bin/\1 --config $ETC_DIR/config.toml|" \
      -e "s|^ExecStart=/opt/stargzd/bin/|ExecStart=$PREFIX/bin/|" \
      -e "s|^Documentation=.*|Documentation=file://$ETC_DIR/config.toml|" "$1" > "$2.tmp"
  chmod 644 "$2.tmp"
  mv "$2.tmp" "$2"
}
install_unit systemd/stargzd.service "$SYSTEMD_DIR/stargzd.service"
DROPIN=$SYSTEMD_DIR/stargzd.service.d/10-fuse-manager.conf
if ((FUSED)); then
  install_unit systemd/stargz-fused.service "$SYSTEMD_DIR/stargz-fused.service"
  # Keeps stargz-fused's /dev/fuse connections across its crash or upgrade (fuseproto; Wants= from stargz-fused).
  install_unit systemd/stargz-fdholder.service "$SYSTEMD_DIR/stargz-fdholder.service"
  install -d "$SYSTEMD_DIR/stargzd.service.d"
  install_unit systemd/stargzd.service.d/10-fuse-manager.conf "$DROPIN"
else
  rm -f "$DROPIN"
fi

containerd_changed=0
if ((CONTAINERD)); then
  # The socket and root the installed config says (the defaults unless the operator changed them).
  settings=$(cd "$PREFIX" && node --input-type=module -e "
    import { loadConfig } from '$PREFIX/dist/src/config/load.js';
    const c = await loadConfig('$ETC_DIR/config.toml');
    process.stdout.write(c.address + '\n' + c.root + '\n');
  ")
  address=$(sed -n 1p <<<"$settings"); root=$(sed -n 2p <<<"$settings")
  status=$(node "$PREFIX/dist/src/install/merge-containerd-config.js" --config "$CONTAINERD_CONFIG" --address "$address" --root "$root")
  [[ $status == changed ]] && containerd_changed=1
  echo "containerd config $CONTAINERD_CONFIG: $status" >&2
fi

systemd=0
if [[ ${STARGZD_ASSUME_SYSTEMD:-0} == 1 ]]; then systemd=1
elif [[ $ROOT == "" ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then systemd=1
fi
if ((systemd)); then
  [[ $ROOT == "" ]] && { modprobe fuse 2>/dev/null || true; }
  systemctl daemon-reload
  if ((FUSED)); then
    systemctl enable stargz-fused.service
    # start, never restart: restarting stargz-fused ends the FUSE connections of running
    # containers. A new stargz-fused build runs from its next start (README "Crash, restart and upgrade").
    systemctl start stargz-fused.service
  fi
  systemctl enable stargzd.service
  # restart, not start: a reinstall must run the new tree. stargzd re-attaches to (or re-mounts)
  # the lazy layers in the background after it is ready.
  systemctl restart stargzd.service
  # Only when its config changed, and only if it is running: containerd's state is the operator's.
  if ((containerd_changed)); then systemctl try-restart containerd.service; fi
elif ((containerd_changed)); then
  echo "containerd's config changed: restart containerd (after stargzd is running) to use it" >&2
fi
echo "stargzd installed under $PREFIX; config $ETC_DIR/config.toml" >&2
