// GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS argument order.
//
// Contract (KernelTable::gemm in common.hpp)
// ------------------------------------------
//   op(A) is m x k: A itself when !trans_a (m x k, A(i, p) = a[i * lda + p]),
//                   A^T      when  trans_a (A stored k x m, A(i, p) = a[p * lda + i]).
//   op(B) is k x n: B itself when !trans_b (k x n, B(p, j) = b[p * ldb + j]),
//                   B^T      when  trans_b (B stored n x k, B(p, j) = b[j * ldb + p]).
//   C is m x n with leading dimension ldc. C must not overlap A or B (the bindings check).
//   beta == 0: C is never read (it may hold NaN or garbage) and is overwritten.
//   k == 0:    C = beta * C (zeros when beta == 0). m == 0 or n == 0: nothing happens.
//   alpha is applied to the finished products, never skipped (alpha == 0 with a NaN in A
//   still gives NaN, like the formula).
//
// Arithmetic (the part that makes results reproducible)
// -----------------------------------------------------
//   K is split into kb = ceil(k / 256) blocks of nearly equal size (the first k % kb blocks
//   one longer: 784 -> 4 x 196, 257 -> 129 + 128). The split depends on k only: not on m,
//   n, the ISA or the thread count. For every C element and every K block, in block order:
//
//       acc = +0;  for p in the block, ascending:  acc = fma(A(i, p), B(p, j), acc)
//       first block:  C = alpha * acc + beta * C      (beta == 0: C = alpha * acc)
//       later blocks: C = C + alpha * acc
//
//   fma is the vector wrapper's: fused on avx2 and avx512 (so those two paths agree bit for
//   bit), a multiply then an add on the generic path (within rounding of the others). No
//   element's arithmetic depends on where it sits in a tile, on the tile grid, on m (a
//   row's result is the same alone or in any batch) or on which thread computes it.
//   gemm_reference (gemm_reference.hpp) is this specification as a plain loop,
//   bit-identical to the packed driver on the same ISA; it also serves the tiny products
//   (kTinyWork).
//
// The packed driver (BLIS's loops; flame/blis docs/KernelsHowTo.md)
// -----------------------------------------------------------------
//   A team is a grid_m x grid_n grid over C (choose_grid, gemm_team.hpp): each thread owns
//   one rectangle [r0, r1) x [c0, c1) of C, whole rows of MR-panels and columns of
//   NR-panels, and packs its own operands. No barriers, and no packed panel written by one
//   core for another to read (measured: sharing one packed B panel made 2 threads no faster
//   than 1 on the batch-32 forward pass, and cost 15-30 % on square products), except in
//   the K split below. Within a rectangle:
//
//   for jc in [c0, c1) step NC                                   columns of C and op(B)
//     for each K block [p0, p0 + kc), in order
//       pack op(B)[p0 : p0+kc, jc : jc+NC] into kc x NR micro-panels
//       for ic in [r0, r1) step MC
//         pack op(A)[ic : ic+MC, p0 : p0+kc]                          (the A block, in L2)
//         for jr in [jc, jc+NC) step NR                 (the B micro-panel stays in L1)
//           for ir in [ic, ic+MC) step MR
//             microkernel: C[ir : ir+MR, jr : jr+NR]  = / += (the epilogue of the block)
//
//   Packed layouts (the packing absorbs the transposes; the microkernel never sees them):
//
//       A block: MC rows with stride AS >= kc     B micro-panel: kc x NR
//       row 0: A(0,0) A(0,1) .. A(0,kc-1)         p=0: B(0,0) B(0,1) .. B(0,NR-1)
//       row 1: A(1,0) A(1,1) .. A(1,kc-1)         p=1: B(1,0) B(1,1) .. B(1,NR-1)
//       ...                                       ...
//       rows past m, up to a multiple of MR, 0    columns past n are 0
//
//   An A micro-panel is MR consecutive rows of the block; A(r, p) is broadcast from
//   a[r * AS + p], one load at a constant offset. So an untransposed A (the forward pass
//   X @ W.T, dX = dZ @ W) packs by row copies and a transposed one (dW = dZ.T @ X) by a
//   transpose in registers; B packs by row copies untransposed (dX, dW) and by a transpose
//   for the forward pass. An untransposed operand may instead be read in place (Direct B
//   and Direct A below: the row copies skipped where the rules say it pays).
//
//                      NR
//                 +-----------+
//              kc | B panel   |  NR / lanes<T> vector loads per p
//                 +-----------+
//        kc       +-----------+
//      +----+  MR |  MR x NR  |  MR * NR / lanes accumulators, for each p:
//      | A  |     |  C tile   |     acc[r][v] = fma(broadcast A(r,p), B(p, vector v), acc[r][v])
//      +----+     +-----------+
//
//   Edge tiles (m % MR rows, n % NR columns) run the same microkernel on zero-padded panels
//   and are finished from a local buffer, so they round exactly like interior tiles. A last
//   panel of at most lanes<T> columns runs the one-vector instance (NV = 1) of the same
//   template: the same arithmetic per element, half the wasted lanes.
//
// The K split (choose_team, finish_k_split in gemm_team.hpp): when C has too few tiles
//   for the team (dW of a 10-wide output layer, 10 x 128 x 1024; a handful of rows), the
//   team is `groups` groups, each a grid over C, and group g takes the K blocks [kb * g /
//   groups, kb * (g + 1) / groups). Each K block's raw sums go to its own m x n
//   accumulators (the overwrite epilogue with alpha 1 and beta 0 stores acc itself, bit
//   for bit); after a barrier, each thread finishes a range of rows of C from them in
//   block order with the epilogues above (C = alpha * acc + beta * C, then C = C + alpha *
//   acc, then the fused epilogue as bias_act_forward or act_backward does it), so the
//   bits are the same as without the split, for any team. The accumulators follow the
//   packing slots in the calling thread's workspace.
//
//   The rule, per product (choose_team): the slowest thread's multiply-adds, area of the
//   largest rectangle (in whole tiles) x the K it covers, K split against grid. The K split
//   is taken where it is lower, or equal while the accumulators (kb x m x n) take at most
//   96 KiB; with more accumulators only at 80 % of the grid's or less, and never over 16
//   MiB. Measured at 2 threads on this 2-core AMD EPYC (avx512, float32; us per call, the
//   least of 40 batches of calls under fastmlp.threads(2), as the machine was shared;
//   bench/gemm_at.py M N K --threads 2 times one shape), today's grid -> the K split:
//
//       the split cuts the work            ties, accumulators <= 96 KiB
//       10 x  10 x 8192  NN  65.3 -> 37.5   10 x 128 x 1024  TN  27.2 -> 24.1  (20 KiB)
//        7 x  17 x 8192  NN   105 -> 56.9    1 x 128 x 8192  NT   191 -> 174   (16 KiB)
//       33 x  10 x 2048  NN  26.1 -> 20.7   20 x 256 x 1024  TN  90.1 -> 70.4  (80 KiB)
//                                           12 x 512 x  512  NT  51.5 -> 48.0  (48 KiB)
//       ties with more accumulators keep the grid (a forced K split in brackets):
//       64 x 128 x 1024 TN 102 (98.6), 32 x 256 x 784 NT 80.1 (80.9), 128 x 256 x 784 NT
//       260 (260).
//
//   On ties the split wins where the grid cuts a short C into narrow column ranges (every
//   thread packs all of op(A) again, and narrow rectangles run fewer tiles per packed
//   block) and loses its finish pass where C is large. At 16 threads (reasoned, not
//   measured here): the batch-32 forward 32 x 256 x 784 has 24 tiles, the grid's slowest
//   thread 2 tiles x 784, 2 groups of 8 threads 3 tiles x 392 (75 %), and packs 25 k
//   instead of 44 k values; 10 x 128 x 1024 gets 5 threads (kGemmGrain) and ties (2 groups
//   of 2); large products (1024^3, the batch-128 forward) keep the grid: their
//   accumulators are far over 96 KiB and the split does not cut their work by 20 %.
//
// One column (n == 1, a single-output layer's forward pass z = X w^T + b): an MR x NR tile
//   would hold one useful column of NR (the NV = 1 instance: 1 of lanes<T>). C's column
//   with ldc == 1 is the row C^T = op(B)^T op(A)^T in the same memory, so the driver
//   computes that row instead (A' = op(B)^T, B' = op(A)^T: each transpose flag flips, the
//   leading dimensions stay) with the one-row microkernels. Every element's sum is the
//   same chain in the same K blocks, its steps fma(A'(0, p), B'(p, i), acc) =
//   fma(B(p, 0), A(i, p), acc): the factors swapped, which a fused multiply-add (and a
//   product then a sum) does not see. The bias and activation then run as
//   bias_act_forward (the epilogue's arithmetic), so the bits are those of the tiles.
//
// Pre-packed B (pack_b, gemm_bias_act_packed): a weight matrix used again and again (the
//   inference forward pass) is packed once, for every K block and every NR panel, and the
//   driver reads its micro-panels in place instead of packing op(B) per call:
//
//       K block 0: panel 0 (kc0 x NR), panel 1, ..., panel ceil(n / NR) - 1
//       K block 1: ...                        (a narrow last panel fills kc x lanes of its slot)
//
//   Rectangles start at multiples of NR, so every thread finds its panels at fixed offsets.
//   The arithmetic is the packed driver's, so the results are the same bits.
//
// Direct B: an untransposed op(B) (dX = dZ @ W, dW = dZ.T @ X) is read in place instead
//   of packed: the microkernel takes B's row stride as an argument (NR, or W, for packed
//   panels; ldb here) and full panel q of the rectangle is b + p0 * ldb + jc + q * NR. A
//   last panel of fewer than NR columns is still packed (zero-padded), so no load reads past
//   column n. The arithmetic is the packed driver's: the same bits. Packing B pays only
//   where its panels are read again by many tile rows, so the rule (use_direct_b) reads B
//   in place when a rectangle has at most kDirectBRows = 288 rows (a training batch).
//   Measured on this 2-core AMD EPYC (avx512, one thread, us per call, packed -> direct,
//   medians of 7 rounds alternating the two paths in one process, forced with the test
//   hook _testing.set_gemm_direct_override):
//
//       float64 (float32)       10 x  100 x 200 TN  14.3 -> 10.8   (8.5 -> 6.6)
//                              100 x   64 x 200 TN  52.6 -> 49.8   (26.8 -> 25.5)
//                              200 x  100 x  10 NN  11.3 -> 11.4   (7.3 -> 7.2)
//                               50 x 1024 x 256 NN   598 -> 524    (303 -> 262)
//                              200 x 1024 x 256 NN  2086 -> 1999   (1002 -> 949)
//                              256 x  784 x 128 TN   990 -> 967    (479 -> 464)
//       over the rule (packed): 1024 x 1024 x 1024 NN 45.5 -> 48.3 ms (22.8 -> 22.3),
//                              1024 x  512 x  256 NN  5759 -> 5945 (2435 -> 2460),
//                              1024 x 1000 x  256 NN 10773 -> 11090 (5023 -> 4940):
//   a thousand rows re-read a panel ~86 times, from L2 instead of L1; 8 KiB rows lose 6 %.
//
// Direct A: op(A) is read in place the same way, by the microkernel instances with AS = 0
//   (untransposed: A(r, p) = a[r * lda + p], the forward pass X @ W.T and dX) and AS = -1
//   (A^T, dW = dZ.T @ X: A(r, p) = a[p * lda + r], the MR broadcasts of a step adjacent).
//   Only the last tile row of an A block, when it has fewer than MR rows, is packed (so no
//   row past m is read; the short-tile instances read packed rows only). The rule
//   (use_direct_a): A^T always (faster than its transpose on every shape measured, packed
//   -> in place, B as by its rule: 100 x 64 x 200 TN float64 49.8 -> 46.0 (float32 25.3 ->
//   23.3), 200 x 100 x 10 TN 20.3 -> 11.7 (7.6 -> 7.1), 256 x 784 x 128 TN 988 -> 967 (474
//   -> 465), 1024^3 TN 49.0 -> 46.5 ms (24.3 -> 22.2), 512^3 TN 5436 -> 5315 (2604 ->
//   2537)). An untransposed A block is read again for every B panel from rows lda apart,
//   so it is read in place only when a rectangle has at most kDirectACols = 64 columns,
//   K blocks of at least 16 and A's rows are not a multiple of 2 KiB apart (12 rows 4 KiB
//   apart share one L1 set):
//
//       float64 (float32)       200 x  10 x 100 NT  18.1 -> 15.3   (10.3 -> 8.8)
//                              200 x  32 x 100 NT  31.3 -> 28.3   (16.5 -> 13.7)
//                              200 x  64 x  64 NT  37.5 -> 35.9   (18.8 -> 18.1)
//       over the rule (packed): 200 x 100 x 64 NT 55.5 -> 55.2 (30.1 -> 30.8), 200 x 100 x
//       10 NN 12.6 -> 13.4 (7.3 -> 8.2), 200 x 512 x 512 NT 2094 -> 2357 (float64, 4 KiB
//       rows), 1024 x 1024 x 256 NN 11167 -> 11420, 128 x 256 x 784 NT 1028 -> 1046.
//
// Short tiles: a tile row of one row, or of at most MRS rows (a handful of samples at
//   inference), runs the 1-row or MRS-row instance of the microkernel: the same
//   per-element arithmetic without computing MR - 1 or MR - MRS rows of zero padding. A
//   block of one row also takes NPR full panels per call, for enough independent FMA
//   chains (one row on 784-256-128-10: 14 -> 11 -> 10 us). A last tile row of MRS < mr
//   <= MRL = MR - 2 rows runs the MRL-row instance (the 10 outputs of a classifier's dW:
//   10 x 100 x 200 TN float64 10.1 -> 8.5 us on the AMD EPYC of bench/, Zen 4).
// Narrow tiles: on 64-byte vectors, a last panel of at most W / 2 columns, or the columns
//   past one full vector when a tile has at most 1.5 W, run a tile of 32-byte vectors
//   (gemm_microkernel, TB): Zen 4 executes a 64-byte FMA as two 32-byte halves, so a
//   4-column float64 tail costs half (200 x 10 x 100 NT float64 14.0 -> 11.3 us, 200 x
//   100 x 64 NT 55.9 -> 54.7 us); on cores with full-width units it costs the same. The
//   columns past one full vector run in one mixed tile with it (gemm_microkernel, NN: one
//   pass of A's broadcasts for both, where two tiles broadcast A twice): 200 x 10 x 100
//   NT float64 11.4 -> 10.7 us, 256 x n x 128 NT 17.5 -> 16.2 us for float64 n = 9, 10,
//   12 and float32 n = 20, 24.
//
// Buffers: one thread_local workspace per calling thread, 64-byte aligned, grown when a
// larger product comes and reused afterwards (no allocation per call in the steady state;
// docs/build-notes.md, "No allocation per call"), freed at thread exit. It holds an A block and a B panel per team
// thread and is allocated before the parallel region, so std::bad_alloc reaches the caller
// (MemoryError) instead of escaping an OpenMP region; in the K split it also holds the
// accumulators. Called by every thread of a trainer's team (parallel.hpp, Teams), the driver
// opens no region: each thread plans the same job, takes its items with its slot of the
// team's shared workspace (grown by thread 0 between barriers), and the team meets at a
// barrier after them (and before the K split's finish); the serial cases run on thread 0.
#pragma once
#include <cstddef>
#include <type_traits>

