// Ctrl-C inside a long GIL-released run. Python runs its SIGINT handler only between
// bytecodes of the main thread, which a fused epoch keeps inside C++ for seconds; so while
// a SigintWatch lives, a C-level handler sets a flag the trainer reads once per step (a
// relaxed atomic load) and then calls the handler it replaced (Python's, which records
// the signal for the interpreter, so Python's own handler still runs afterwards). The
// previous handler is put back when the watch ends.
//
// One watch at a time, process-wide (signal handlers are): a watch created while another
// is active, or while SIGINT is ignored or at its default action (which ends the process
// anyway), installs nothing and its flag() is null. Not available on Windows (flag() null).
#pragma once
#include <atomic>

namespace fastmlp { namespace train {

class SigintWatch {
public:
    SigintWatch();     // clears the flag and installs the handler (see above)
    ~SigintWatch();    // restores the previous handler
    SigintWatch(const SigintWatch&) = delete;
    SigintWatch& operator=(const SigintWatch&) = delete;

    // The flag SIGINT sets while this watch is installed, or null when it is not.
    const std::atomic<bool>* flag() const;

private:
    bool installed_ = false;
};

}}  // namespace fastmlp::train
