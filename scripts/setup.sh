#!/usr/bin/env bash
# Installs the Debian packages lockstep builds against, only those missing.
# Idempotent; needs root (or sudo) for apt-get. Prints whether the NCCL/CUDA
# backend will be built (it is whenever nvcc is found).
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config
  libgloo-dev libxxhash-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libbenchmark-dev libopenblas-dev clang-14 libclang-rt-14-dev
  redis-server libhiredis-dev
  python3-dev pybind11-dev python3-numpy python3-torch)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Python package: built by CMake into build/default/python, for the
# interpreter that has torch (Debian's torch is importable from
# /usr/bin/python3; the first python3 on PATH may be another install). A .pth
# file in that interpreter's site directory makes `import lockstep` work
# there once the package is built.
python=""
for candidate in "${LOCKSTEP_PYTHON:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
  [[ -n "$candidate" && -x "$candidate" ]] || continue
  if "$candidate" -c 'import torch' >/dev/null 2>&1; then python="$candidate"; break; fi
done
if [[ -n "$python" ]]; then
  site="$("$python" -c 'import site; print(site.getsitepackages()[0])')"
  repo="$(cd "$(dirname "$0")/.." && pwd)"
  pth_cmd=()
  [[ $(id -u) -eq 0 || -w "$site" ]] || pth_cmd=(sudo)
  "${pth_cmd[@]}" mkdir -p "$site"
  echo "$repo/build/default/python" | "${pth_cmd[@]}" tee "$site/lockstep.pth" >/dev/null
  echo "setup: lockstep's Python package is for $python (import lockstep after the build)"
else
  echo "setup: no Python with torch found; the lockstep Python package is not set up"
fi
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: nvcc found; the NCCL/CUDA backend will be built"
else
  echo "setup: no nvcc; the NCCL/CUDA backend is skipped"
fi
