// fastmlp._core.WeightsLock and SigintWatch (guard_bindings.hpp).
#include "guard_bindings.hpp"

#include "register.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

using train::WeightsLock;

// Takes the lock (exclusive or shared) without the GIL when it has to wait: its holder
// may need the GIL to finish.
template <void (WeightsLock::*Lock)(), bool (WeightsLock::*TryLock)()>
void acquire(WeightsLock& lock) {
    if ((lock.*TryLock)()) return;
    py::gil_scoped_release nogil;
    (lock.*Lock)();
}

}  // namespace

void register_guards(py::module_& m) {
    py::class_<WeightsLock, LockPtr>(m, "WeightsLock",
                                      "A model's readers/writer lock over its weights (train/weights_lock.hpp)")
        .def(py::init<>())
        .def("lock", &acquire<&WeightsLock::lock, &WeightsLock::try_lock>)
        .def("unlock", &WeightsLock::unlock)
        .def("lock_shared", &acquire<&WeightsLock::lock_shared, &WeightsLock::try_lock_shared>)
        .def("unlock_shared", &WeightsLock::unlock_shared);

    py::class_<PyWatch>(m, "SigintWatch", "SIGINT sets a flag fused runs read (train/interrupt.hpp); close() ends it")
        .def(py::init<>())
        .def_property_readonly("installed", &PyWatch::installed)
        .def("close", &PyWatch::close);
}

}}  // namespace fastmlp::bind
