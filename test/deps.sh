#!/usr/bin/env bash
# deps.sh -- install the Debian packages that building the image, `make run`
# and the tests need. Does nothing when they are all there already.
set -euo pipefail
packages=(
  qemu-system-x86   # boots the image
  kmod              # depmod, for the kernel's modules.dep
  e2fsprogs         # mkfs.ext4, dumpe2fs, e2fsck: the data disk
  ca-certificates   # the CA bundle the image carries
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
