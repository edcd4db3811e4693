# Sourced by the device scripts: unpacks the carried Debian .deb files (Gloo,
# xxhash, hiredis, ibverbs; see device_gpu_check.sh for how to fetch them)
# into /usr, then configures build/gpu for Hopper. Sets `out` (logs; $OUT on
# the device machine) and keeps NVLink multicast off.
out="${OUT:-$PWD/device-out}"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
unpacked="$(mktemp -d)"
for deb in .device/debs/*.deb; do dpkg -x "$deb" "$unpacked"; done
# pkg-config only where the machine lacks it (CMake's FindPkgConfig needs it).
if ! command -v pkg-config >/dev/null; then for deb in .device/extra/*.deb; do dpkg -x "$deb" "$unpacked"; done; fi
cp -a "$unpacked/usr/." /usr/
if [[ -d "$unpacked/lib" ]]; then cp -a "$unpacked/lib/." /usr/lib/; fi
ldconfig
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DLOCKSTEP_BUILD_BENCH="${LOCKSTEP_BUILD_BENCH:-OFF}" > "$out/configure.log" 2>&1 \
  || { tail -40 "$out/configure.log"; exit 1; }
