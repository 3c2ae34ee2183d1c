#!/usr/bin/env bash
# setup.sh - one command from a fresh Debian 12 machine (as root) to a
# working dstack.  Idempotent: installs only what is missing, reuses builds.
#
#   contrib/setup.sh example   install, build, and run the example (default)
#   contrib/setup.sh test      install, build (plain and sanitized), run every test
#   contrib/setup.sh build     install and build only
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

packages=(gcc pkg-config meson ninja-build libsqlite3-dev liblz4-dev libssl-dev
          libyaml-dev libgit2-dev libcurl4-openssl-dev libfuse3-dev fuse3 git curl
          python3 python3-pytest python3-yaml python3-venv python3-pip util-linux rsync
          docker.io docker-registry busybox-static clang libclang-rt-14-dev)

install_missing() {
	local missing=() p
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() {
	local dir=$1; shift
	[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir" >/dev/null
}

run_example() {
	local dstack=$top/build/cli/dstack
	example_home=$(mktemp -d /tmp/dstack-example-home.XXXXXX)
	example_out=$(mktemp -d /tmp/dstack-example-out.XXXXXX)
	example_repo=$(mktemp -d /tmp/dstack-example-repo.XXXXXX)
	trap 'rm -rf "$example_home" "$example_out" "$example_repo"' EXIT
	export DSTACK_HOME=$example_home
	cp -a examples/pipeline/. "$example_repo"
	git -C "$example_repo" init -q
	git -C "$example_repo" add -A
	git -C "$example_repo" -c user.name=example -c user.email=example@localhost \
		commit -q -m "example pipeline"
	set -x
	$dstack tags add hello -a examples/hello-data
	$dstack artifacts download :hello -o "$example_out"
	diff -r examples/hello-data "$example_out/hello-data"
	(cd "$example_repo" && $dstack run prepare && $dstack run train && $dstack ps -a)
	$dstack fsck
	{ set +x; } 2>/dev/null
	echo "example: stored and fetched back examples/hello-data; ran examples/pipeline (prepare, then train on its data)"
}

case "${1:-example}" in
example)
	install_missing
	build build
	run_example
	;;
build)
	install_missing
	build build
	;;
test)
	install_missing
	build build
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false
	# The slurm backend's tests submit to a real one-node cluster.
	tests/slurm/start.sh
	exec tests/run-all.sh
	;;
*)
	echo "usage: contrib/setup.sh [example|test|build]" >&2
	exit 2
	;;
esac
