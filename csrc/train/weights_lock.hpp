// One model's readers/writer lock over its weights, shared by everything that writes or
// reads them from another thread: the fused trainer holds it exclusively around each step
// (so the weights are only ever seen at step boundaries), a fused predictor shared while
// it snapshots them, and the per-op paths through the native backend's Python binding.
#pragma once
#include <shared_mutex>

namespace fastmlp { namespace train {

using WeightsLock = std::shared_mutex;

}}  // namespace fastmlp::train
