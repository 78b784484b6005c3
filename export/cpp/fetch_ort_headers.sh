#!/usr/bin/env bash
# Put ONNX Runtime's C/C++ headers where export/cpp/CMakeLists.txt looks for them, and print that directory.
#
# The onnxruntime pip wheel ships libonnxruntime.so but no headers. Debian packages them in libonnxruntime-dev
# (trixie: 1.21). This downloads that .deb with apt (`apt-get download`, nothing is installed) and unpacks only its
# headers with `dpkg-deb -x`. On a Debian release without the package (bookworm), apt reads the package list of
# $ORT_DEBIAN_SUITE from the mirror this machine's apt already uses, in a private state directory: the system's
# apt configuration is not changed.
#
# usage: fetch_ort_headers.sh [DEST]   (default DEST: ${XDG_CACHE_HOME:-~/.cache}/ibit-deploy/onnxruntime)
# env:   ORT_DEBIAN_SUITE (default trixie), ORT_DEBIAN_MIRROR (default: the configured Debian mirror)
# then:  cmake -S export/cpp -B build/cpp -DORT_INCLUDE_DIR="$(export/cpp/fetch_ort_headers.sh)"
set -euo pipefail

DEST="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/ibit-deploy/onnxruntime}"
SUITE="${ORT_DEBIAN_SUITE:-trixie}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "fetch_ort_headers.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || die "needs apt-get and dpkg-deb (Debian)"

if [[ -f "$DEST/include/onnxruntime_cxx_api.h" ]]; then
    echo "$DEST/include"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's download user must be able to write here
cd "$work"

if ! apt-get download libonnxruntime-dev >/dev/null 2>&1; then
    mirror="${ORT_DEBIAN_MIRROR:-}"
    if [[ -z "$mirror" ]]; then
        # the main archive among apt's configured sources (not -security, not -updates)
        mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
                  | awk '$2 !~ /-/ && $1 !~ /security/ { print $1; exit }')"
    fi
    [[ -n "$mirror" ]] || die "no Debian mirror configured for apt; set ORT_DEBIAN_MIRROR"
    [[ -f "$KEYRING" ]] || die "$KEYRING missing (package debian-archive-keyring)"
    mkdir -p state/lists/partial cache/archives/partial
    echo "deb [signed-by=$KEYRING] $mirror $SUITE main" > sources.list
    apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$work/state/lists" -o "Dir::Cache=$work/cache")
    echo "fetch_ort_headers.sh: libonnxruntime-dev is not in this system's apt sources; reading $SUITE's list" >&2
    apt-get "${apt_opts[@]}" update >&2 || die "apt-get update for $SUITE failed"
    apt-get "${apt_opts[@]}" download libonnxruntime-dev >&2 || die "apt-get download libonnxruntime-dev failed"
fi

debs=(libonnxruntime-dev_*.deb)
[[ -f "${debs[0]}" ]] || die "no libonnxruntime-dev .deb was downloaded"
dpkg-deb -x "${debs[0]}" unpacked
[[ -f unpacked/usr/include/onnxruntime/onnxruntime_cxx_api.h ]] || die "${debs[0]} has no onnxruntime_cxx_api.h"
mkdir -p "$DEST"
rm -rf "$DEST/include.tmp"
cp -r unpacked/usr/include/onnxruntime "$DEST/include.tmp"
cp "${debs[0]}" "$DEST/"  # keep the package beside the headers: its version and copyright travel with them
rm -rf "$DEST/include"
mv "$DEST/include.tmp" "$DEST/include"
echo "$DEST/include"
