#!/usr/bin/env bash
# The main job, end to end, on one Debian 12 machine as root:
#   install + build → start docker-registry, stargzd and containerd (private, on loopback and unix
#   sockets) → build a sample image, push it as plain gzip, convert it to eStargz with
#   `stargz convert` → `ctr-remote image rpull` + `ctr run --snapshotter stargz` (lazy) → print the
#   start-up time and the bytes fetched → stop everything.
#
#   bash scripts/quickstart.sh [--python] [--keep]
#     --python  a Debian python3 image (debootstrap) running python3 -c 'print("hello")'
#               (default: busybox-static + 64 MiB of data the workload never reads)
#     --keep    leave the services running and print how to use them
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PYTHON=0 KEEP=0
for a in "$@"; do
  case $a in
    --python) PYTHON=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--python] [--keep]" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "installing packages and building (scripts/install-deps.sh)"
bash scripts/install-deps.sh

STATE=/var/tmp/stargzd-quickstart
PIDS=()
cleanup() {
  local rc=$?
  if ((KEEP)) && ((rc == 0)); then return; fi
  say "stopping containerd, stargzd and the registry"
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  # Lazy layer mounts and container rootfs mounts under the state dir, deepest first.
  awk -v d="$STATE" 'index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$STATE" 2>/dev/null || true
}
trap cleanup EXIT
if [[ -d $STATE ]]; then
  awk -v d="$STATE" 'index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$STATE"
fi
mkdir -p "$STATE"
wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

# --- registry on 127.0.0.1 ------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
mkdir -p "$STATE/registry"
cat > "$STATE/registry/config.yml" <<EOF
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $STATE/registry/data }, delete: { enabled: true } }
http: { addr: $REG }
EOF
say "starting docker-registry on $REG"
docker-registry serve "$STATE/registry/config.yml" >"$STATE/registry/log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://$REG/v2/"

# --- stargzd ----------------------------------------------------------------------------------
SGD_SOCK=$STATE/stargzd/stargzd.sock
mkdir -p "$STATE/stargzd" "$STATE/certs.d"
cat > "$STATE/stargzd/config.toml" <<EOF
# stargzd for the quick start (every key and its default: config/config.toml)
address = "$SGD_SOCK"
root = "$STATE/stargzd/root"
hosts_dir = "$STATE/certs.d"
metrics_address = "$STATE/stargzd/metrics.sock"
EOF
say "starting stargzd (proxy snapshotter 'stargz', socket $SGD_SOCK)"
node dist/daemon/stargzd.js --config "$STATE/stargzd/config.toml" >"$STATE/stargzd/log" 2>&1 &
PIDS+=($!)
wait_for 60 test -S "$SGD_SOCK"

# --- containerd with [proxy_plugins.stargz] ---------------------------------------------------
CTRD=$STATE/containerd
mkdir -p "$CTRD"
cat > "$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTRD/containerd.sock"
[ttrpc]
  address = "$CTRD/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[proxy_plugins.stargz]
  type = "snapshot"
  address = "$SGD_SOCK"
EOF
say "starting containerd (private root and socket under $CTRD)"
containerd --config "$CTRD/config.toml" >"$CTRD/log" 2>&1 &
PIDS+=($!)
CTR=(ctr --address "$CTRD/containerd.sock" -n quickstart)
RUNARGS=(--runc-root "$CTRD/runc" --fifo-dir "$CTRD/fifo")
wait_for 60 "${CTR[@]}" version

# --- a sample image, pushed as plain gzip -------------------------------------------------------
if ((PYTHON)); then
  say "building a Debian python3 root filesystem (debootstrap; cached under /var/tmp/stargzd-fixtures)"
  ROOTFS_TAR=$(bash scripts/fixtures/python-rootfs.sh)
  WORKLOAD=(python3 -c 'print("hello")')
  APP=python3
else
  ROOTFS_TAR=$(bash scripts/fixtures/busybox-rootfs.sh)
  WORKLOAD=(/bin/busybox echo hello)
  APP=busybox
fi
IMG=$STATE/image
mkdir -p "$IMG/blobs/sha256" "$IMG/extra/data"
cp "$ROOTFS_TAR" "$IMG/layer.tar"
if ((!PYTHON)); then
  # Data the workload never reads: a lazy pull does not fetch it.
  head -c $((64 << 20)) /dev/urandom > "$IMG/extra/data/model.bin"
  tar -rf "$IMG/layer.tar" -C "$IMG/extra" data
fi
DIFF_ID=sha256:$(sha256sum "$IMG/layer.tar" | cut -d' ' -f1)
gzip -6 -n -c "$IMG/layer.tar" > "$IMG/layer.tar.gz"
LAYER=$(sha256sum "$IMG/layer.tar.gz" | cut -d' ' -f1); LAYER_SIZE=$(stat -c %s "$IMG/layer.tar.gz")
mv "$IMG/layer.tar.gz" "$IMG/blobs/sha256/$LAYER"
jq -cn --arg d "$DIFF_ID" '{architecture:"amd64",os:"linux",config:{Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},rootfs:{type:"layers",diff_ids:[$d]}}' > "$IMG/config.json"
CONFIG=$(sha256sum "$IMG/config.json" | cut -d' ' -f1); CONFIG_SIZE=$(stat -c %s "$IMG/config.json")
mv "$IMG/config.json" "$IMG/blobs/sha256/$CONFIG"
jq -cn --arg c "sha256:$CONFIG" --argjson cs "$CONFIG_SIZE" --arg l "sha256:$LAYER" --argjson ls "$LAYER_SIZE" \
  '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip",digest:$l,size:$ls}]}' > "$IMG/manifest.json"
