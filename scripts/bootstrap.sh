#!/bin/sh
# Make this checkout runnable on a fresh Debian machine: system tools the tests and the
# demo use for real (OpenSSH's sshd, Debian's docker-registry, skopeo, b3sum, rsync,
# systemd-analyze to check the units, mkfs.vfat and mtools for a FAT32 medium),
# then a virtual environment with syncd installed in it. Safe to run again.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${SYNCD_VENV:-$here/.venv}

need=""
for tool in /usr/sbin/sshd:openssh-server /usr/bin/docker-registry:docker-registry \
            /usr/bin/skopeo:skopeo /usr/bin/b3sum:b3sum /usr/bin/rsync:rsync \
            /usr/bin/setpriv:util-linux /usr/bin/systemd-analyze:systemd \
            /usr/sbin/mkfs.vfat:dosfstools /usr/bin/mcopy:mtools; do
    [ -x "${tool%%:*}" ] || need="$need ${tool#*:}"
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"
if [ -n "$need" ]; then
    echo "bootstrap: installing$need" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.syncd-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$here[test]"
    touch "$stamp"
fi