#include "../parallel.hpp"
#include "../simd/vec.hpp"
#include "gemm_microkernel.hpp"
#include "gemm_pack.hpp"
#include "gemm_reference.hpp"
#include "gemm_team.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

constexpr index kMC = 144;                 // rows of an A block: a multiple of every MR
constexpr index kTinyWork = 8 * 8 * 8;     // m * n * k up to this: gemm_reference
constexpr index kL1Bytes = 32 * 1024;      // the smallest L1 data cache we tune for
constexpr index kDirectBRows = 2 * kMC;    // direct B up to this many rows per rectangle
constexpr index kDirectACols = 64;         // direct A up to this many columns per rectangle,
constexpr index kDirectAMinK = 16;         // K blocks of at least this many,
constexpr index kDirectAStrideBytes = 2048;  // and not for A rows a multiple of this apart
template <class T>
constexpr index kNC = (index(1) << 20) / (kKC * index(sizeof(T)));  // B panel <= 1 MiB

// Elements of pack_b's output for op(B) of k x n: every K block's panels, NR columns each.
template <class T>
index packed_b_size(index n, index k) {
    return k * round_up(n, GemmTile<T>::NR);
}

// Where the K block starting at row p0 begins in pack_b's output: the earlier blocks hold
// p0 rows of round_up(n, NR) columns.
template <class T>
index packed_block_offset(index n, index p0) {
    return p0 * round_up(n, GemmTile<T>::NR);
}

