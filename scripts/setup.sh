#!/usr/bin/env bash
# Creates the virtual environment at .venv (if missing), installs the CPU build of torch first, then
# the project with all its extras. Idempotent: it reinstalls only when pyproject.toml has changed.
# Source it (`. scripts/setup.sh`) or run it; afterwards `.venv/bin/python` has everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
torch_spec="${UNIPOSE_TORCH_SPEC:-torch==2.13.0}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.unipose-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -c1-16) $torch_spec"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$py" -m pip install --quiet --upgrade pip
  # torch before anything else: a plain `torch` requirement with no torch present would pull a CUDA build.
  "$py" -c "import torch" 2>/dev/null || "$py" -m pip install --quiet "$torch_spec"
  "$py" -m pip install --quiet -e "$root[all]"
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
