# shellcheck shell=bash
# The images of the local node, built here with Debian's buildah (no registry is reachable): the pod sandbox and
# CoreDNS from scratch, and the platform's from the repository's Dockerfile on a locally built base of the name the
# Dockerfile asks for. Sourced by scripts/cluster.sh, which sets repo, cache, images, coredns_bin, SANDBOX_IMAGE,
# COREDNS_IMAGE, COREDNS_VERSION, log and die.

DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PLATFORM_REPOSITORY=localhost/flashsale/flashsale
# what the stand-in base holds; bumped when build_python_base changes what it puts in
PYTHON_BASE_RECIPE=1

# buildah_local ARGS...: Debian's buildah with its storage in the cache (vfs: no overlay mount needed), never
# pulling (no registry is reachable here).
buildah_local() {
  local home="$cache/cluster/buildah"
  if ! [ -f "$home/containers.conf" ]; then # its network settings there too: it would create /etc/cni otherwise
    mkdir -p "$home/network"
    printf '[network]\nnetwork_config_dir = "%s"\n' "$home/network" >"$home/containers.conf"
  fi
  CONTAINERS_CONF="$home/containers.conf" buildah --root "$home/root" --runroot "$home/run" --storage-driver vfs "$@"
}

# image_of_one_file FILE PATH USER IMAGE ARCHIVE: an image from scratch holding FILE at PATH as its entrypoint, run
# as USER, saved as an OCI archive.
image_of_one_file() {
  local ctr
  ctr=$(buildah_local from scratch)
  buildah_local copy "$ctr" "$1" "$2" >/dev/null
  buildah_local config --entrypoint "[\"$2\"]" --user "$3" "$ctr"
  buildah_local commit -q --rm "$ctr" "$4" >/dev/null
  buildah_local push -q "$4" "oci-archive:$5.part:$4"
  mv "$5.part" "$5"
}

# build_sandbox_image: k8s/node/pause.c, linked statically, as the only file of an image built from scratch, saved
# as an OCI archive named by the source's hash (rebuilt only when pause.c changes).
build_sandbox_image() {
  local digest archive work
  digest=$(sha256sum k8s/node/pause.c | cut -c1-12)
  archive="$images/pause-$digest.tar"
  if [ -f "$archive" ]; then
    log "sandbox image $SANDBOX_IMAGE cached in $archive"
    return 0
  fi
  mkdir -p "$images"
  work=$(mktemp -d)
  gcc -static -Os -Wall -Wextra -Werror -o "$work/pause" k8s/node/pause.c
  image_of_one_file "$work/pause" /pause 65535:65535 "$SANDBOX_IMAGE" "$archive"
  rm -rf "$work"
  log "sandbox image $SANDBOX_IMAGE built: $archive ($(du -k "$archive" | cut -f1) KiB)"
}

# build_coredns_image: the CoreDNS binary as the only file of an image from scratch (its Corefile is a ConfigMap).
build_coredns_image() {
  local archive="$images/coredns-$COREDNS_VERSION.tar"
  if [ -f "$archive" ]; then
    log "CoreDNS image cached in $archive"
    return 0
  fi
  mkdir -p "$images"
  image_of_one_file "$coredns_bin/coredns" /coredns 65532:65532 "$COREDNS_IMAGE" "$archive"
  log "CoreDNS image $COREDNS_IMAGE built: $archive ($(du -m "$archive" | cut -f1) MiB)"
}

# python_base_name: the base image the Dockerfile names (its PYTHON_IMAGE argument), as a full reference.
python_base_name() {
  local name
  name=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$repo/Dockerfile")
  [ -n "$name" ] || die "the Dockerfile has no ARG PYTHON_IMAGE=<image>"
  case "$name" in */*) echo "$name" ;; *) echo "docker.io/library/$name" ;; esac
}

# build_python_base: a stand-in for the Dockerfile's base image, under the same name since its registry is out of
# reach: Debian bookworm (minbase) with Debian's Python 3.11 and pip, `python` and `pip` on the PATH as in the
# official image, pip allowed to install into the system (no EXTERNALLY-MANAGED), package caches and docs removed.
# Its Python is Debian's 3.11.2, not the tag's 3.11.14; the Dockerfile's steps are the same on both.
build_python_base() {
  local name work rootfs ctr
  name=$(python_base_name)
  if [ "$(buildah_local inspect --type image --format '{{index .ImageAnnotations "org.flashsale.base-recipe"}}' "$name" 2>/dev/null)" = "$PYTHON_BASE_RECIPE" ]; then
    log "base image $name (local stand-in) cached"
    return 0
  fi
  log "building a stand-in for $name from Debian bookworm's packages (debootstrap, about 2 minutes)"
  work=$(mktemp -d)
  rootfs="$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-pip bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed; its log:$(printf '\n'; tail -n 20 "$work/debootstrap.log")"
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  ctr=$(buildah_local from scratch) || die "buildah from scratch failed"
  buildah_local add "$ctr" "$work/rootfs.tar" / >/dev/null || die "could not add the root filesystem"
  buildah_local config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --annotation "org.flashsale.base-recipe=$PYTHON_BASE_RECIPE" \
    --annotation "org.opencontainers.image.description=local stand-in for $name: Debian bookworm, Debian's Python 3.11" \
    "$ctr"
  buildah_local commit -q --rm "$ctr" "$name" >/dev/null || die "could not commit $name"
  rm -rf "$work"
  log "base image $name built ($(buildah_local images --format '{{.Size}}' "$name"))"
}

# platform_source_hash: a hash of what the image is built from (the Dockerfile and its build context).
platform_source_hash() {
  (
    cd "$repo"
    find Dockerfile pyproject.toml README.md services operator tools -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-12
}

# build_platform_image: the repository's Dockerfile built by buildah with pulling disabled (on the stand-in base),
# tagged by its sources' hash and saved as an OCI archive; prints the image reference. The builder stage fetches
# the wheels from PyPI, so its RUN steps use the host's network. The operator runs from this image too.
build_platform_image() {
  local hash ref archive
  hash=$(platform_source_hash)
  ref="$PLATFORM_REPOSITORY:src-$hash"
  archive="$images/flashsale-$hash.tar"
  if ! [ -f "$archive" ]; then
    build_python_base
    mkdir -p "$images"
    log "building $ref from the Dockerfile"
    local started=$SECONDS
    # the host's CA store is mounted into the RUN steps (not copied into the image): this machine reaches PyPI
    # through a TLS proxy whose CA only the host trusts
    buildah_local bud --pull=never --network host --layers=false -q -f "$repo/Dockerfile" -t "$ref" \
      --volume /etc/ssl/certs:/etc/ssl/certs:ro \
      --build-arg "REVISION=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)" "$repo" >&2 ||
      die "buildah could not build the Dockerfile"
    rm -f "$images"/flashsale-*.tar
    buildah_local push -q "$ref" "oci-archive:$archive.part:$ref" || die "could not save $ref"
    mv "$archive.part" "$archive"
    log "built $ref in $((SECONDS - started)) s: $(buildah_local images --format '{{.Size}}' "$ref") unpacked," \
      "$(du -m "$archive" | cut -f1) MiB archive ($archive)"
  else
    log "image $ref cached in $archive"
  fi
  echo "$ref"
}