// ---- the driver ------------------------------------------------------------------------

// Everything one call needs, read by every thread.
template <class T>
struct GemmJob {
    bool ta, tb;
    index m, n, k;
    T alpha, beta;
    const T* a;
    index lda;
    const T* b;
    index ldb;
    T* c;
    index ldc;
    KBlocks kb;
    index mc, nc;
    FusedEpilogue<T> fused;    // gemm_bias_act, gemm_act_backward: at row 0, column 0
    const T* packed_b;         // pre-packed op(B) (pack_b), or nullptr: pack per call
    bool direct_b = false;     // untransposed B read in place (use_direct_b)
    bool direct_a = false;     // op(A)'s full tile rows read in place (use_direct_a)
    TeamPlan team;             // K groups of grid_m x grid_n rectangles of C (plan_job)
    char* ws = nullptr;        // per thread: an A block (a_bytes), then a B panel
    std::size_t a_bytes = 0, slot_bytes = 0;
    T* acc = nullptr;          // the K split: K block blk's m x n sums at acc + blk * acc_stride
    index acc_ld = 0, acc_stride = 0;
};

// One K block of C[ic : ic+mcur, j0 : j0+cols]: the A block at ap, the B micro-panels in
// bp. Normally microkernels go down the rows for each B micro-panel, which then stays in
// L1; when the whole B panel fits in L1 anyway (a short K block: dX of a small layer), they
// go along the rows instead, writing C row by row.
template <class T>
inline void compute_block(const GemmJob<T>& job, const T* ap, const T* direct_a, index direct_rows,
                          const BPanels<T>& bp, index kc, Epilogue e, bool last, index ic, index mcur,
                          index j0, index cols) {
    constexpr int MR = GemmTile<T>::MR, MRS = GemmTile<T>::MRS, MRL = GemmTile<T>::MRL, NV = GemmTile<T>::NV;
    constexpr index W = lanes<T>, NR = GemmTile<T>::NR, AS = kAStride<T>;
    // The fused epilogue of the tile at (ir, jr), on the last K block only.
    auto epilogue_at = [&](index ir, index jr) {
        return last && job.fused.any() ? job.fused.at(ic + ir, j0 + jr) : FusedEpilogue<T>{};
    };
    auto tile = [&](index ir, index jr) {
        const index mr = imin(MR, mcur - ir), nr = imin(NR, cols - jr);
        const T* a = ap + ir * AS;
        const T* b = bp.at(jr / NR, nr);
        const index bld = bp.row_stride(nr);
        T* c = job.c + (ic + ir) * job.ldc + j0 + jr;
        const FusedEpilogue<T> ba = epilogue_at(ir, jr);
        // An MR-row tile by its width: NV vectors a row, one for the narrow last panel. On
        // 64-byte vectors a last vector of at most W / 2 columns runs as a 32-byte one
        // (gemm_microkernel, TB), alone or in a mixed tile after one full vector (10
        // columns of float64: 8 + 2, not a tile of 16; gemm_microkernel, NN).
        auto rows_tile = [&](auto as, auto rows, const T* a_rows, index a_ld) {
            constexpr index ASX = decltype(as)::value;
            constexpr int MRX = decltype(rows)::value;
            auto kernel = [&](auto nv, auto tb, auto nn) {
                gemm_microkernel<T, MRX, decltype(nv)::value, ASX, decltype(tb)::value, decltype(nn)::value>(
                    kc, a_rows, a_ld, b, bld, job.alpha, job.beta, e, c, job.ldc, mr, nr, ba);
            };
            using One = std::integral_constant<int, 1>;
            using Full = std::integral_constant<int, kVecBytes>;
            using Half = std::integral_constant<int, kVecBytes / 2>;
            using Zero = std::integral_constant<int, 0>;
            if constexpr (kVecBytes == 64) {
                if (nr <= W / 2) return kernel(One{}, Half{}, Zero{});
                if (nr > W && nr - W <= W / 2) return kernel(One{}, Full{}, One{});
            }
            if (nr <= W) kernel(One{}, Full{}, Zero{});
            else kernel(std::integral_constant<int, NV>{}, Full{}, Zero{});
        };
        if (ir < direct_rows) {   // a full tile row of op(A) read in place: AS = 0 (rows lda apart) or -1 (A^T)
            const T* ad = direct_a + ir * (job.ta ? 1 : job.lda);
            if (job.ta) rows_tile(std::integral_constant<index, -1>{}, std::integral_constant<int, MR>{}, ad, job.lda);
            else rows_tile(std::integral_constant<index, 0>{}, std::integral_constant<int, MR>{}, ad, job.lda);
        } else if (mr == 1) {  // one sample (inference): no zero rows at all
            if (nr <= W)
                gemm_microkernel<T, 1, 1, AS>(kc, a, AS, b, bld, job.alpha, job.beta, e, c, job.ldc, mr, nr, ba);
            else
                gemm_microkernel<T, 1, NV, AS>(kc, a, AS, b, bld, job.alpha, job.beta, e, c, job.ldc, mr, nr, ba);
        } else if (mr <= MRS) {  // a short tile row (a few samples): skip the zero rows
            if (nr <= W)
                gemm_microkernel<T, MRS, 1, AS>(kc, a, AS, b, bld, job.alpha, job.beta, e, c, job.ldc, mr, nr, ba);
            else
                gemm_microkernel<T, MRS, NV, AS>(kc, a, AS, b, bld, job.alpha, job.beta, e, c, job.ldc, mr, nr, ba);
        } else if (MRL > MRS && mr <= MRL) {   // 10 outputs' dW, 200 = 16 x 12 + 8 samples
            rows_tile(std::integral_constant<index, AS>{}, std::integral_constant<int, MRL>{}, a, AS);
        } else {
            rows_tile(std::integral_constant<index, AS>{}, std::integral_constant<int, MR>{}, a, AS);
        }
    };
    if (mcur == 1) {  // one row: NPR full panels per microkernel call, then single panels
        constexpr int NPR = GemmTile<T>::NPR;
        index jr = 0;
        for (; cols - jr >= NPR * NR; jr += NPR * NR)
            gemm_microkernel<T, 1, NPR * NV, AS>(kc, ap, AS, bp.at(jr / NR, NR), bp.row_stride(NR), job.alpha,
                                                 job.beta, e, job.c + ic * job.ldc + j0 + jr, job.ldc, 1,
                                                 NPR * NR, epilogue_at(0, jr), bp.direct ? NR : NR * kc);
        for (; jr < cols; jr += NR) tile(0, jr);
    } else if (kc * round_up(cols, NR) * index(sizeof(T)) <= kL1Bytes / 2) {
        for (index ir = 0; ir < mcur; ir += MR)
            for (index jr = 0; jr < cols; jr += NR) tile(ir, jr);
    } else {
        for (index jr = 0; jr < cols; jr += NR)
            for (index ir = 0; ir < mcur; ir += MR) tile(ir, jr);
    }
}

