#!/usr/bin/env bash
# Install the Debian tools the tests use as real peers (DCMTK, Orthanc, dicom3tools, and
# Chromium, the headless browser of the QA review page test) and the libraries a minimal
# Debian lacks (libatomic1: Playwright's bundled Node driver links libatomic.so.1)
# when they are missing and we are root. When they cannot be installed, say so:
# the tests that need them then fail naming the missing package.
#
# The Python wheels of the venv need only libc6, libgcc-s1, libstdc++6 and zlib1g, which every
# Debian has (apt depends on them); the four tool packages bring their own libraries through
# their Depends (apt resolves them even with --no-install-recommends). libatomic1 is not
# pulled in by any of them, so it is named here.
set -u
missing=()

# A library, by the Debian package that ships it: installed (dpkg), or at least on the loader path.
have_library() { # PACKAGE SONAME
    dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed && return 0
    { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q "[[:space:]]$2 "
}

command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
have_library libatomic1 libatomic.so.1 || missing+=(libatomic1)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian-tools: missing ${missing[*]} and not root with apt-get; tests that need them will fail" >&2
    exit 0
fi
echo "install-debian-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "install-debian-tools: apt-get could not install ${missing[*]}" >&2
exit 0
