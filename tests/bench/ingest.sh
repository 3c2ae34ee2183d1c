#!/usr/bin/env bash
# Ingest benchmark (issue 2): dstack vs tar|lz4 -1, restic, borg (and git as a
# reference for unchanged re-ingest), side by side in one run.
#
# Usage: tests/bench/ingest.sh [DATASET_DIR] [WORK_DIR]
#   DATASET_DIR  default /var/tmp/bench/data; generated with
#                $SHARED_DIR/bench/gen-dataset.sh when missing or empty
#   WORK_DIR     default /var/tmp/bench/work; created, used for the stores,
#                and removed at the end (needs about 3 GB free)
# Environment:
#   DSTACK       the binary (default: build/cli/dstack in this repository)
#   SHARED_DIR   the shared folder (default: ../shared next to the repository)
#   SKIP_GIT=1   skip the optional git reference
#   GIT_TIMEOUT  seconds allowed for the git first ingest (default 120)
#   KEEP_WORK=1  keep WORK_DIR (stores and logs) at the end
#   REPEAT=N     run every ingest N times, round-robin with fresh stores, and
#                report the fastest attempt (peak RSS: the largest); default 1.
#                Use it on a shared machine: the minimum is the least disturbed.
#   NO_INSTALL=1 do not apt-get install missing peers (the script then stops,
#                naming them: every peer is needed here).
#
# Figures: wall seconds, MB/s (dataset bytes / wall, MB = 10^6 bytes), CPU
# seconds (user+sys of the process and its children), peak RSS (MiB, the
# largest single process), stored size (MB, `du -sb`). Every measured command
# starts after a `sync`; tar|lz4 includes a final `sync` in its time (dstack,
# restic and borg fsync their own writes).
set -euo pipefail

