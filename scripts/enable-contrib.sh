#!/usr/bin/env bash
# MBROLA and its voices (natural-sounding test speech for `make bench`) live in Debian's
# contrib/non-free components and Ubuntu's multiverse. Enable them once if apt cannot see
# `mbrola` yet; nothing is done when it can.
set -euo pipefail
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
policy=$(apt-cache policy mbrola 2>/dev/null || true)
case "$policy" in
  *"Candidate: (none)"* | "") ;;
  *) exit 0 ;;
esac
. /etc/os-release
case "${ID:-}" in
  debian)
    file=/etc/apt/sources.list.d/scamscreen-contrib.sources
    echo "enabling Debian contrib and non-free for the MBROLA voices ($file)"
    $SUDO tee "$file" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME}
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    ;;
  ubuntu)
    echo "enabling Ubuntu multiverse for the MBROLA voices"
    $SUDO add-apt-repository -y multiverse
    ;;
  *)
    echo "error: cannot enable the component that carries mbrola on ${PRETTY_NAME:-this system};" \
         "install mbrola, mbrola-us1 and mbrola-us2 by hand" >&2
    exit 1
    ;;
esac
$SUDO apt-get update -qq
