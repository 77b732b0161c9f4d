#!/usr/bin/env bash
# Install the Debian tools the tests use as real peers (DCMTK, Orthanc, dicom3tools, and
# Chromium, the headless browser of the QA review page test)
# when they are missing and we are root. When they cannot be installed, say so:
# the tests that need them then fail naming the missing package.
set -u
missing=()
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
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