MANIFEST=$(sha256sum "$IMG/manifest.json" | cut -d' ' -f1); MANIFEST_SIZE=$(stat -c %s "$IMG/manifest.json")
mv "$IMG/manifest.json" "$IMG/blobs/sha256/$MANIFEST"
echo '{"imageLayoutVersion":"1.0.0"}' > "$IMG/oci-layout"
jq -cn --arg m "sha256:$MANIFEST" --argjson ms "$MANIFEST_SIZE" \
  '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$m,size:$ms,annotations:{"org.opencontainers.image.ref.name":"gzip"}}]}' > "$IMG/index.json"
say "pushing $REG/demo/$APP:gzip (plain gzip, $((LAYER_SIZE >> 20)) MiB)"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$IMG:gzip" "docker://$REG/demo/$APP:gzip"

# --- convert to eStargz ---------------------------------------------------------------------
say "stargz convert $REG/demo/$APP:gzip → $REG/demo/$APP:esgz"
node dist/src/cli/main.js convert "$REG/demo/$APP:gzip" "$REG/demo/$APP:esgz" --plain-http --cache-dir "$STATE/convert-cache" --json > "$STATE/convert.json"
ESGZ_LAYER=$(jq -r '.. | objects | select(has("tocDigest")) | .digest' "$STATE/convert.json" | head -1)
ESGZ_SIZE=$(jq -r '.. | objects | select(has("tocDigest")) | .size' "$STATE/convert.json" | head -1)

# --- lazy pull and run ------------------------------------------------------------------------
REF=$REG/demo/$APP:esgz
say "lazy start: ctr-remote image rpull $REF && ctr run --snapshotter stargz ... ${WORKLOAD[*]}"
T0=$(date +%s.%N)
ctr-remote --address "$CTRD/containerd.sock" -n quickstart image rpull --plain-http "$REF" >/dev/null
T1=$(date +%s.%N)
OUT=$("${CTR[@]}" run --rm --snapshotter stargz "${RUNARGS[@]}" "$REF" lazy-demo "${WORKLOAD[@]}")
T2=$(date +%s.%N)
echo "$OUT"
[[ $OUT == *hello* ]] || { echo "the container did not print hello" >&2; exit 1; }
# The lazy layer's state file, exposed inside its FUSE mount as the reference snapshotter does.
STATEFILE=$(find "$STATE/stargzd/root/snapshots" -maxdepth 2 -name fs -type d -exec test -e "{}/.stargz-snapshotter/$ESGZ_LAYER.json" \; -printf "%p/.stargz-snapshotter/$ESGZ_LAYER.json\n" 2>/dev/null | head -1)
FETCHED=$(jq -r .fetchedSize "$STATEFILE" 2>/dev/null || echo "?")
grep -q remote-snapshot-prepared "$STATE/stargzd/log" || { echo "stargzd did not mount the layer lazily; see $STATE/stargzd/log" >&2; exit 1; }

# --- for comparison: a full pull with containerd's overlayfs snapshotter --------------------
say "for comparison: full pull + run of the gzip image with containerd's overlayfs snapshotter"
U0=$(date +%s.%N)
"${CTR[@]}" image pull --plain-http "$REG/demo/$APP:gzip" >/dev/null
"${CTR[@]}" run --rm "${RUNARGS[@]}" "$REG/demo/$APP:gzip" full-demo "${WORKLOAD[@]}" >/dev/null
U1=$(date +%s.%N)

python3 - "$T0" "$T1" "$T2" "$U0" "$U1" "$FETCHED" "$ESGZ_SIZE" <<'EOF'
import sys
t0, t1, t2, u0, u1 = map(float, sys.argv[1:6])
fetched, size = sys.argv[6], int(sys.argv[7])
print()
print(f"lazy start-up (rpull + run):   {t2 - t0:6.2f} s   (pull {t1 - t0:.2f} s, create + run {t2 - t1:.2f} s)")
if fetched.isdigit():
    print(f"bytes fetched for the layer:   {int(fetched):,} of {size:,} ({100 * int(fetched) / size:.1f}%)")
print(f"full pull + unpack + run:      {u1 - u0:6.2f} s   (registry on loopback: no network delay)")
EOF
if ((KEEP)); then
  cat >&2 <<EOF

services left running (--keep):
  ctr --address $CTRD/containerd.sock -n quickstart run --rm --snapshotter stargz $REF t1 ${WORKLOAD[*]}
  logs: $STATE/{stargzd,registry}/log, $CTRD/log; stop: kill ${PIDS[*]}
EOF
fi
