#!/usr/bin/env bash
# Installs stargzd on this node the conventional way: the built tree under /opt/stargzd,
# /usr/local/bin/{stargzd,stargz}, /etc/stargzd/config.toml (kept if it exists), the systemd
# unit, and (with --containerd) the proxy-plugin snippet merged into /etc/containerd/config.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PREFIX=${PREFIX:-/opt/stargzd}

bash scripts/install-deps.sh
install -d "$PREFIX"
# The runtime needs the build of src/ and daemon/ (npm run build: tsconfig.build.json), proto/
# (loaded at run time), node_modules/ and package.json; never tests, harness or benchmarks.
[[ -f dist/daemon/stargzd.js && -f dist/src/cli/main.js ]] || { echo "run 'npm run build' first" >&2; exit 1; }
rm -rf "$PREFIX/dist"
tar -cf - dist/src dist/daemon proto node_modules package.json config | tar -xf - -C "$PREFIX"
for bin in stargzd:dist/daemon/stargzd.js stargz:dist/src/cli/main.js; do
  name=${bin%%:*}; target=${bin#*:}
  printf '#!/bin/sh\nexec node %s/%s "$@"\n' "$PREFIX" "$target" > "/usr/local/bin/$name"
  chmod 755 "/usr/local/bin/$name"
done
install -d /etc/stargzd
[[ -e /etc/stargzd/config.toml ]] || install -m 644 config/config.toml /etc/stargzd/config.toml
install -m 644 systemd/stargzd.service /etc/systemd/system/stargzd.service
if [[ ${1:-} == --containerd ]]; then
  if ! grep -q 'proxy_plugins.stargz' /etc/containerd/config.toml 2>/dev/null; then
    install -d /etc/containerd
    [[ -s /etc/containerd/config.toml ]] || echo 'version = 2' > /etc/containerd/config.toml
    grep -v '^version' config/containerd.toml >> /etc/containerd/config.toml
  fi
fi
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable --now stargzd.service
  [[ ${1:-} == --containerd ]] && systemctl restart containerd.service
fi
echo "stargzd installed under $PREFIX; config /etc/stargzd/config.toml" >&2
