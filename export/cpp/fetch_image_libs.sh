#!/usr/bin/env bash
# Make libpng and libjpeg(-turbo) headers and libraries available to export/cpp/CMakeLists.txt without installing
# anything, and print the prefix that holds them (empty output: the system already has them).
#
# Debian and Ubuntu machines with libpng-dev and libjpeg-dev installed (JetPack's rootfs has the libraries; the -dev
# packages hold the headers) need nothing. Otherwise this downloads the .debs with apt (`apt-get download`, nothing
# is installed) and unpacks them with `dpkg-deb -x` into DEST: libpng-dev and libpng16-16, the libjpeg-turbo -dev
# and runtime packages (Debian: libjpeg62-turbo*, Ubuntu: libjpeg-turbo8*) and zlib1g-dev (png.h includes zlib.h).
# CMake looks in the default DEST by itself; the runners get its library directory on their RPATH.
#
# usage: fetch_image_libs.sh [DEST]   (default DEST: ${XDG_CACHE_HOME:-~/.cache}/ibit-deploy/image-libs)
# env:   IBIT_FETCH_ALWAYS=1 downloads even when the system has the headers
# then:  cmake -S export/cpp -B build/cpp -DIBIT_IMAGE_LIBS_PREFIX="$(export/cpp/fetch_image_libs.sh)"
set -euo pipefail

DEST="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/ibit-deploy/image-libs}"
die() { echo "fetch_image_libs.sh: $*" >&2; exit 1; }

if [[ "${IBIT_FETCH_ALWAYS:-0}" != 1 && -f /usr/include/png.h && -f /usr/include/jpeglib.h && -f /usr/include/zlib.h ]]; then
    exit 0  # the system's own -dev packages
fi
if [[ -f "$DEST/usr/include/png.h" && -f "$DEST/usr/include/jpeglib.h" && -f "$DEST/usr/include/zlib.h" ]]; then
    echo "$DEST/usr"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || die "needs apt-get and dpkg-deb (Debian/Ubuntu)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download user must be able to write here
cd "$work"

fetch() {  # the first of the given package names apt knows
    local name
    for name in "$@"; do
        if apt-get download "$name" >/dev/null 2>&1; then return 0; fi
    done
    die "apt-get download failed for: $* (is the package list current? apt-get update needs root)"
}
fetch libpng-dev
fetch libpng16-16t64 libpng16-16
fetch libjpeg62-turbo-dev libjpeg-turbo8-dev
fetch libjpeg62-turbo libjpeg-turbo8
fetch zlib1g-dev

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
for deb in ./*.deb; do
    dpkg-deb -x "$deb" "$DEST.tmp"
done
mkdir -p "$DEST.tmp/debs"
cp ./*.deb "$DEST.tmp/debs/"  # versions and copyright files travel with the headers
[[ -f "$DEST.tmp/usr/include/png.h" && -f "$DEST.tmp/usr/include/jpeglib.h" ]] || die "the packages hold no png.h / jpeglib.h"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$DEST/usr"
