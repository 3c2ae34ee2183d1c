#!/bin/bash
# check.sh - GPU handling against a real GPU: what tests/e2e/test_jobs.py
# proves with a stand-in nvidia-smi, run on a machine that has one.  Not
# part of the suite (CI machines have no GPU); run it where a GPU is.
#
#   tests/gpu/check.sh [DSTACK]      (default: build/cli/dstack)
#
# REPO=DIR uses a prepared repository (made by `check.sh --make-repo DIR`
# where git is) instead of making one.  Prints one line a check and exits
# non-zero if any failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)

workflows() {
	cat <<'YAML'
workflows:
  - name: none
    provider: bash
    commands:
      - echo "visible=[$CUDA_VISIBLE_DEVICES]"
      - python3 -c 'import torch; print("torch sees", torch.cuda.device_count())' 2>/dev/null || true
  - name: one
    provider: bash
    resources:
      gpu: 1
    commands:
      - echo "visible=[$CUDA_VISIBLE_DEVICES]"
      - nvidia-smi -L
      - python3 -c 'import torch; print("torch sees", torch.cuda.device_count(), torch.cuda.get_device_name(0))' 2>/dev/null || true
  - name: by-name
    provider: bash
    resources:
      gpu:
        name: H200
    commands:
      - echo "visible=[$CUDA_VISIBLE_DEVICES]"
  - name: by-memory
    provider: bash
    resources:
      gpu:
        memory: 100GB
    commands:
      - echo "visible=[$CUDA_VISIBLE_DEVICES]"
  - name: too-much-memory
    provider: bash
    resources:
      gpu:
        memory: 4000GB
    commands:
      - echo ran
  - name: other-name
    provider: bash
    resources:
      gpu:
        name: A100
    commands:
      - echo ran
  - name: too-many
    provider: bash
    resources:
      gpu: 64
    commands:
      - echo ran
  - name: share
    provider: two
YAML
}

# Two jobs asking the one GPU: the second waits for the first.
providers() {
	cat <<'YAML'
providers:
  - name: two
    commands:
      - |
        cat > "$DSTACK_JOBS" <<'JSON'
        [{"commands": ["echo a=[$CUDA_VISIBLE_DEVICES]", "sleep 2"], "resources": {"gpu": 1}},
         {"commands": ["echo b=[$CUDA_VISIBLE_DEVICES]", "sleep 2"], "resources": {"gpu": 1}}]
        JSON
YAML
}

if [ "${1:-}" = --make-repo ]; then
	mkdir -p "$2/.dstack" && workflows > "$2/.dstack/workflows.yaml" &&
		providers > "$2/.dstack/providers.yaml" &&
		git -C "$2" init -q && git -C "$2" add -A &&
		git -C "$2" -c user.name=check -c user.email=check@localhost commit -qm gpu
	exit
fi

dstack=$(realpath "${1:-$here/../../build/cli/dstack}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DSTACK_HOME=$work/home
repo=${REPO:-$work/repo}
[ -n "${REPO:-}" ] || "$0" --make-repo "$repo" || { echo "FAIL: cannot make a repository (git?)"; exit 1; }
cd "$repo" || exit 1
failed=0

check() {	# NAME WORKFLOW WANT-EXIT PATTERN
	out=$("$dstack" run "$2" 2>&1)
	code=$?
	if [ "$code" = "$3" ] && grep -Eq -- "$4" <<<"$out"; then
		echo "ok: $1"
	else
		echo "FAIL: $1 (exit $code)"; sed 's/^/    /' <<<"$out"; failed=1
	fi
}

echo "nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | paste -sd';')"
check "a job asking no GPU sees none" none 0 'visible=\[\]'
check "a job asking one gets GPU 0" one 0 'visible=\[0\]'
check "the job reaches it" one 0 'GPU 0: '
check "a GPU asked by name" by-name 0 'visible=\[0\]'
check "a GPU asked by memory" by-memory 0 'visible=\[0\]'
check "more GPU memory than any has is refused" too-much-memory 1 'asked, this host has 0 such'
check "a GPU of another name is refused" other-name 1 'named A100'
check "more GPUs than the host has are refused" too-many 1 '64 GPUs asked, this host has 1 such'
check "two jobs share the GPU in turn" share 0 'a=\[0\]'
run=$("$dstack" ps -a | awk 'NR == 2 { print $1 }')
if "$dstack" logs "$run" | grep -q 'waits for resources' && "$dstack" logs "$run" | grep -q 'b=\[0\]'; then
	echo "ok: the second waited for the first"
else
	echo "FAIL: the second did not wait for the first"; "$dstack" logs "$run" | sed 's/^/    /'; failed=1
fi
exit $failed
