#!/usr/bin/env bash
# scripts/fetch-viewer.sh: fetches the flame graph viewer that
# `pyglass record --format html` embeds: speedscope's release bundle, from
# its npm package, pinned to one version and checked against the sha512
# integrity the npm registry publishes for it. The files go to
# profile/viewer/ (git-ignored), which the Go build embeds: rebuild pyglass
# afterwards. Nothing fetched is ever committed.
#
#   scripts/fetch-viewer.sh            download the pinned tarball
#   scripts/fetch-viewer.sh FILE.tgz   use a tarball already here (offline);
#                                      it must match the pin all the same
#
# PYGLASS_VIEWER_DIR names another directory to fill (tests).
set -euo pipefail

# The pin: https://registry.npmjs.org/speedscope, versions["1.25.0"].dist.
version=1.25.0
integrity=sha512-cpf9HWTZf1ijLXBJrk87Ve/54tnYx6rlf0gUThvn3ook6h63hLXVOQiMf44PT+XoV503cPfvfiT5gP5vojp6Ag==
url=https://registry.npmjs.org/speedscope/-/speedscope-$version.tgz

cd "$(dirname "$0")/.."
dest=${PYGLASS_VIEWER_DIR:-profile/viewer}
die() { echo "fetch-viewer: $*" >&2; exit 1; }

if [[ -f $dest/VERSION && $(<"$dest/VERSION") == "speedscope $version" && -f $dest/speedscope.js ]]; then
	echo "fetch-viewer: speedscope $version is already in $dest"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tgz=$tmp/speedscope.tgz
if (($# > 0)); then
	cp -- "$1" "$tgz"
else
	echo "fetch-viewer: downloading $url"
	if command -v curl >/dev/null; then
		curl -fsSL --retry 3 -o "$tgz" "$url" || die "cannot download $url"
	elif command -v wget >/dev/null; then
		wget -q -O "$tgz" "$url" || die "cannot download $url"
	else
		die "neither curl nor wget is installed"
	fi
fi

# npm's integrity is "sha512-" and the base64 of the digest.
wanthex=$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
gothex=$(sha512sum "$tgz" | cut -d' ' -f1)
[[ $gothex == "$wanthex" ]] || die "the tarball's sha512 is $gothex, the pin (speedscope $version) says $wanthex: not using it"

tar -xzf "$tgz" -C "$tmp" package/LICENSE package/dist/release
rel=$tmp/package/dist/release
# one() prints the single release file matching a pattern (the bundler
# puts a content hash in the names).
one() {
	local m=("$rel"/$1)
	((${#m[@]} == 1)) && [[ -f ${m[0]} ]] || die "speedscope $version: expected one $1 in the package"
	printf '%s\n' "${m[0]}"
}
out=$tmp/out
mkdir "$out"
cp "$(one 'speedscope-*.js')" "$out/speedscope.js"
cp "$(one 'speedscope-*.css')" "$out/speedscope.css"
font=$(one 'SourceCodePro-Regular*.woff2')
cp "$font" "$out/${font##*/}"
cp "$(one 'favicon-32x32-*.png')" "$out/favicon.png"
cp "$tmp/package/LICENSE" "$out/LICENSE"
cp "$(one 'source-code-pro.LICENSE.md')" "$out/source-code-pro.LICENSE.md"
echo "speedscope $version" >"$out/VERSION"

mkdir -p "$dest"
find "$dest" -mindepth 1 ! -name README.md -delete
cp "$out"/* "$dest"/
echo "fetch-viewer: speedscope $version is in $dest; rebuild pyglass (CGO_ENABLED=0 go build ./cmd/pyglass) to embed it"