// One K block of C[r0 : r1, jc : jc+ncur] with epilogue e (last: the fused epilogue too),
// packed into this thread's buffers (op(B) read in place when job.direct_b, all but a
// last panel of fewer than NR columns).
template <class T>
void rect_block(const GemmJob<T>& job, index blk, Epilogue e, bool last, index r0, index r1,
                index jc, index ncur, T* apack, T* bpack) {
    constexpr index NR = GemmTile<T>::NR;
    const index p0 = job.kb.start(blk), kc = job.kb.size(blk);
    BPanels<T> panels{bpack, nullptr, 0, kc};
    if (job.packed_b) {
        panels.packed = job.packed_b + packed_block_offset<T>(job.n, p0) + jc * kc;
    } else if (job.direct_b) {
        panels.direct = job.b + p0 * job.ldb + jc;
        panels.ld = job.ldb;
        if (ncur % NR) pack_b_panel(false, job.b, job.ldb, p0, kc, jc, ncur, ncur / NR, bpack + ncur / NR * NR * kc);
    } else {
        for (index jp = 0; jp * NR < ncur; ++jp)
            pack_b_panel(job.tb, job.b, job.ldb, p0, kc, jc, ncur, jp, bpack + jp * NR * kc);
    }
    for (index ic = r0; ic < r1; ic += job.mc) {
        const index mcur = imin(job.mc, r1 - ic);
        const index direct_rows = job.direct_a ? mcur / GemmTile<T>::MR * GemmTile<T>::MR : 0;
        pack_a(job.ta, job.a, job.lda, ic + direct_rows, mcur - direct_rows, p0, kc,
               apack + direct_rows * kAStride<T>);
        const T* direct_a = job.ta ? job.a + p0 * job.lda + ic : job.a + ic * job.lda + p0;
        compute_block(job, apack, direct_a, direct_rows, panels, kc, e, last, ic, mcur, jc, ncur);
    }
}

