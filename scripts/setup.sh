#!/usr/bin/env bash
# Installs the Debian packages lockstep builds against, only those missing.
# Idempotent; needs root (or sudo) for apt-get. Prints whether the NCCL/CUDA
# backend will be built (it is whenever nvcc is found).
set -euo pipefail
packages=(cmake ninja-build g++ pkg-config
  libgloo-dev libxxhash-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libbenchmark-dev libopenblas-dev clang-14 libclang-rt-14-dev
  redis-server libhiredis-dev)
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
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: nvcc found; the NCCL/CUDA backend will be built"
else
  echo "setup: no nvcc; the NCCL/CUDA backend is skipped"
fi
