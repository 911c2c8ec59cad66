#include "services/build_features.h"

namespace weightd {

BuildFeatures CompiledFeatures() {
  BuildFeatures features;
#ifdef WEIGHTD_HAVE_CUDA
  features.cuda = true;
#endif
#ifdef WEIGHTD_HAVE_NCCL
  features.nccl = true;
#endif
  return features;
}

}  // namespace weightd
