#!/bin/sh
# Makes a Debian bookworm root filesystem into the proxy's runtime: the packages of runtime-packages.txt
# and the non-root user the proxy runs as. Run as root inside that filesystem. deploy/Dockerfile runs it
# in its runtime stage and deploy/check runs it in its chroot, so both are made by the same steps.
set -eu
here="$(dirname "$0")"
packages="$(sed 's/#.*//' "$here/runtime-packages.txt" | tr -s ' \t' '\n' | grep -v '^$')"

missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -n "$missing" ]; then
    apt-get update
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
fi

# A system account with a fixed id (compose files and volume permissions can name it), no home, no
# shell, no password: nothing to log in as and nothing it owns to write to.
groupadd --system --gid 10001 vllm-proxy
useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin vllm-proxy