die() { echo "ingest.sh: error: $*" >&2; exit 1; }
note() { echo "ingest.sh: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$script_dir/lib.sh"
repo_root=$(cd "$script_dir/../.." && pwd)
DATA=${1:-/var/tmp/bench/data}
WORK=${2:-/var/tmp/bench/work}
DSTACK=${DSTACK:-$repo_root/build/cli/dstack}
SHARED_DIR=${SHARED_DIR:-$repo_root/../shared}
GIT_TIMEOUT=${GIT_TIMEOUT:-120}
REPEAT=${REPEAT:-1}
[ $# -le 2 ] || die "usage: $0 [DATASET_DIR] [WORK_DIR]"
case "$REPEAT" in ''|*[!0-9]*|0) die "REPEAT must be a positive integer";; esac

# ---- tools -----------------------------------------------------------------
[ -x "$DSTACK" ] || die "dstack binary not found at $DSTACK (build it: meson setup build && ninja -C build, or set DSTACK)"
[ -x /usr/bin/time ] || missing_time=1
pkgs=()
[ -z "${missing_time:-}" ] || pkgs+=(time)
command -v lz4 >/dev/null || pkgs+=(lz4)
command -v restic >/dev/null || pkgs+=(restic)
command -v borg >/dev/null || pkgs+=(borgbackup)
command -v tar >/dev/null || pkgs+=(tar)
install_peers ${pkgs[@]+"${pkgs[@]}"} || die "$install_note"
have_git=1
[ -z "${SKIP_GIT:-}" ] && command -v git >/dev/null || have_git=

# ---- dataset ---------------------------------------------------------------
dataset_ensure
read -r data_bytes data_files < <(find "$DATA" -type f -printf '%s\n' |
    awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }')
[ "$data_bytes" -gt 0 ] || die "dataset $DATA holds no data"

# ---- work dir --------------------------------------------------------------
marker=.dstack-ingest-bench
if [ -e "$WORK" ]; then
    [ -d "$WORK" ] || die "work dir $WORK exists and is not a folder"
    if [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/$marker" ]; then
        die "work dir $WORK is not empty and not ours; pick another one"
    fi
    rm -rf "$WORK"
fi
mkdir -p "$WORK" && touch "$WORK/$marker"
WORK=$(cd "$WORK" && pwd)
case "$WORK/" in "$DATA/"*) die "work dir must not be inside the dataset";; esac
cleanup() {
    if [ -n "${KEEP_WORK:-}" ]; then note "kept $WORK"; return; fi
    [ -e "$WORK/$marker" ] && rm -rf "$WORK"
}
trap cleanup EXIT
avail=$(df -PB1 "$WORK" | awk 'NR == 2 { print $4 }')
need=$(( data_bytes * 3 ))
[ "$avail" -ge "$need" ] || die "need about $((need / 1000000)) MB free in $WORK, have $((avail / 1000000)) MB"

# A private copy of the binary, so that a rebuild during the run changes nothing.
cp "$DSTACK" "$WORK/dstack-bin" || die "cannot copy $DSTACK to $WORK"
dstack_id="$(sha256sum "$WORK/dstack-bin" | cut -c1-12), mtime $(date -u -r "$DSTACK" +%H:%M:%SZ)"
DSTACK=$WORK/dstack-bin

# Tool state (caches, keys) stays inside WORK.
export DSTACK_HOME=$WORK/dstack
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$WORK/restic-cache
export BORG_REPO=$WORK/borg BORG_BASE_DIR=$WORK/borg-base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES
export GIT_DIR=$WORK/git.git GIT_WORK_TREE=$DATA
export GIT_CONFIG_NOSYSTEM=1 HOME=$WORK/home
mkdir -p "$HOME"
gitc=(git -c safe.directory='*' -c user.name=bench -c user.email=bench@localhost
      -c core.autocrlf=false -c gc.auto=0)

# ---- measuring -------------------------------------------------------------
# measure KEY TIMEOUT CMD...: sync, run CMD under /usr/bin/time and fold the
# attempt into W/C/R/S[KEY] (see record). Returns CMD's status (124: timed out).
# With REPEAT > 1 the fastest attempt gives wall, CPU and size; peak RSS is
# the largest over all attempts; ALL[KEY] lists every attempt's wall.
declare -A W C R S ALL
measure() {
    local key=$1 limit=$2; shift 2
    local log=$WORK/$key.log tf=$WORK/$key.time rc=0
    sync
    if [ "$limit" -gt 0 ]; then
        timeout "$limit" /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    else
        /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        note "$key: '$*' failed (exit $rc); last lines of its output:"
        tail -n 5 "$log" >&2 || true
        return "$rc"
    fi
    local e u s m c r
    read -r e u s m < <(tail -n 1 "$tf")
    c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", u + s }')
    r=$(awk -v m="$m" 'BEGIN { printf "%.0f", m / 1024 }')
    note "$(printf 'round %d  %-11s %7.2f s  cpu %6s s  rss %5s MiB' "$round" "$key" "$e" "$c" "$r")"
    ALL[$key]="${ALL[$key]:+${ALL[$key]} }$e"
    if [ -z "${W[$key]:-}" ] || awk -v a="$e" -v b="${W[$key]}" 'BEGIN { exit !(a < b) }'; then
        W[$key]=$e C[$key]=$c best=1
    else
        best=
    fi
    [ -n "${R[$key]:-}" ] && [ "${R[$key]}" -ge "$r" ] || R[$key]=$r
}
# record KEY PATH...: stored size of the attempt just measured, if it was the best.
record() { local key=$1; shift; [ -z "$best" ] || S[$key]=$(size_mb "$@"); }
size_mb() { du -sb "$@" | awk '{ s += $1 } END { printf "%.0f", s / 1e6 }'; }

note "dataset $DATA: $data_files files, $(awk -v b="$data_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB; work $WORK; $REPEAT round(s)"
note "warming the page cache"
# (GNU tar skips reading file data when the archive is /dev/null itself.)
tar -cf - -C "$DATA" . | cat >/dev/null

git_ok=
for (( round = 1; round <= REPEAT; round++ )); do
    rm -rf "$DSTACK_HOME" "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$BORG_REPO" "$BORG_BASE_DIR"

    # First ingest, fresh stores.
    measure dstack 0 "$DSTACK" tags add bench1 -a "$DATA" || die "dstack tags add failed"
    record dstack "$DSTACK_HOME"

    # shellcheck disable=SC2016  # expanded by the inner shell
    measure tarlz4 0 bash -o pipefail -c 'tar -cf - -C "$1" . | lz4 -1 -q > "$2" && sync' \
        _ "$DATA" "$WORK/data.tar.lz4" || die "tar | lz4 failed"
    record tarlz4 "$WORK/data.tar.lz4"
    rm -f "$WORK/data.tar.lz4"

    restic init -q >"$WORK/restic-init.log" 2>&1 || die "restic init failed: $(tail -n 1 "$WORK/restic-init.log")"
    measure restic 0 restic backup -q "$DATA" || die "restic backup failed"
    record restic "$RESTIC_REPOSITORY"

    borg init -e none >"$WORK/borg-init.log" 2>&1 || die "borg init failed: $(tail -n 1 "$WORK/borg-init.log")"
    measure borg 0 borg create --compression lz4 ::a1 "$DATA" || die "borg create failed"
    record borg "$BORG_REPO"

    # git, a reference for the stat index only: its first ingest runs once.
    if [ "$round" -eq 1 ] && [ -n "$have_git" ]; then
        "${gitc[@]}" init -q >"$WORK/git-init.log" 2>&1 || die "git init failed"
        # shellcheck disable=SC2016
        if measure git "$GIT_TIMEOUT" bash -c '"$@" add -A && "$@" commit -q -m bench' _ "${gitc[@]}"; then
            record git "$GIT_DIR"
            git_ok=1
        else
            note "git reference skipped (failed or over ${GIT_TIMEOUT}s)"
        fi
    fi

    # Unchanged re-ingest of the same folder.
    # Their S[] is the growth of the store.
    pre=$(size_mb "$DSTACK_HOME")
    measure dstack_re 0 "$DSTACK" tags add bench2 -a "$DATA" || die "dstack re-ingest failed"
    record dstack_re "$DSTACK_HOME"
    [ -z "$best" ] || S[dstack_re]=$(( S[dstack_re] - pre ))
    pre=$(size_mb "$RESTIC_REPOSITORY")
    measure restic_re 0 restic backup -q "$DATA" || die "restic second backup failed"
    record restic_re "$RESTIC_REPOSITORY"
    [ -z "$best" ] || S[restic_re]=$(( S[restic_re] - pre ))
    pre=$(size_mb "$BORG_REPO")
    measure borg_re 0 borg create --compression lz4 ::a2 "$DATA" || die "borg second create failed"
    record borg_re "$BORG_REPO"
    [ -z "$best" ] || S[borg_re]=$(( S[borg_re] - pre ))
    # git's stat-index check (the PEERS.md 0.19 s), then a second `git add -A`.
    if [ -n "$git_ok" ]; then
        measure git_status 60 "${gitc[@]}" status --porcelain || git_ok=
    fi
    if [ -n "$git_ok" ]; then
        measure git_re 60 "${gitc[@]}" add -A || git_ok=
    fi
done

# ---- report ----------------------------------------------------------------
mbs() { awk -v b="$data_bytes" -v w="$1" 'BEGIN { printf "%.0f", (w > 0 ? b / 1e6 / w : 0) }'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f, (b > 0 ? a / b : 0) }'; }
row() { # NAME KEY [RE_KEY]
    local k=$2 re="–"
    [ -z "${3:-}" ] || re="${W[$3]} s"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "${W[$k]}" "$(mbs "${W[$k]}")" \
        "${C[$k]}" "$(div "${C[$k]}" "${W[$k]}" %.1f)" "${R[$k]}" "${S[$k]}" "$re"
}
model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
rev=$(env -u GIT_DIR -u GIT_WORK_TREE git -C "$repo_root" describe --always --dirty 2>/dev/null || echo '?')
echo "$("$DSTACK" --version 2>/dev/null | head -n 1) (source $rev; binary sha256 $dstack_id), $(nproc) cores ($model), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "dataset: $DATA, $data_files files, $(awk -v b="$data_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB"
echo
echo "| tool | wall s | MB/s | CPU s | cores busy | peak RSS MiB | stored MB | unchanged re-ingest |"
echo "|---|---|---|---|---|---|---|---|"
row "dstack tags add" dstack dstack_re
row "tar \| lz4 -1 (+ sync)" tarlz4
row "restic $(restic version | awk '{ print $2 }') backup" restic restic_re
row "borg $(borg --version | awk '{ print $2 }') create --compression lz4" borg borg_re
[ -z "$git_ok" ] || row "git add -A + commit (reference)" git git_status
echo
echo "| unchanged re-ingest | wall s | CPU s | peak RSS MiB | store growth MB |"
echo "|---|---|---|---|---|"
for k in dstack restic borg; do
    printf '| %s | %s | %s | %s | %s |\n' "$k" "${W[${k}_re]}" "${C[${k}_re]}" "${R[${k}_re]}" \
        "${S[${k}_re]}"
done
if [ -n "$git_ok" ]; then
    printf '| git add -A (stat index) | %s | %s | %s | – |\n' "${W[git_re]}" "${C[git_re]}" "${R[git_re]}"
    printf '| git status --porcelain | %s | %s | %s | – |\n' "${W[git_status]}" "${C[git_status]}" "${R[git_status]}"
fi
if [ "$REPEAT" -gt 1 ]; then
    echo
    echo "Every attempt's wall seconds ($REPEAT rounds; the tables show the fastest):"
    for k in dstack tarlz4 restic borg git dstack_re restic_re borg_re git_status git_re; do
        [ -z "${ALL[$k]:-}" ] || echo "- $k: ${ALL[$k]}"
    done
fi

# Ratios and goals. Speed ratios are ratios of wall times (same bytes).
sp_tar=$(div "${W[tarlz4]}" "${W[dstack]}")
sp_restic=$(div "${W[restic]}" "${W[dstack]}")
sp_borg=$(div "${W[borg]}" "${W[dstack]}")
sz_tar=$(div "${S[dstack]}" "${S[tarlz4]}" %.3f)
git_ref=0.19 git_src="PEERS.md"
if [ -n "$git_ok" ]; then git_ref=${W[git_status]} git_src="git status, measured"; fi
rss_max=${R[dstack]}
[ "${R[dstack_re]}" -le "$rss_max" ] || rss_max=${R[dstack_re]}
verdict() { awk "BEGIN { exit !($1) }" && echo "met" || echo "NOT met"; }
echo
echo "Ratios:"
echo "- first ingest speed: dstack / tar|lz4 = ${sp_tar}x, dstack / restic = ${sp_restic}x, dstack / borg = ${sp_borg}x"
echo "- unchanged re-ingest: dstack ${W[dstack_re]} s vs restic ${W[restic_re]} s ($(div "${W[restic_re]}" "${W[dstack_re]}" %.1f)x faster), borg ${W[borg_re]} s ($(div "${W[borg_re]}" "${W[dstack_re]}" %.1f)x faster), git $git_ref s ($git_src; dstack/git = $(div "${W[dstack_re]}" "$git_ref")x)"
echo "- stored size: dstack / tar|lz4 = $sz_tar (${S[dstack]} MB vs ${S[tarlz4]} MB)"
echo
echo "Goals (issue 2):"
echo "- first ingest >= 1.5x tar|lz4: ${sp_tar}x, $(verdict "$sp_tar >= 1.5")"
echo "- first ingest >= 4x restic: ${sp_restic}x, $(verdict "$sp_restic >= 4")"
echo "- unchanged re-ingest as fast as git's stat index ($git_ref s, $git_src; allowing 25% noise): ${W[dstack_re]} s, $(verdict "${W[dstack_re]} <= 1.25 * $git_ref")"
echo "  (against PEERS.md's git figure, 0.19 s: $(verdict "${W[dstack_re]} <= 1.25 * 0.19"))"
echo "- stored size <= tar|lz4: $sz_tar, $(verdict "${S[dstack]} <= ${S[tarlz4]}")"
echo "- peak RSS < 100 MiB: $rss_max MiB, $(verdict "$rss_max < 100")"
