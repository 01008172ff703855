// What guards a model's weights and its fused runs, as the Trainer and Predictor bindings
// take them: the model's WeightsLock (train/weights_lock.hpp) and the SigintWatch
// (train/interrupt.hpp). register_guards (guard_bindings.cpp) binds both classes.
#pragma once
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <optional>

#include "../train/interrupt.hpp"
#include "../train/weights_lock.hpp"

namespace fastmlp { namespace bind {

using LockPtr = std::shared_ptr<train::WeightsLock>;

// The lock a trainer or predictor is given: the model's, or a new one for None.
inline LockPtr lock_or_new(const pybind11::object& lock) {
    return lock.is_none() ? std::make_shared<train::WeightsLock>() : lock.cast<LockPtr>();
}

// fastmlp._core.SigintWatch: a train::SigintWatch the caller ends with close().
class PyWatch {
public:
    PyWatch() : watch_(std::in_place) {}
    bool installed() const { return flag() != nullptr; }
    const std::atomic<bool>* flag() const { return watch_ ? watch_->flag() : nullptr; }
    void close() { watch_.reset(); }

private:
    std::optional<train::SigintWatch> watch_;
};

}}  // namespace fastmlp::bind
