// SigintWatch (interrupt.hpp): a chaining C-level SIGINT handler.
#include "interrupt.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <signal.h>
#define FASTMLP_SIGACTION 1
#endif

namespace fastmlp { namespace train {

namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<bool> g_active{false};     // a watch is installed

#ifdef FASTMLP_SIGACTION
struct sigaction g_previous;

bool is_function(const struct sigaction& a) {
    if (a.sa_flags & SA_SIGINFO) return a.sa_sigaction != nullptr;
    return a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN;
}

// Async-signal-safe: a lock-free atomic store, then the previous handler.
void on_sigint(int sig, siginfo_t* info, void* context) {
    g_interrupted.store(true, std::memory_order_relaxed);
    if (g_previous.sa_flags & SA_SIGINFO) g_previous.sa_sigaction(sig, info, context);
    else g_previous.sa_handler(sig);
}

bool install() {
    struct sigaction current;
    if (sigaction(SIGINT, nullptr, &current) != 0 || !is_function(current)) return false;
    g_previous = current;
    struct sigaction mine = {};
    mine.sa_sigaction = on_sigint;
    mine.sa_flags = SA_SIGINFO | (current.sa_flags & (SA_ONSTACK | SA_RESTART));   // as Python's
    mine.sa_mask = current.sa_mask;
    return sigaction(SIGINT, &mine, nullptr) == 0;
}

void restore() { sigaction(SIGINT, &g_previous, nullptr); }
#else
bool install() { return false; }
void restore() {}
#endif

}  // namespace

SigintWatch::SigintWatch() {
    bool expected = false;
    if (!g_active.compare_exchange_strong(expected, true)) return;
    g_interrupted.store(false);
    installed_ = install();
    if (!installed_) g_active.store(false);
}

SigintWatch::~SigintWatch() {
    if (!installed_) return;
    restore();
    g_active.store(false);
}

const std::atomic<bool>* SigintWatch::flag() const { return installed_ ? &g_interrupted : nullptr; }

}}  // namespace fastmlp::train
