# lib.sh - what the benchmark scripts share; sourced after they define
# die() and note() (their messages carry the script's name).

# install_peers PKG...: apt-get installs the Debian packages of missing
# peers, unless NO_INSTALL is set.  Returns non-zero when they could not be
# had, with the reason in install_note (why_missing reports it per peer).
install_note=
install_peers() {
    [ $# -gt 0 ] || return 0
    if [ -n "${NO_INSTALL:-}" ]; then
        install_note="not installed (NO_INSTALL set)"
        return 1
    fi
    note "installing $* with apt-get"
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            $sudo apt-get install -y -qq "$@"; } >/dev/null 2>&1; then
        install_note="apt-get install $* failed"
        return 1
    fi
    hash -r
}

# why_missing PACKAGE: the reason a peer's program is not there.
why_missing() { echo "${install_note:-not installed}; Debian package $1"; }

# dataset_ensure: makes the reference dataset in $DATA when it is missing
# or empty (../shared/bench/gen-dataset.sh), then makes $DATA absolute.
dataset_ensure() {
    if [ ! -d "$DATA" ] || [ -z "$(ls -A "$DATA" 2>/dev/null)" ]; then
        local gen=$SHARED_DIR/bench/gen-dataset.sh
        [ -f "$gen" ] || die "dataset $DATA missing and generator $gen not found (set SHARED_DIR)"
        note "generating the dataset in $DATA (takes a minute)"
        sh "$gen" "$DATA" || die "dataset generation failed"
    fi
    DATA=$(cd "$DATA" && pwd)
}
