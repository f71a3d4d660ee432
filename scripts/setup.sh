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
# transformers' common model, config and processor tests (tests/test_transformers_common.py): its wheel ships no
# tests, its source distribution does. They are taken from the source distribution of the installed version, once.
transformers_version="$("$py" -c 'import transformers; print(transformers.__version__)')"
common_tests="$venv/transformers-tests/$transformers_version"
if [ ! -f "$common_tests/test_processing_common.py" ]; then
  download="$(mktemp -d)"
  "$py" -m pip download --quiet --no-deps --no-binary :all: "transformers==$transformers_version" -d "$download"
  mkdir -p "$common_tests.partial"
  tar -xzf "$download/transformers-$transformers_version.tar.gz" -C "$common_tests.partial" --strip-components=2 \
    "transformers-$transformers_version/tests/test_modeling_common.py" \
    "transformers-$transformers_version/tests/test_configuration_common.py" \
    "transformers-$transformers_version/tests/test_processing_common.py"
  touch "$common_tests.partial/__init__.py"
  rm -rf "$download" "$common_tests" && mv "$common_tests.partial" "$common_tests"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
