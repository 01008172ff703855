// Thread policy, teams and parallel_for (baseline code only; the GEMM driver runs its own
// regions with the count given here, or works in the caller's team).
//
// Threads for the next call, highest priority first: `with fastmlp.threads(n)` in the
// calling thread (push_threads), fastmlp.set_num_threads(n), then OpenMP's own value
// (OMP_NUM_THREADS, or threadpoolctl's limit in the calling thread). After a fork() in a
// process whose OpenMP pool had started, everything runs on one thread: libgomp's pool
// does not exist in the child and its first parallel region would hang (docs/build-notes.md, Threads).
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>

#include "common.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fastmlp {

int num_threads();
void set_num_threads(int n);     // n <= 0: back to OpenMP's default
int push_threads(int n);         // returns the previous thread-local override
void pop_threads(int previous);
bool serial_after_fork();
bool openmp_enabled();
int last_team_size();            // threads that ran the latest parallel region (tests)
void note_team_size(int n);
int last_gemm_k_groups();        // K groups of the latest GEMM (gemm.hpp, the K split; 1: none)
void note_gemm_k_groups(int n);
int last_gemm_direct();          // operands the latest GEMM read in place (gemm.hpp: mask 1 B, 2 A)
void note_gemm_direct(int operands);
int gemm_direct_override();      // tests: a mask (1 B, 2 A) forced in place where possible, < 0 none, 0 the rules
void set_gemm_direct_override(int mode);
std::uint64_t fused_act_backwards(); // gemm_act_backward calls so far (ops.hpp; a team's counts once)
void note_fused_act_backward();
std::uint64_t outputs_only_layers();  // layers keep_outputs_only rewrote so far (program.hpp)
void note_outputs_only_layer();

// Threads worth using for `work` units when each thread should get at least `grain`.
int threads_for(index work, index grain);
// Tests: every grain threads_for is given replaced by `grain` (<= 0: the kernels' own), so
// small products and arrays run on as many threads as asked for.
void set_grain_override(index grain);

// ---- Teams: one parallel region around a run of training steps (SPMD) ----
//
// The trainer opens one region for a run of steps (train/trainer.cpp) and every thread of
// it calls the same kernels with the same arguments; a kernel then work-shares over the
// team instead of opening a region of its own: parallel_for runs the chunks a region of
// its thread count would run, the GEMM driver its work items, then both wait at a barrier
// (an orphaned `omp barrier`, bound to the trainer's region). Serial parts run on the
// leader (thread 0) between barriers (team_serial), so shared state has one writer and
// every thread takes the same branches, decided from values read after a barrier.
// Outside a team every function here is the plain serial or forking code.
//
// Exceptions: team_serial catches the leader's, every thread leaves at its barrier (the
// leader rethrowing it, the others TeamAborted) and the region rethrows it after the join.
// Code that runs on every thread may throw only where every thread throws (a check of
// shared data); shared buffers grow on the leader between barriers (team_buffer).

// A growable 64-byte aligned buffer a team shares; contents are not kept when it grows.
class TeamBuffer {
public:
    TeamBuffer() = default;
    ~TeamBuffer();
    TeamBuffer(const TeamBuffer&) = delete;
    TeamBuffer& operator=(const TeamBuffer&) = delete;
    char* data() const { return data_; }
    std::size_t bytes() const { return bytes_; }
    void reserve(std::size_t need);   // throws std::bad_alloc

private:
    char* data_ = nullptr;
    std::size_t bytes_ = 0;
};

// What the team's threads share: the GEMM's packing slots and K-split accumulators, the
// reductions' partial sums, a pointer the leader publishes in team_serial for the others
// to read after it, the first exception.
struct Team {
    TeamBuffer gemm, partials;
    const void* published = nullptr;
    std::exception_ptr error;
};

// Thrown by the threads that leave a team because another one failed.
struct TeamAborted {};

// The calling thread's place in a team: team null outside one (and on the leader inside
// team_serial, which also makes num_threads() 1 there). num_threads() in a team is the
// caller's count (`threads`, its thread-local setting included), the same on every thread.
struct TeamSeat {
    Team* team = nullptr;
    int id = 0, size = 1, threads = 1;
    bool serial = false;
};
TeamSeat& team_seat();
void team_barrier();                  // every thread of the team; nothing outside one
[[noreturn]] void leave_team(const TeamSeat& seat);   // after a failure in team_serial
std::uint64_t parallel_regions();     // regions opened so far by this library (tests)
void note_parallel_region();
int widest_team();                    // widest team noted on this thread since reset
void reset_widest_team();

inline Team* current_team() { return team_seat().team; }
inline bool team_leader() { const TeamSeat& s = team_seat(); return !s.team || s.id == 0; }

// Joins the calling thread to `team` as thread `id` of `size` for its lifetime; `threads`:
// num_threads() of the thread that opened the region.
class TeamMember {
public:
    TeamMember(Team& team, int id, int size, int threads) : saved_(team_seat()) {
        team_seat() = TeamSeat{&team, id, size, threads, false};
    }
    ~TeamMember() { team_seat() = saved_; }
    TeamMember(const TeamMember&) = delete;
    TeamMember& operator=(const TeamMember&) = delete;

private:
    TeamSeat saved_;
};

// f() once: outside a team on the calling thread; inside, on the leader (seeing no team:
// the kernels it calls run serially) while the others wait at the barrier after it.
template <class F>
void team_serial(F f) {
    TeamSeat& seat = team_seat();
    if (!seat.team) {
        f();
        return;
    }
    Team& team = *seat.team;
    if (seat.id == 0) {
        const TeamSeat saved = seat;
        seat = TeamSeat{nullptr, 0, 1, 1, true};
        try {
            f();
        } catch (...) {
            team.error = std::current_exception();
        }
        seat = saved;
    }
    team_barrier();
    if (team.error) leave_team(seat);
}

// `buffer` with at least `need` bytes; every thread of the team asks for the same size, and
// when it is short the leader grows it between two barriers.
char* team_buffer(TeamBuffer& buffer, std::size_t need);

// This thread's number in the innermost parallel region and the region's size (0 and 1
// outside one, or without OpenMP).
struct RegionSeat {
    int id = 0, size = 1;
};
inline RegionSeat region_seat() {
    RegionSeat seat;
#if defined(_OPENMP)
    seat.id = omp_get_thread_num();
    seat.size = omp_get_num_threads();
#endif
    return seat;
}

// f(begin, end) over [0, n) split into contiguous static chunks, one per thread. The split
// changes with the thread count, so f must produce results that do not depend on it.
// Inside a team, threads t < min(threads, team) run the chunks such a region would, then
// the whole team meets at a barrier.
template <class F>
void parallel_for(index n, int threads, F f) {
    const TeamSeat& seat = team_seat();
    if (seat.team) {
        const int nt = n <= 1 ? 1 : std::max(1, std::min(threads, seat.size));
        if (seat.id == 0) note_team_size(nt);
        if (seat.id < nt) {
            const index begin = n * seat.id / nt, end = n * (seat.id + 1) / nt;
            if (begin < end) f(begin, end);
        }
        return team_barrier();
    }
    if (threads <= 1 || n <= 1) {
        note_team_size(1);
        f(index(0), n);
        return;
    }
    note_parallel_region();
    #pragma omp parallel num_threads(threads)
    {
        const auto [t, nt] = region_seat();
        if (t == 0) note_team_size(nt);
        const index begin = n * t / nt, end = n * (t + 1) / nt;
        if (begin < end) f(begin, end);
    }
}

}  // namespace fastmlp
