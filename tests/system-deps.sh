#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those that are missing.
#
# Idempotent: when everything is installed it only asks dpkg and exits. Otherwise it
# runs `apt-get update` once and installs what is missing, as root, through sudo when
# not root, or prints the command to run and exits 1.
#
# Packages are installed with service starts blocked (policy-rc.d), so installing
# `postgresql` never starts the system's own `main` cluster: the tests start their
# own throwaway servers on their own ports and leave the system's alone.
set -euo pipefail

# Debian packages the tests need: one per line, with who needs it. Append here.
PACKAGES=(
    openssl       # self-signed certificates for the centre's TLS test (tests/integration/test_centre_process.py)
    postgresql    # initdb/pg_ctl for the throwaway server (tests/integration/conftest.py)
    libportaudio2 # sounddevice's import fails without it ("PortAudio library not found")
    pulseaudio pulseaudio-utils libasound2-plugins # null-sink audio device (tests/integration/pulse_fixture.py)
    prometheus    # prometheus + promtool (tests/integration/test_prometheus.py); its service is not started
    chromium fonts-noto-cjk # headless browser for the seat page tests (Playwright drives it), CJK glyphs
    minimodem multimon-ng sox # independent caller-ID decoders (tests/integration/test_linetap_peers.py, bench)
    ceph-mon ceph-osd ceph-common radosgw uuid-runtime curl # a real S3 store, Ceph RGW (tests/integration/rgw_fixture.py)
    flac          # `flac -d -F`, the reference for what a torn FLAC holds (tests/integration/test_crash_recovery.py)
    espeak-ng     # real speech (Chinese and English) for the talk-off test (tests/integration/test_linetap_talkoff.py, bench)
    gcc libc6-dev libspandsp-dev # SpanDSP, built into a helper with cc: transmitters and receivers as an independent reference (tests/spandsp_helper.c)
)

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    echo "system-deps: all present (${PACKAGES[*]})"
    exit 0
fi

if ((EUID == 0)); then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "system-deps: missing Debian packages: ${missing[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

# Clusters running before the install: those are not ours to stop.
online_clusters() {
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" { print $1 "/" $2 }'
    fi
}
was_online=$(online_clusters)

# Debian's invoke-rc.d asks /usr/sbin/policy-rc.d whether a package may start its
# service; 101 means "no". Keep one that is already there (container images ship one).
policy=/usr/sbin/policy-rc.d
ours=""
cleanup() {
    if [[ -n "$ours" ]]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# temporary, from cti-agent tests/system-deps.sh\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    ours=yes
    "${as_root[@]}" chmod 755 "$policy"
fi

echo "system-deps: installing ${missing[*]}"
apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
"${apt_get[@]}" update
"${apt_get[@]}" install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"

# A start that got past the policy (a package calling pg_ctlcluster itself): stop it.
for cluster in $(online_clusters); do
    if ! grep -qxF "$cluster" <<<"$was_online"; then
        echo "system-deps: stopping PostgreSQL cluster $cluster started by the install"
        "${as_root[@]}" pg_ctlcluster "${cluster%/*}" "${cluster#*/}" stop
    fi
done

for pkg in "${missing[@]}"; do
    installed "$pkg" || {
        echo "system-deps: $pkg is still not installed" >&2
        exit 1
    }
done
echo "system-deps: installed ${missing[*]}"
