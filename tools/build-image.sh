#!/usr/bin/env bash
# Builds the spoa container image (Containerfile: FROM scratch, the executable
# and the shared libraries it links) with buildah on vfs storage, without a
# Docker daemon, and tags it localhost/spoa:<package.json version> and
# localhost/spoa:latest. Prints the sizes at the end.
#
# Usage: tools/build-image.sh [--force] [--gzip] [BINARY]
#   BINARY   the executable to ship; default dist/spoa-bun, (re)built with
#            `bun build --compile` when missing or older than the sources.
#   --force  build even when the image for this exact context already exists
#            (the context's hash is the image's `spoa.context.sha256` label).
#   --gzip   also report the compressed size (an oci-archive with gzip layers).
#
# Needs buildah (Debian: apt-get install -y buildah podman runc); tested as
# root. The test (tests/container_test.ts) runs the image with podman and runc.
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "$0")/.."
root=$PWD
image=localhost/spoa
context=$root/dist/image
label=spoa.context.sha256

usage() { sed -n '2,15s/^# \{0,1\}//p' "$0"; }
die() {
  printf 'build-image: %s\n' "$*" >&2
  exit 1
}

trap 'die "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

force=0
gzip_size=0
binary=""
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --gzip) gzip_size=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [ -z "$binary" ] || die "only one BINARY may be given"
      binary=$1
      ;;
  esac
  shift
done

if ! command -v buildah >/dev/null 2>&1; then
  die "buildah is not installed. On Debian/Ubuntu: apt-get install -y buildah podman runc"
fi
for tool in ldd sha256sum flock; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
buildah=(buildah --storage-driver vfs)

version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' package.json | head -n 1)
[ -n "$version" ] || die "no version in package.json"

mkdir -p dist
# One build at a time (the Deno and the Bun test runs may both call this).
exec 9>dist/.build-image.lock
flock 9

# The executable.
if [ -z "$binary" ]; then
  binary=dist/spoa-bun
  bun=node_modules/bun/bin/bun.exe
  stale=""
  if [ -e "$binary" ]; then
    stale=$(find main.ts lib package.json -newer "$binary" -type f -print -quit)
  fi
  if [ ! -e "$binary" ] || [ -n "$stale" ]; then
    [ -x "$bun" ] || die "$bun is missing: run npm ci first, or pass a BINARY"
    echo "build-image: compiling $binary${stale:+ ($stale changed)}"
    "$bun" build --compile main.ts lib/serve/worker.ts lib/serve/metrics_worker.ts lib/iprep/agent.ts lib/iprep/load_worker.ts --outfile "$binary" >&2
  fi
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
  die "$binary is not an executable file"
fi
case $(head -c 4 "$binary" | od -An -c | tr -d ' ') in
  177ELF) ;;
  *) die "$binary is not an ELF executable" ;;
esac

# The context: the executable as spoa, and every library ldd resolves, at the
# path ldd prints (symlinks resolved: the image gets the files themselves).
rm -rf "$context"
mkdir -p "$context/libs"
cp "$binary" "$context/spoa"
chmod 0755 "$context/spoa"
libs=$(ldd "$binary" | awk '
  /not found/ { print "MISSING " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }')
if grep -q '^MISSING' <<<"$libs"; then
  die "ldd cannot resolve: $(grep '^MISSING' <<<"$libs" | cut -d' ' -f2 | tr '\n' ' ')"
fi
[ -n "$libs" ] || die "ldd lists no libraries: a static binary needs no libs/ (not handled)"
while IFS= read -r lib; do
  mkdir -p "$context/libs$(dirname "$lib")"
  cp -L "$lib" "$context/libs$lib"
  chmod 0755 "$context/libs$lib"
done <<<"$libs"

# The hash of everything that goes into the image.
hash=$(
  {
    sha256sum Containerfile
    echo "version $version"
    cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
)

image_id() {
  "${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true
}
image_label() {
  "${buildah[@]}" inspect --type image --format "{{index .OCIv1.Config.Labels \"$label\"}}" \
    "$1" 2>/dev/null || true
}

start=$SECONDS
if [ "$force" = 0 ] && [ "$(image_label "$image:$version")" = "$hash" ] &&
  [ "$(image_label "$image:latest")" = "$hash" ]; then
  echo "build-image: $image:$version is up to date (context $hash)"
else
  echo "build-image: building $image:$version from $binary"
  previous=$(image_id "$image:latest")
  "${buildah[@]}" bud --quiet --layers=false -f Containerfile \
    --build-arg "VERSION=$version" --label "$label=$hash" \
    -t "$image:$version" -t "$image:latest" "$context" >/dev/null
  echo "build-image: built in $((SECONDS - start)) s"
  # vfs keeps a full copy of every image: drop the one this build untagged.
  if [ -n "$previous" ] && [ "$previous" != "$(image_id "$image:latest")" ] &&
    ! "${buildah[@]}" images --noheading --no-trunc --format '{{.ID}} {{.Name}}:{{.Tag}}' |
    grep -v '<none>:<none>$' | grep -q "^sha256:$previous "; then
    "${buildah[@]}" rmi "$previous" >/dev/null 2>&1 || true
  fi
fi

# Sizes.
human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
binary_size=$(stat -c %s "$context/spoa")
libs_size=$(find "$context/libs" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')
# The image's size: its layers, uncompressed (what `podman images` shows, less ~3 kB of
# manifest and config).
image_size=$("${buildah[@]}" inspect --type image --format '{{.Manifest}}' "$image:$version" |
  grep -o '"layers":\[.*\]' | grep -o '"size":[0-9]*' | awk -F: '{ n += $2 } END { print n + 0 }')
id=$(image_id "$image:$version")
echo "image:   $image:$version ($image:latest), id ${id:0:12}"
echo "binary:  $binary_size bytes ($(human "$binary_size"))"
echo "libs:    $libs_size bytes ($(human "$libs_size")): $(paste -sd' ' <<<"$libs")"
echo "image:   $image_size bytes ($(human "$image_size")), layers uncompressed"
echo "image - binary: $((image_size - binary_size)) bytes ($(human $((image_size - binary_size))))"
if [ "$gzip_size" = 1 ]; then
  archive=$(mktemp -d)
  trap 'rm -rf "$archive"' EXIT
  # buildah push gzips the layers: the archive's size is what a registry stores.
  "${buildah[@]}" push --quiet "$image:$version" "oci-archive:$archive/spoa.tar:$image:$version" \
    >/dev/null
  tar_size=$(stat -c %s "$archive/spoa.tar")
  echo "gzipped: $tar_size bytes ($(human "$tar_size")) as an oci-archive (gzip layers)"
fi
