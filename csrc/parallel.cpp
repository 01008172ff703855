#include "parallel.hpp"

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace fastmlp {
namespace {

// The per-thread settings are read by every kernel call: the initial-exec TLS model makes
// each read one load instead of a __tls_get_addr call (a few tiny TLS blocks, which glibc
// keeps room for in modules loaded later).
#if defined(__GNUC__)
#define FASTMLP_FAST_TLS __attribute__((tls_model("initial-exec")))
#else
#define FASTMLP_FAST_TLS
#endif

std::atomic<int> g_threads{0};
thread_local int tl_threads FASTMLP_FAST_TLS = 0;
std::atomic<bool> g_pool_started{false}, g_serial_after_fork{false};
std::atomic<int> g_last_team{1}, g_last_k_groups{1}, g_last_direct{0}, g_direct_override{0};
std::atomic<index> g_grain_override{0};
std::atomic<std::uint64_t> g_regions{0}, g_fused_act_backwards{0}, g_outputs_only_layers{0};
thread_local int tl_widest_team FASTMLP_FAST_TLS = 1;
thread_local TeamSeat tl_seat FASTMLP_FAST_TLS;

void on_fork_child() {
    if (g_pool_started) g_serial_after_fork = true;
}
struct AtFork {
    AtFork() { pthread_atfork(nullptr, nullptr, &on_fork_child); }
} g_atfork;

}  // namespace

int num_threads() {
    if (g_serial_after_fork || tl_seat.serial) return 1;
    if (tl_seat.team) return tl_seat.threads;
    int n = tl_threads > 0 ? tl_threads : g_threads.load();
#if defined(_OPENMP)
    if (n <= 0) n = omp_get_max_threads();
#else
    n = 1;
#endif
    if (n > 1) g_pool_started = true;
    return n < 1 ? 1 : n;
}

void set_num_threads(int n) { g_threads = n > 0 ? n : 0; }

int push_threads(int n) {
    const int previous = tl_threads;
    tl_threads = n > 0 ? n : 0;
    return previous;
}

void pop_threads(int previous) { tl_threads = previous; }
bool serial_after_fork() { return g_serial_after_fork; }

bool openmp_enabled() {
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

int last_team_size() { return g_last_team; }
void note_team_size(int n) {
    g_last_team = n;
    if (n > tl_widest_team) tl_widest_team = n;
}
int widest_team() { return tl_widest_team; }
void reset_widest_team() { tl_widest_team = 1; }
std::uint64_t parallel_regions() { return g_regions; }
void note_parallel_region() { g_regions.fetch_add(1, std::memory_order_relaxed); }
int last_gemm_k_groups() { return g_last_k_groups; }
void note_gemm_k_groups(int n) { g_last_k_groups = n; }
int last_gemm_direct() { return g_last_direct; }
void note_gemm_direct(int operands) { g_last_direct = operands; }
int gemm_direct_override() { return g_direct_override; }
void set_gemm_direct_override(int mode) { g_direct_override = mode; }
std::uint64_t fused_act_backwards() { return g_fused_act_backwards; }
void note_fused_act_backward() {
    if (tl_seat.id == 0) g_fused_act_backwards.fetch_add(1, std::memory_order_relaxed);
}
std::uint64_t outputs_only_layers() { return g_outputs_only_layers; }
void note_outputs_only_layer() { g_outputs_only_layers.fetch_add(1, std::memory_order_relaxed); }
void set_grain_override(index grain) { g_grain_override = grain > 0 ? grain : 0; }

int threads_for(index work, index grain) {
    const int n = num_threads();
    if (g_grain_override > 0) grain = g_grain_override;
    const index useful = work / (grain > 0 ? grain : 1);
    const int threads = useful < 2 ? 1 : (useful < n ? int(useful) : n);
    if (threads == 1) note_team_size(1);
    return threads;
}

// ---- teams ----

TeamSeat& team_seat() { return tl_seat; }

void team_barrier() {
    if (!tl_seat.team) return;
#pragma omp barrier
}

void leave_team(const TeamSeat& seat) {
    if (seat.id == 0) std::rethrow_exception(seat.team->error);
    throw TeamAborted{};
}

// Defined here, in baseline code: an inline definition would be instantiated (team_serial
// with its lambda) in every ISA's unit as a weak symbol, one of which the linker keeps.
char* team_buffer(TeamBuffer& buffer, std::size_t need) {
    if (buffer.bytes() < need) {
        team_barrier();
        team_serial([&] { buffer.reserve(need); });
    }
    return buffer.data();
}

TeamBuffer::~TeamBuffer() { std::free(data_); }

void TeamBuffer::reserve(std::size_t need) {
    if (need <= bytes_) return;
    std::free(data_);
    data_ = nullptr;
    bytes_ = 0;
    void* fresh = nullptr;
    if (posix_memalign(&fresh, 64, (need + 4095) / 4096 * 4096) != 0) throw std::bad_alloc();
    data_ = static_cast<char*>(fresh);
    bytes_ = (need + 4095) / 4096 * 4096;
}

}  // namespace fastmlp
