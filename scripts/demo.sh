#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the UniPose demo, writing its outputs to outputs/demo/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/setup.sh"
cd "$root"
exec "$root/.venv/bin/unipose" demo --out "${UNIPOSE_DEMO_OUT:-outputs/demo}" "$@"
