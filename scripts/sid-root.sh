#!/usr/bin/env bash
# sid-root.sh [--dev] [--gdb] [--bench] [DIR]
#
# Builds a minimal Debian sid root holding the interpreters the tests run in
# a chroot (testenv's labels in brackets): python3.14-nopie's non-PIE
# /usr/bin/python3.14 [3.14-chroot] and the PIE build it diverts to
# /usr/bin/python3.14-pie [3.14-pie-chroot], /usr/bin/python3.15
# [3.15-chroot] and python3.15-dbg's /usr/bin/python3.15d [3.15d-chroot].
# DIR defaults to $PYGLASS_SID_ROOT or /var/cache/pyglass/sid-root.
#   --dev  also install python3.14-dev and python3.15-dev (headers, for the
#          layout generator)
#   --bench also install python3.13 and Austin 3.7 (the profiler bench's
#          anchors; Austin's package wants python3 < 3.14, so its files are
#          unpacked with dpkg -x, leaving apt's state clean), memray (the
#          leak bench's anchor, for python3.14) and sid's gdb
#   --gdb  also install sid's gdb (bench uses it where the host's gdb cannot
#          restore registers, e.g. gdb 13 on CPUs with AMX)
#
# Idempotent: when DIR/usr/bin/python3.14 exists only missing extras are
# installed. Atomic: a new root is built in DIR.tmp and renamed. The mirror
# is read from this machine's apt sources; none is written here. ~30 s.
set -euo pipefail

dev=0
gdb=0
bench=0
dir=""
for a in "$@"; do
	case "$a" in
	--dev) dev=1 ;;
	--gdb) gdb=1 ;;
	--bench)
		bench=1
		gdb=1
		;;
	-h | --help)
		sed -n '2,20p' "$0"
		exit 0
		;;
	-*)
		echo "sid-root: unknown flag $a" >&2
		exit 2
		;;
	*) dir="$a" ;;
	esac
done
dir="${dir:-${PYGLASS_SID_ROOT:-/var/cache/pyglass/sid-root}}"

if [[ $(id -u) != 0 ]]; then
	echo "sid-root: must run as root" >&2
	exit 1
fi

# Packages wanted in the root, and the file that shows each is there.
declare -A marker=(
	[python3.14]=usr/lib/python3.14/os.py
	[python3.14-nopie]=usr/bin/python3.14-pie
	[python3.15]=usr/bin/python3.15
	[python3.15-dbg]=usr/bin/python3.15d
)
if [[ $dev == 1 ]]; then
	marker[python3.14-dev]=usr/include/python3.14/Python.h
	marker[python3.15-dev]=usr/include/python3.15/Python.h
fi
[[ $gdb == 1 ]] && marker[gdb]=usr/bin/gdb
[[ $bench == 1 ]] && marker[python3.13]=usr/bin/python3.13 && marker[python3-memray]=usr/bin/memray

# The snapshot mirrors serve Release files past their Valid-Until date.
apt_opts=(-o Acquire::Check-Valid-Until=false -o Dpkg::Use-Pty=0)

# Austin's files, unpacked from its package (see --bench).
austin() {
	[[ $bench == 1 && ! -x "$1/usr/bin/austin" ]] || return 0
	echo "sid-root: unpacking austin in $1"
	unshare -m --propagation private sh -c '
		mount -t proc proc "$0/proc" && exec chroot "$0" sh -c "$1"' "$1" \
		"cd /tmp && apt-get ${apt_opts[*]} update -qq && apt-get ${apt_opts[*]} download austin >/dev/null && dpkg -x austin_*.deb / && rm -f austin_*.deb"
}

if [[ -x "$dir/usr/bin/python3.14" ]]; then
	missing=()
	for p in "${!marker[@]}"; do
		[[ -e "$dir/${marker[$p]}" ]] || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		austin "$dir"
		echo "sid-root: $dir is ready"
		exit 0
	fi
	echo "sid-root: installing ${missing[*]} in $dir"
	# apt inside the root, with /proc mounted in a private mount namespace.
	unshare -m --propagation private sh -c '
		mount -t proc proc "$0/proc" && exec chroot "$0" sh -c "$1"' "$dir" \
		"apt-get ${apt_opts[*]} update -qq && DEBIAN_FRONTEND=noninteractive apt-get ${apt_opts[*]} install -y -qq --no-install-recommends ${missing[*]} >/dev/null"
	austin "$dir"
	exit 0
fi

if ! command -v debootstrap >/dev/null; then
	echo "sid-root: installing debootstrap"
	apt-get install -y debootstrap >/dev/null
fi

# The first Debian archive URI of the machine's apt configuration.
mirror() {
	local f u
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		while read -r u; do
			case "$u" in
			*security* | "") continue ;;
			*/debian | */debian/) echo "${u%/}"; return 0 ;;
			esac
		done < <(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f")
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		while read -r u; do
			case "$u" in
			*security* | "") continue ;;
			*/debian | */debian/) echo "${u%/}"; return 0 ;;
			esac
		done < <(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f")
	done
	return 1
}

m="$(mirror)" || {
	echo "sid-root: no Debian mirror found in /etc/apt sources" >&2
	exit 1
}
pkgs=$(printf '%s\n' "${!marker[@]}" | sort | paste -sd,)

tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
echo "sid-root: debootstrap sid into $tmp (packages: $pkgs)"
start=$SECONDS
if ! debootstrap --variant=minbase --include="$pkgs" sid "$tmp" "$m" >"$tmp.log" 2>&1; then
	echo "sid-root: debootstrap failed; last lines of $tmp.log:" >&2
	tail -n 30 "$tmp.log" >&2
	exit 1
fi
for p in "${!marker[@]}"; do
	if [[ ! -e "$tmp/${marker[$p]}" ]]; then
		echo "sid-root: debootstrap finished but $tmp/${marker[$p]} ($p) is missing" >&2
		exit 1
	fi
done
rm -f "$tmp.log"
austin "$tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "sid-root: $dir ready in $((SECONDS - start))s: Python $(chroot "$dir" /usr/bin/python3.14 -c 'import sys; print(sys.version.split()[0])') and $(chroot "$dir" /usr/bin/python3.15 -c 'import sys; print(sys.version.split()[0])')"