// The K split's view of block blk: its raw sums into its own accumulators (the overwrite
// epilogue with alpha 1 and beta 0 stores acc itself), no fused epilogue.
template <class T>
GemmJob<T> k_split_part(const GemmJob<T>& job, index blk) {
    GemmJob<T> part = job;
    part.alpha = T(1);
    part.beta = T(0);
    part.fused = FusedEpilogue<T>{};
    part.c = job.acc + blk * job.acc_stride;
    part.ldc = job.acc_ld;
    return part;
}

// K blocks [blk0, blk1) of C[r0 : r1, c0 : c1] (or of their accumulators, in the K split).
template <class T>
void gemm_rect(const GemmJob<T>& job, index r0, index r1, index c0, index c1, index blk0,
               index blk1, T* apack, T* bpack) {
    for (index jc = c0; jc < c1; jc += job.nc) {
        const index ncur = imin(job.nc, c1 - jc);
        for (index blk = blk0; blk < blk1; ++blk) {
            if (job.acc)
                rect_block(k_split_part(job, blk), blk, Epilogue::overwrite, false, r0, r1, jc, ncur,
                           apack, bpack);
            else
                rect_block(job, blk, epilogue_for(blk, job.beta), blk + 1 == job.kb.count, r0, r1, jc,
                           ncur, apack, bpack);
        }
    }
}

