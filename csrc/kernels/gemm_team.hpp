// How a team of threads shares one GEMM (gemm.hpp, "The packed driver" and "The K split"): the
// grid of rectangles of C (choose_grid), the K split for products whose C is too small for
// the team (choose_team), and the pass that finishes C from the K split's per-block
// accumulators (finish_k_split) with the arithmetic of the contract.
#pragma once
#include "gemm_microkernel.hpp"
#include "gemm_pack.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

// The K split's rule (gemm.hpp, "The K split", for the measurements): where its slowest
// thread's multiply-adds are at most the grid's while its accumulators are small (ties
// included: less packing twice over, larger rectangles), else at most kKSplitPercent % of
// them; never with accumulators over kKSplitMaxBytes.
constexpr index kKSplitTieBytes = 96 * 1024;
constexpr index kKSplitPercent = 80;
constexpr index kKSplitMaxBytes = index(16) << 20;

// The grid for nt threads (grid_m * grid_n = nt): the smallest largest rectangle, counted
// in whole MR x NR tiles (the slowest thread), and among grids within 3 % of it the one with
// the most row ranges: a thread then writes whole rows of C and every thread packs its own
// B columns. (Measured at 2 threads: 256 x 784 x 32 TN splits rows 266 GFLOP/s, columns 180;
// 32 x 256 x 784 NT splits columns 207, rows 150.) Returns the largest rectangle's area
// (rows and columns rounded up to MR and NR).
inline index choose_grid(index m, index n, index mr, index nr, int nt, int& gm, int& gn) {
    auto area = [&](int d) {  // the largest rectangle with d row ranges
        const int e = nt / d;
        return round_up((m + d - 1) / d, mr) * round_up((n + e - 1) / e, nr);
    };
    index best = area(1);
    for (int d = 2; d <= nt; ++d)
        if (nt % d == 0 && area(d) < best) best = area(d);
    gm = 1;
    for (int d = 2; d <= nt; ++d)
        if (nt % d == 0 && area(d) * 100 <= best * 103) gm = d;
    gn = nt / gm;
    return area(gm);
}

// The team's split of one product: `groups` K groups (1: no K split), each a grid_m x
// grid_n grid of rectangles of C; group g takes the K blocks [kblocks * g / groups,
// kblocks * (g + 1) / groups).
struct TeamPlan {
    int groups = 1, grid_m = 1, grid_n = 1;
    index group_begin(index kblocks, int g) const { return kblocks * g / groups; }
};

// The plan for `threads` threads: the grid over all of them, unless splitting the kblocks
// K blocks (kc_max long at most) over groups of threads / groups threads, with acc_bytes of
// accumulators, cuts the slowest thread's multiply-adds (area x K) as the rule above asks;
// then the group count that cuts them most (the fewest groups among equals).
inline TeamPlan choose_team(index m, index n, index mr, index nr, index k, index kblocks,
                            index kc_max, int threads, index acc_bytes) {
    TeamPlan plan;
    const index grid = choose_grid(m, n, mr, nr, threads, plan.grid_m, plan.grid_n) * k;
    if (acc_bytes > kKSplitMaxBytes) return plan;
    index bar = grid * (acc_bytes <= kKSplitTieBytes ? 100 : kKSplitPercent) + 1;
    for (int g = 2; g <= threads && g <= kblocks; ++g) {
        int gm = 1, gn = 1;
        const index cost = choose_grid(m, n, mr, nr, threads / g, gm, gn) * ((kblocks + g - 1) / g) * kc_max;
        if (cost * 100 < bar) {
            bar = cost * 100;
            plan = TeamPlan{g, gm, gn};
        }
    }
    return plan;
}

// Rows [i0, i1) of a finished C (n columns) through the fused epilogue, as the unfused
// kernels compute it (bias_act_forward; act_backward_rows): the K split's finish and the
// products the driver leaves to the plain loop or the transposed one-column run.
template <class T>
void finish_fused_rows(const FusedEpilogue<T>& fused, T* c, index ldc, index i0, index i1, index n) {
    if (i0 >= i1) return;
    const FusedEpilogue<T> f = fused.at(i0, 0);
    if (f.z) return finish_act_backward<T>(c + i0 * ldc, ldc, i1 - i0, n, f);
    if (!f.bias) return;
    for (index i = i0; i < i1; ++i) {
        T* crow = c + i * ldc;
        bias_act_forward<T>(f.bias, crow, f.out ? f.out + (i - i0) * f.ldo : crow, 1, n, f.act, f.param);
    }
}

// Rows [i0, i1) of C finished from the K split's accumulators: acc + blk * block_stride
// holds K block blk's m x n raw sums (row stride lds). In block order, per element, exactly
// as the microkernel's epilogues do it (contract in gemm.hpp): the first block C = alpha *
// acc + beta * C (alpha * acc when beta == 0, C never read), later ones C = C + alpha * acc;
// then the row through the fused epilogue (finish_fused_rows).
template <class T>
void finish_k_split(const T* acc, index block_stride, index lds, index kblocks, index i0,
                    index i1, index n, T alpha, T beta, T* c, index ldc, const FusedEpilogue<T>& fused) {
    constexpr index W = lanes<T>;
    const Vec<T> va = splat<T>(alpha), vb = splat<T>(beta), zero = splat<T>(T(0));
    for (index i = i0; i < i1; ++i) {
        T* crow = c + i * ldc;
        for (index blk = 0; blk < kblocks; ++blk) {
            const T* arow = acc + blk * block_stride + i * lds;
            const Epilogue e = epilogue_for(blk, beta);
            index j = 0;
            for (; j + W <= n; j += W) {
                const Vec<T> old = e == Epilogue::overwrite ? zero : load<T>(crow + j);
                store<T>(crow + j, apply_epilogue(e, load<T>(arow + j), old, va, vb));
            }
            for (; j < n; ++j)
                crow[j] = apply_epilogue(e, arow[j], e == Epilogue::overwrite ? T(0) : crow[j], alpha, beta);
        }
        finish_fused_rows(fused, c, ldc, i, i + 1, n);   // while the row is in cache
    }
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
