#!/usr/bin/env bash
# Build the image on a machine with no Docker daemon and no Docker Hub access, with buildah.
#
#   deploy/build-local-image.sh [TAG]        (default TAG: localhost/points-service:local)
#
# The base is made from Debian packages (debootstrap: python3 + venv), imported into buildah's
# storage once as localhost/debian-python:bookworm and passed as the PYTHON_IMAGE build argument,
# so the Dockerfile builds unchanged. The host's CA bundle is copied into that base so pip works
# behind a TLS-inspecting proxy. Needs root, buildah and debootstrap:
#   apt-get install -y buildah debootstrap
set -euo pipefail

TAG="${1:-localhost/points-service:local}"
BASE="${BASE_IMAGE:-localhost/debian-python:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export BUILDAH_ISOLATION=chroot

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "build-local-image: $tool is not installed (apt-get install -y buildah debootstrap)" >&2; exit 2; }
done

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  rootfs="$(mktemp -d)"
  ctr=""
  # Clean up on failure and when stopped (a test timeout SIGTERMs the process group): the
  # debootstrap tree and the half-made working container.
  trap 'rm -rf "$rootfs"; if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi' EXIT
  trap 'exit 143' TERM INT
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >&2
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  cp -a "$rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$ctr"
  buildah commit --quiet "$ctr" "$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

# --format docker keeps the HEALTHCHECK (the OCI image format has no such field).
buildah bud --quiet --format docker --layers --build-arg PYTHON_IMAGE="$BASE" -t "$TAG" "$ROOT" >&2
echo "$TAG"
