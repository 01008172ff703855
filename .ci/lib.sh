# Sourced by the CI stage scripts (.ci/sanitize, .ci/isa, .ci/qemu, .ci/wheel); not run on its own.
# Gives each stage: strict mode, the repo root as working directory, its own work directory
# .ci-work/<stage> (recreated), a time budget that bounds every long step and is reported at
# the end, and the venv/pytest helpers the stages share.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# The CI pytest plugin (.ci/fastmlp_ci_plugin.py) is found through PYTHONPATH; .ci holds no
# other Python module, so nothing else becomes importable.
export PYTHONPATH="$REPO/.ci${PYTHONPATH:+:$PYTHONPATH}"

stage_start() {  # NAME BUDGET_SECONDS
    STAGE=$1 BUDGET=$2
    WORK="$REPO/.ci-work/$STAGE"
    rm -rf "$WORK" && mkdir -p "$WORK"
    STAGE_TEMP=()  # paths outside the work directory, removed at the end
    SECONDS=0
    trap stage_end EXIT
    echo "== $STAGE: budget ${BUDGET}s, work directory .ci-work/$STAGE"
}

stage_end() {  # the EXIT trap: the verdict, the elapsed time and the budget on one line
    local rc=$?
    [ "${#STAGE_TEMP[@]}" -eq 0 ] || rm -rf "${STAGE_TEMP[@]}"
    if [ "$rc" -eq 0 ] && [ "$SECONDS" -gt "$BUDGET" ]; then
        echo "FAIL ($STAGE): took ${SECONDS}s, over its budget of ${BUDGET}s" >&2
        rc=1
    fi
    echo "== $STAGE: $([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (rc=$rc)") in ${SECONDS}s (budget ${BUDGET}s)"
    exit "$rc"
}

step() { echo "-- [${SECONDS}s] $*"; }
fail() { echo "FAIL ($STAGE): $*" >&2; exit 1; }

bounded() {  # run "$@" with the rest of the stage's budget as a hard limit (rc 124 when hit)
    local left=$((BUDGET - SECONDS))
    [ "$left" -gt 0 ] || fail "no time left in the budget for: $*"
    timeout --kill-after=15 "$left" "$@"
}

make_venv() {  # DIR PACKAGE...: a fresh venv with the given packages (pip's defaults apply)
    local dir=$1; shift
    python3 -m venv "$dir"
    [ "$#" -eq 0 ] || bounded "$dir/bin/pip" install -q "$@"
}

expect_installed_in() {  # PYTHON DIR: fastmlp and its _core must be imported from under DIR
    "$1" -c 'import sys, fastmlp_ci_plugin as p; print("fastmlp imported from", p.imported_from(sys.argv[1]))' "$2"
}

run_pytest() {  # LOG PYTHON PYTEST-ARGS...: pytest with the CI plugin, output also in LOG;
    # RUN_UNDER, when set, is the command line PYTHON runs under (an emulator)
    local log=$1 python=$2; shift 2
    local under
    read -r -a under <<< "${RUN_UNDER:-}"
    bounded "${under[@]}" "$python" -m pytest -p fastmlp_ci_plugin -p no:cacheprovider -q "$@" 2>&1 | tee "$log"
}