// Work item `item` of the team: rectangle item % (grid_m * grid_n) of the grid (row ranges
// in whole MR panels, columns in NR) for K group item / (grid_m * grid_n), computed with
// workspace slot `slot`. An empty rectangle is nothing to do.
template <class T>
void gemm_item(const GemmJob<T>& job, int item, int slot_index) {
    constexpr index MR = GemmTile<T>::MR, NR = GemmTile<T>::NR;
    const TeamPlan& team = job.team;
    const int rect = item % (team.grid_m * team.grid_n), group = item / (team.grid_m * team.grid_n);
    const index gi = rect / team.grid_n, gj = rect % team.grid_n;
    const index rows = round_up((job.m + team.grid_m - 1) / team.grid_m, MR);
    const index cols = round_up((job.n + team.grid_n - 1) / team.grid_n, NR);
    const index r0 = imin(job.m, gi * rows), r1 = imin(job.m, r0 + rows);
    const index c0 = imin(job.n, gj * cols), c1 = imin(job.n, c0 + cols);
    if (r0 >= r1 || c0 >= c1) return;
    char* const slot = job.ws + job.slot_bytes * std::size_t(slot_index);
    gemm_rect(job, r0, r1, c0, c1, team.group_begin(job.kb.count, group),
              team.group_begin(job.kb.count, group + 1), reinterpret_cast<T*>(slot),
              reinterpret_cast<T*>(slot + job.a_bytes));
}

// Direct B and direct A (the contract): an operand read in place where the rule says it
// pays; the test hook set_gemm_direct_override forces it on (a mask: 1 B, 2 A, 3 both) or
// off (< 0) wherever it can be read in place (B untransposed, A either way).
template <class T>
bool use_direct_b(const GemmJob<T>& job) {
    if (job.tb || job.packed_b) return false;
    if (const int forced = gemm_direct_override()) return forced > 0 && (forced & 1);
    return round_up((job.m + job.team.grid_m - 1) / job.team.grid_m, GemmTile<T>::MR) <= kDirectBRows;
}

template <class T>
bool use_direct_a(const GemmJob<T>& job) {
    if (const int forced = gemm_direct_override()) return forced > 0 && (forced & 2);
    if (job.ta) return true;
    return job.nc <= kDirectACols && job.kb.size(0) >= kDirectAMinK &&
           job.lda * index(sizeof(T)) % kDirectAStrideBytes != 0;
}

