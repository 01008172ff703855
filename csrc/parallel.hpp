// Thread policy and parallel_for (baseline code only; the GEMM driver runs its own regions
// with the count given here).
//
// Threads for the next call, highest priority first: `with fastmlp.threads(n)` in the
// calling thread (push_threads), fastmlp.set_num_threads(n), then OpenMP's own value
// (OMP_NUM_THREADS, or threadpoolctl's limit in the calling thread). After a fork() in a
// process whose OpenMP pool had started, everything runs on one thread: libgomp's pool
// does not exist in the child and its first parallel region would hang (docs/build-notes.md, Threads).
#pragma once
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

// Threads worth using for `work` units when each thread should get at least `grain`.
int threads_for(index work, index grain);
// Tests: every grain threads_for is given replaced by `grain` (<= 0: the kernels' own), so
// small products and arrays run on as many threads as asked for.
void set_grain_override(index grain);

// f(begin, end) over [0, n) split into contiguous static chunks, one per thread. The split
// changes with the thread count, so f must produce results that do not depend on it.
template <class F>
void parallel_for(index n, int threads, F f) {
    if (threads <= 1 || n <= 1) {
        note_team_size(1);
        f(index(0), n);
        return;
    }
    #pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#if defined(_OPENMP)
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
        if (t == 0) note_team_size(nt);
#endif
        const index begin = n * t / nt, end = n * (t + 1) / nt;
        if (begin < end) f(begin, end);
    }
}

}  // namespace fastmlp

