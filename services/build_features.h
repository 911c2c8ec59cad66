// What this build of weightd was compiled with: the CUDA backend, and NCCL for its
// collectives (without NCCL, a load over several GPUs copies through the host).
// weightd_build_info and the `ready` log line report them.
// Thread-safe (constants).
#pragma once

namespace weightd {

struct BuildFeatures {
  bool cuda = false;
  bool nccl = false;
};

// From WEIGHTD_HAVE_CUDA and WEIGHTD_HAVE_NCCL, which CMake defines for the
// weightd_cuda target and its users when it finds nvcc and NCCL.
BuildFeatures CompiledFeatures();

}  // namespace weightd