// The team's plan (choose_team), block sizes and workspace: `threads` slots of an A block
// and a B panel, then, in the K split, the accumulators of every K block (m x acc_ld
// each). Reserved here, before any parallel region, so std::bad_alloc reaches the caller;
// in a team (parallel.hpp) the team's buffer, grown by the leader between barriers.
template <class T>
void plan_job(GemmJob<T>& job, int threads) {
    constexpr index MR = GemmTile<T>::MR, NR = GemmTile<T>::NR, W = lanes<T>;
    const index kc_max = job.kb.size(0);
    const index acc_ld = round_up(job.n, W), acc_stride = round_up(job.m * acc_ld, 64 / index(sizeof(T)));
    const index acc_bytes = job.kb.count * acc_stride * index(sizeof(T));
    job.team = choose_team(job.m, job.n, MR, NR, job.k, job.kb.count, kc_max, threads, acc_bytes);
    job.mc = imin(kMC, round_up((job.m + job.team.grid_m - 1) / job.team.grid_m, MR));
    job.nc = imin(kNC<T>, round_up((job.n + job.team.grid_n - 1) / job.team.grid_n, NR));
    job.direct_b = use_direct_b(job);
    job.direct_a = use_direct_a(job);
    job.a_bytes = std::size_t(round_up(kAStride<T> * job.mc * index(sizeof(T)), 64));
    const index b_panel = job.packed_b ? 0 : round_up(kc_max * job.nc * index(sizeof(T)), 64);
    job.slot_bytes = job.a_bytes + std::size_t(b_panel);
    const std::size_t slots = job.slot_bytes * std::size_t(threads);
    const std::size_t need = slots + (job.team.groups > 1 ? std::size_t(acc_bytes) : 0);
    Team* const shared = current_team();   // a team's threads share the team's workspace
    job.ws = shared ? team_buffer(shared->gemm, need) : tl_workspace.reserve(need);
    if (job.team.groups > 1) {
        job.acc = reinterpret_cast<T*>(job.ws + slots);
        job.acc_ld = acc_ld;
        job.acc_stride = acc_stride;
    }
}

// The team's work items, a smaller team than asked for (OpenMP may give one) taking the
// rest in turn, then, in the K split, after all of them, C finished from the accumulators
// a range of rows per thread. Which thread computes what never changes the arithmetic.
// Called by every thread of the enclosing region (the barrier binds to it).
template <class T>
void team_items(const GemmJob<T>& job, int tid, int nt) {
    const int items = job.team.groups * job.team.grid_m * job.team.grid_n;
    if (tid == 0) note_team_size(nt);
    if (tid < nt)
        for (int item = tid; item < items; item += nt) gemm_item(job, item, tid);
    if (job.acc) {
#pragma omp barrier
        if (tid < nt)
            finish_k_split(job.acc, job.acc_stride, job.acc_ld, job.kb.count, job.m * tid / nt,
                           job.m * (tid + 1) / nt, job.n, job.alpha, job.beta, job.c, job.ldc, job.fused);
    }
}

// In a team (parallel.hpp) its first `threads` threads take the items, and the whole team
// meets at a barrier after them; otherwise a region of `threads` threads.
template <class T>
void run_team(const GemmJob<T>& job, int threads) {
    const TeamSeat& seat = team_seat();
    if (seat.team) {
        team_items(job, seat.id, std::min(threads, seat.size));
        return team_barrier();
    }
    note_parallel_region();
#pragma omp parallel num_threads(threads)
    {
        const RegionSeat seat = region_seat();
        team_items(job, seat.id, seat.size);
    }
}

// The driver for gemm, gemm_bias_act and gemm_act_backward: `fused` the epilogue of the
// last K block (gemm_microkernel.hpp), at row 0, column 0.
template <class T>
void gemm_run(bool ta, bool tb, index m, index n, index k, T alpha, const T* a, index lda,
              const T* b, index ldb, T beta, T* c, index ldc, int threads,
              const FusedEpilogue<T>& fused, const T* packed_b = nullptr) {
    if (m <= 0 || n <= 0) return;
    note_gemm_k_groups(1);
    note_gemm_direct(0);
    // The small cases: the plain product, then the unfused kernels row by row (the same
    // arithmetic as the epilogue).
    auto finish_small = [&] { finish_fused_rows(fused, c, ldc, 0, m, n); };
    // Serial parts run on the leader of a team (team_serial; outside one: here).
    if (k <= 0)
        return team_serial([&] {
            note_team_size(1);
            scale_c(m, n, beta, c, ldc);
            finish_small();
        });
    if (m * n * k <= kTinyWork && !packed_b)
        return team_serial([&] {
            note_team_size(1);
            gemm_reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            finish_small();
        });
    if (n == 1 && ldc == 1 && m > 1 && !packed_b) {  // a one-column C, stored as a row: see "One column"
        gemm_run<T>(!tb, !ta, 1, m, k, alpha, b, ldb, a, lda, beta, c, m, threads, FusedEpilogue<T>{});
        return team_serial([&] {
            if (fused.bias && (!fused.out || fused.ldo == 1))
                return bias_act_forward<T>(fused.bias, c, fused.out ? fused.out : c, m, 1, fused.act, fused.param);
            if (fused.z && fused.ldz == 1 && (!fused.out || fused.ldo == 1))   // the column as one row, too
                return act_backward_rows<T>(fused.z, fused.a, m, c, m, fused.out ? fused.out : c, m, 1, m,
                                            fused.act, fused.param);
            finish_small();
        });
    }
    if (threads < 1) threads = 1;
    GemmJob<T> job{ta, tb, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc, KBlocks(k), 0, 0, fused, packed_b};
    if (threads == 1)
        return team_serial([&] {
            plan_job(job, 1);
            note_gemm_k_groups(job.team.groups);
            note_gemm_direct((job.direct_b ? 1 : 0) | (job.direct_a ? 2 : 0));
            note_team_size(1);
            gemm_item(job, 0, 0);
        });
    plan_job(job, threads);
    note_gemm_k_groups(job.team.groups);
    note_gemm_direct((job.direct_b ? 1 : 0) | (job.direct_a ? 2 : 0));
    run_team(job, threads);
}

