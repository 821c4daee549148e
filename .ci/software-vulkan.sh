#!/usr/bin/env bash
# A software Vulkan device for testing the webgpu path without a GPU: ONNX Runtime's WebGPU EP (Dawn)
# needs Vulkan, and Debian 12's own Mesa (22) is too old for Dawn, so this unpacks Mesa's lavapipe
# driver from bookworm-backports into a private folder (nothing is installed system-wide besides the
# Vulkan loader) and prints the environment that points the loader at it.
#   eval "$(bash .ci/software-vulkan.sh)"      # root; Debian's package mirror must be reachable
# Only the two `export` lines go to stdout; progress goes to stderr.
set -euo pipefail
dir=${NDP_SOFTWARE_VULKAN_DIR:-/tmp/ndp-software-vulkan}
icd="$dir/lavapipe-icd.json"
if [ ! -s "$icd" ]; then
  mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/root"
  echo "deb http://deb.debian.org/debian bookworm-backports main" > "$dir/apt/sources.list"
  # A private apt state: the system's sources and lists stay untouched.
  apt_private=(-o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache")
  dpkg -s libvulkan1 >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 >&2
  apt-get "${apt_private[@]}" update -qq >&2
  (cd "$dir" && apt-get "${apt_private[@]}" download mesa-vulkan-drivers/bookworm-backports >&2)
  dpkg-deb -x "$dir"/mesa-vulkan-drivers_*.deb "$dir/root"
  driver="$dir/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
  [ -f "$driver" ] || { echo "lavapipe driver not found in the package" >&2; exit 1; }
  # The packaged ICD manifest names the driver by its installed path; point it at the unpacked one.
  sed "s|\"library_path\": \"[^\"]*\"|\"library_path\": \"$driver\"|" "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$icd"
fi
mkdir -p "$dir/runtime"
echo "export VK_ICD_FILENAMES=$icd"
echo "export XDG_RUNTIME_DIR=$dir/runtime"
