#!/usr/bin/env bash
# fetch-kernel.sh DIR -- unpack Debian's cloud kernel into DIR without
# installing it (the host's /boot and /lib/modules stay untouched):
#   DIR/vmlinuz, DIR/release, DIR/root/lib/modules/<release>/... with modules.dep
set -euo pipefail
dir=${1:?usage: fetch-kernel.sh DIR}
meta=linux-image-cloud-amd64

if [ -s "$dir/release" ] && [ -s "$dir/vmlinuz" ] && [ -d "$dir/root/lib/modules/$(cat "$dir/release")" ]; then
  exit 0
fi
command -v depmod >/dev/null || { echo "fetch-kernel: depmod missing: apt-get install kmod" >&2; exit 1; }

# The metapackage names the current kernel package.
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve $meta" >&2; exit 1; }

rm -rf "$dir" && mkdir -p "$dir/deb"
chmod 777 "$dir/deb" # apt's sandbox user writes the download
(cd "$dir/deb" && apt-get download -q "$pkg")
dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
release=$(ls "$dir/root/lib/modules")
depmod -b "$dir/root" "$release"
cp "$dir/root/boot/vmlinuz-$release" "$dir/vmlinuz"
echo "$release" > "$dir/release"
rm -rf "$dir/deb"
echo "fetch-kernel: $pkg ($release) in $dir"