template <class T>
void gemm_packed(bool ta, bool tb, index m, index n, index k, T alpha, const T* a, index lda,
                 const T* b, index ldb, T beta, T* c, index ldc, int threads) {
    gemm_run<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, FusedEpilogue<T>{});
}

// z = op(A) @ op(B) + bias (row broadcast), out = act(z); alpha = 1, beta = 0 (z and out
// are never read before written). Bit-identical to gemm then bias_act_forward on the same
// ISA: the epilogue of each tile's last K block adds the bias in T and applies activate<T>
// while the tile is in registers. out may be z: then only act(z) is stored (full tiles
// skip z's store; a fused trainer's layer whose backward needs only a: keep_outputs_only).
template <class T>
FusedEpilogue<T> bias_act_epilogue(const T* bias, const T* z, T* out, index ldo, Activation act, T param) {
    FusedEpilogue<T> fused;
    fused.bias = bias;
    fused.out = out == z && act == Activation::linear ? nullptr : out;
    fused.ldo = ldo;
    fused.act = act;
    fused.param = param;
    return fused;
}

template <class T>
void gemm_bias_act(bool ta, bool tb, index m, index n, index k, const T* a, index lda,
                   const T* b, index ldb, const T* bias, T* z, index ldz, T* out, index ldo,
                   Activation act, T param, int threads) {
    gemm_run<T>(ta, tb, m, n, k, T(1), a, lda, b, ldb, T(0), z, ldz, threads,
                bias_act_epilogue(bias, z, out, ldo, act, param));
}

// dx = op(A) @ op(B) (alpha 1, beta 0), dz = dx * act'(z) with a = act(z) (z and a of
// row stride ldz): the backward of the layer below fused into the input gradient's GEMM.
// Bit-identical to gemm then act_backward on the same ISA: each tile of the last K block
// is finished (dx rounded to T), then multiplied by the derivative as act_backward does it
// (FusedEpilogue, gemm_microkernel.hpp). dx == dz: only dz is written. dx and dz are never
// read before written; z and a are not outputs.
template <class T>
FusedEpilogue<T> act_backward_epilogue(const T* z, const T* act_z, index ldz, const T* dx, T* dz, index lddz,
                                       Activation act, T param) {
    return FusedEpilogue<T>{nullptr, z, act_z, ldz, dz == dx ? nullptr : dz, lddz, act, param};
}

template <class T>
void gemm_act_backward(bool ta, bool tb, index m, index n, index k, const T* a, index lda, const T* b,
                       index ldb, const T* z, const T* act_z, index ldz, T* dx, index lddx, T* dz, index lddz,
                       Activation act, T param, int threads) {
    gemm_run<T>(ta, tb, m, n, k, T(1), a, lda, b, ldb, T(0), dx, lddx, threads,
                act_backward_epilogue(z, act_z, ldz, dx, dz, lddz, act, param));
}

// ---- pre-packed B -----------------------------------------------------------------------

// packed <- op(B) (k x n) in the layout above (packed_b_size(n, k) elements): the packing
// the driver would do per call, done once.
template <class T>
void pack_b(bool tb, index n, index k, const T* b, index ldb, T* packed) {
    constexpr index NR = GemmTile<T>::NR;
    const KBlocks kb(k);
    for (index blk = 0; blk < kb.count; ++blk) {
        const index p0 = kb.start(blk), kc = kb.size(blk);
        T* block = packed + packed_block_offset<T>(n, p0);
        for (index jp = 0; jp * NR < n; ++jp) pack_b_panel(tb, b, ldb, p0, kc, 0, n, jp, block + jp * NR * kc);
    }
}

// gemm_bias_act with A untransposed and B pre-packed by pack_b: the same bits as
// gemm_bias_act(false, tb, ...) on the unpacked B.
template <class T>
void gemm_bias_act_packed(index m, index n, index k, const T* a, index lda, const T* packed_b,
                          const T* bias, T* z, index ldz, T* out, index ldo, Activation act, T param,
                          int threads) {
    gemm_run<T>(false, false, m, n, k, T(1), a, lda, nullptr, 0, T(0), z, ldz, threads,
                bias_act_epilogue(bias, z, out, ldo, act, param), packed_b);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
