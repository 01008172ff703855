// bfloat16 GEMM: C = alpha * bf16(op(A)) @ bf16(op(B)) + beta * C, float32 in and out.
//
// Contract (Bf16KernelTable::gemm in common.hpp)
// ----------------------------------------------
//   op(A), op(B), C, the leading dimensions, beta == 0 (C never read), k == 0 (C = beta *
//   C) and alpha as KernelTable::gemm (gemm.hpp). Every operand element is rounded to
//   bfloat16 as VCVTNEPS2BF16 rounds it (to_bf16 below): to nearest, ties to even, a
//   float32 subnormal to a zero of its sign, a NaN to a quiet NaN, past the largest
//   bfloat16 to infinity.
//
// Arithmetic
// ----------
//   K is taken in pairs (2q, 2q + 1), q ascending, a missing last element 0. For every C
//   element, in float32:
//
//       acc = +0;  for q ascending:  acc = acc + A(i, 2q+1) B(2q+1, j)
//                                    acc = acc + A(i, 2q) B(2q, j)
//       C = alpha * acc  (beta == 0),  else  C = alpha * acc + beta * C
//
//   A product of two bfloat16 values is exact in float32 (8 + 8 significant bits), so every
//   step rounds once, to nearest even. This is VDPBF16PS's order (odd element of the pair
//   first; measured bit for bit, tests/kernels/test_gemm_bf16.py). VDPBF16PS also reads
//   a subnormal accumulator as zero and flushes a subnormal result to zero; the portable
//   path (generic, avx2, avx512: the pairs widened back to float32 and multiplied-added in
//   IEEE arithmetic) keeps them, so the paths agree bit for bit until a partial sum falls
//   below 2^-126, and each such step then differs by less than 2^-126 (docs/bfloat16.md).
//   One chain over the whole of K (no K blocks): a result does not depend on the tile
//   grid, the thread count, or the other rows of the batch. (The amx level keeps the
//   contract but not this order: gemm_amx.hpp.)
//
// Packing (the one place operands are converted; each element once per call)
// --------------------------------------------------------------------------
//   op(B) in panels of NR = NV * W columns: the pair word at panel[q * NR + j] holds
//   bf16(B(2q, j)) in its low 16 bits and bf16(B(2q + 1, j)) in its high 16 bits, columns
//   past n zero, pair rows past K2 up to the engine's panel_pairs zero. Packed once per
//   call, shared by the threads.
//   op(A) in blocks of at most kBf16MC rows: row r's pair words bf16(A(r, 2q)) |
//   bf16(A(r, 2q + 1)) << 16, q < K2 = ceil(k / 2), rows K2P words apart, rows up to a
//   multiple of MR zero. Packed by the thread that computes the block.
//
// The driver (gemm_bf16_run) runs an engine per thread: VectorEngine here, AmxEngine on
// the amx level. VectorEngine's microkernel: an MR x NR tile over all K2 pairs, the
// accumulators in registers. Per pair: NV vector loads of B's pair words and MR
// broadcasts of A's, then MR * NV VDPBF16PS (avx512_bf16), or on the portable path each
// pair word split into its odd (high half) and even (low half) float32 values and two
// fma per accumulator.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../parallel.hpp"
#include "../simd/vec.hpp"
#include "gemm.hpp"   // the fused epilogues (bias_act_epilogue, act_backward_epilogue)

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

using Word = std::uint32_t;   // a pair of bfloat16 values, the even element in the low half
typedef Word WordVec __attribute__((vector_size(kVecBytes)));
constexpr index kWords = kVecBytes / index(sizeof(Word));

struct Bf16Tile {
    static constexpr int NV = 2;
    static constexpr int MR = kVecBytes >= 64 ? 12 : kVecBytes >= 32 ? 6 : 4;
    static constexpr index NR = NV * kWords;
};
constexpr index kBf16MC = 144;   // rows of an A block: a multiple of every MR

inline index imax(index x, index y) { return x > y ? x : y; }

// float32 -> bfloat16 bits in the low half of each lane, as VCVTNEPS2BF16 (the contract).
inline WordVec to_bf16(Vec<float> x) {
    const WordVec u = (WordVec)x;
    const WordVec rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const WordVec is_nan = (WordVec)((u & 0x7fffffffu) > 0x7f800000u);
    const WordVec is_subnormal = (WordVec)((u & 0x7f800000u) == 0u);
    const WordVec quiet_nan = (u >> 16) | 0x40u, signed_zero = (u >> 16) & 0x8000u;
    return is_nan ? quiet_nan : is_subnormal ? signed_zero : rounded;
}

// Pair words from the bfloat16 bits of the even and the odd elements.
inline WordVec pair_words(WordVec even, WordVec odd) { return even | (odd << 16); }

// Lanes 0, 2, 4, ... (Offset 0) or 1, 3, 5, ... (Offset 1) of the concatenation lo:hi.
template <int Offset, int... L>
inline WordVec every_other(WordVec lo, WordVec hi, LaneSeq<L...>) {
    return __builtin_shufflevector(lo, hi, (2 * L + Offset)...);
}

inline void store_words(Word* dst, WordVec w, index n) { std::memcpy(dst, &w, sizeof(Word) * std::size_t(n)); }

// `count` consecutive floats -> ceil(count / 2) pair words at out[q * stride].
inline void pack_run(const float* x, index count, Word* out, index stride) {
    constexpr index W = kWords;
    using Lanes = typename MakeLanes<int(W)>::type;
    for (index p = 0; p < count; p += 2 * W) {
        const index left = count - p;
        const Vec<float> lo = left >= W ? load<float>(x + p) : load_part<float>(x + p, left, 0.0f);
        const Vec<float> hi = left >= 2 * W ? load<float>(x + p + W)
                              : left > W    ? load_part<float>(x + p + W, left - W, 0.0f)
                                            : splat<float>(0.0f);
        const WordVec bl = to_bf16(lo), bh = to_bf16(hi);
        const WordVec w = pair_words(every_other<0>(bl, bh, Lanes{}), every_other<1>(bl, bh, Lanes{}));
        const index words = imin(W, (left + 1) / 2);
        if (stride == 1) store_words(out + p / 2, w, words);
        else
            for (index l = 0; l < words; ++l) out[(p / 2 + l) * stride] = w[l];
    }
}

// Two runs of `count` floats, the even elements x0 and the odd ones x1 (null: zeros) ->
// `count` pair words at out[i * stride].
inline void pack_two_runs(const float* x0, const float* x1, index count, Word* out, index stride) {
    constexpr index W = kWords;
    for (index i = 0; i < count; i += W) {
        const index n = imin(W, count - i);
        auto get = [&](const float* x) {
            if (!x) return WordVec{};
            return to_bf16(n == W ? load<float>(x + i) : load_part<float>(x + i, n, 0.0f));
        };
        const WordVec w = pair_words(get(x0), get(x1));
        if (stride == 1) store_words(out + i, w, n);
        else
            for (index l = 0; l < n; ++l) out[(i + l) * stride] = w[l];
    }
}

// op(A)[i0 : i0+rows, :] -> rows of k2p words (the contract), padded to MR rows with zeros.
inline void pack_a_bf16(bool ta, const float* a, index lda, index i0, index rows, index k, index k2p, Word* dst) {
    const index k2 = (k + 1) / 2;
    if (!ta) {
        for (index r = 0; r < rows; ++r) pack_run(a + (i0 + r) * lda, k, dst + r * k2p, 1);
    } else {  // A stored k x m: rows 2q and 2q + 1 of the storage give pair q of every row
        for (index q = 0; q < k2; ++q) {
            const float* even = a + 2 * q * lda + i0;
            pack_two_runs(even, 2 * q + 1 < k ? even + lda : nullptr, rows, dst + q, k2p);
        }
    }
    for (index r = rows; r < round_up(rows, Bf16Tile::MR); ++r) std::memset(dst + r * k2p, 0, sizeof(Word) * std::size_t(k2));
}

// Panel jp of op(B) (columns jp * NR ...) -> k2 x NR words, columns past n zero.
inline void pack_b_bf16(bool tb, const float* b, index ldb, index n, index k, index jp, Word* dst) {
    constexpr index NR = Bf16Tile::NR;
    const index k2 = (k + 1) / 2, j0 = jp * NR, valid = imin(NR, n - j0);
    if (valid < NR) std::memset(dst, 0, sizeof(Word) * std::size_t(k2 * NR));
    if (tb) {  // B stored n x k: column j of op(B) is a run of k floats
        for (index j = 0; j < valid; ++j) pack_run(b + (j0 + j) * ldb, k, dst + j, NR);
    } else {
        for (index q = 0; q < k2; ++q) {
            const float* even = b + 2 * q * ldb + j0;
            pack_two_runs(even, 2 * q + 1 < k ? even + ldb : nullptr, valid, dst + q * NR, 1);
        }
    }
}

// acc[r][v] += the pair (a, b): both products, the odd one first (the contract).
inline Vec<float> pair_step(Vec<float> acc, Word a, WordVec b) {
#if defined(FASTMLP_ISA_AVX512_BF16)
    return (Vec<float>)_mm512_dpbf16_ps((__m512)acc, (__m512bh)_mm512_set1_epi32(int(a)), (__m512bh)b);
#else
    const Vec<float> b_odd = (Vec<float>)(b & 0xffff0000u), b_even = (Vec<float>)(b << 16);
    float a_odd, a_even;
    const Word odd_bits = a & 0xffff0000u, even_bits = a << 16;
    std::memcpy(&a_odd, &odd_bits, sizeof a_odd);
    std::memcpy(&a_even, &even_bits, sizeof a_even);
    return fma(splat<float>(a_even), b_even, fma(splat<float>(a_odd), b_odd, acc));
#endif
}

// C[0 : mr, 0 : nr] = alpha * acc(r, v) (+ beta * C) a vector at a time (vector v of row r:
// columns v * W ...; the columns past nr are never touched), then the fused epilogue as
// gemm_bias_act and gemm_act_backward finish their rows.
template <int MRX, int NVX, class Acc>
inline void finish_tile_bf16(const Acc& acc, float alpha, float beta, float* c, index ldc, index mr, index nr,
                             const FusedEpilogue<float>& fused) {
    constexpr index W = kWords;
    const Epilogue e = beta == 0.0f ? Epilogue::overwrite : Epilogue::scale_add;
    const Vec<float> va = splat<float>(alpha), vb = splat<float>(beta), zero = splat<float>(0.0f);
#pragma GCC unroll 16
    for (int r = 0; r < MRX; ++r) {
        if (r >= mr) break;
#pragma GCC unroll 8
        for (int v = 0; v < NVX; ++v) {
            const index cols = nr - v * W;
            if (cols <= 0) break;
            float* cp = c + r * ldc + v * W;
            if (cols >= W) {
                store<float>(cp, apply_epilogue(e, acc(r, v), e == Epilogue::overwrite ? zero : load<float>(cp), va, vb));
            } else {
                const Vec<float> old = e == Epilogue::overwrite ? zero : load_part<float>(cp, cols, 0.0f);
                store_part<float>(cp, apply_epilogue(e, acc(r, v), old, va, vb), cols);
            }
        }
    }
    if (fused.any()) finish_fused_rows(fused, c, ldc, 0, mr, nr);
}

// A tile of MRX rows and NVX vectors of columns over k2 pairs (A rows k2p words apart;
// vector v's B words at b + (v / NV) * panel_stride + q * NR + (v % NV) * W: NVX > NV spans
// consecutive panels, so one row has enough independent chains), finished into
// C[0 : mr, 0 : nr], then through the fused epilogue (at the tile) as gemm_bias_act and
// gemm_act_backward finish their rows: the same bits as the plain product followed by
// bias_act_forward or act_backward. Every instance does each element's steps in the same
// order, so the bits do not depend on which one a tile runs.
template <int MRX, int NVX>
inline void tile_bf16(index k2, const Word* a, index k2p, const Word* b, index panel_stride, float alpha,
                      float beta, float* c, index ldc, index mr, index nr, const FusedEpilogue<float>& fused) {
    constexpr int NV = Bf16Tile::NV;
    constexpr index W = kWords, NR = Bf16Tile::NR;
    Vec<float> acc[MRX][NVX];
    for (int r = 0; r < MRX; ++r)
        for (int v = 0; v < NVX; ++v) acc[r][v] = splat<float>(0.0f);
    for (index q = 0; q < k2; ++q) {
        WordVec bq[NVX];
#pragma GCC unroll 8
        for (int v = 0; v < NVX; ++v)
            std::memcpy(&bq[v], b + (v / NV) * panel_stride + q * NR + (v % NV) * W, sizeof(WordVec));
#pragma GCC unroll 16
        for (int r = 0; r < MRX; ++r) {
            const Word aq = a[r * k2p + q];
#pragma GCC unroll 8
            for (int v = 0; v < NVX; ++v) acc[r][v] = pair_step(acc[r][v], aq, bq[v]);
        }
    }
    finish_tile_bf16<MRX, NVX>([&](int r, int v) { return acc[r][v]; }, alpha, beta, c, ldc, mr, nr, fused);
}

// One tile row of an A block (rows <= MR of them at a), across panels [jp0, jp1) of C's
// columns: MR-row tiles; a short last row of at most kBf16Short rows, the short instance;
// one row (inference on one sample), kBf16OneRowPanels panels per call, then single ones.
constexpr int kBf16Short = 4;
constexpr int kBf16OneRowPanels = 4;

inline void tile_row_bf16(index k2, const Word* a, index k2p, const Word* bpack, index jp0, index jp1,
                          float alpha, float beta, float* c, index ldc, index row, index rows, index n,
                          const FusedEpilogue<float>& fused) {
    constexpr index NR = Bf16Tile::NR;
    constexpr int NV = Bf16Tile::NV, MR = Bf16Tile::MR;
    const index stride = k2 * NR;
    auto run = [&](auto mrx, auto nvx, index jp) {
        constexpr int NVX = decltype(nvx)::value;
        const index col = jp * NR, cols = imin(n - col, NVX * kWords);
        tile_bf16<decltype(mrx)::value, NVX>(k2, a, k2p, bpack + jp * stride, stride, alpha, beta,
                                            c + row * ldc + col, ldc, rows, cols,
                                            fused.any() ? fused.at(row, col) : fused);
    };
    using Rows1 = std::integral_constant<int, 1>;
    using Panel = std::integral_constant<int, NV>;
    index jp = jp0;
    if (rows == 1)
        for (; jp + kBf16OneRowPanels <= jp1; jp += kBf16OneRowPanels)
            run(Rows1{}, std::integral_constant<int, NV * kBf16OneRowPanels>{}, jp);
    for (; jp < jp1; ++jp) {
        if (rows == 1) run(Rows1{}, Panel{}, jp);
        else if (rows <= kBf16Short) run(std::integral_constant<int, kBf16Short>{}, Panel{}, jp);
        else run(std::integral_constant<int, MR>{}, Panel{}, jp);
    }
}

// f(begin, end, worker) over [0, items) on `threads` threads (parallel_for: in a trainer's
// team, its first `threads` members, then a barrier), or serially on one; worker < threads
// numbers the thread among them (its seat in the team or in the region parallel_for
// opened; 0 when serial, whatever region the caller itself runs in: a predictor's pass).
template <class F>
inline void bf16_region(index items, int threads, F f) {
    if (!team_seat().team && (threads <= 1 || items <= 1)) return f(index(0), items, 0);
    parallel_for(items, threads, [&](index begin, index end) {
        const TeamSeat& seat = team_seat();
        f(begin, end, seat.team ? seat.id : region_seat().id);
    });
}

// The engine of the vector paths (VDPBF16PS or the portable pair steps): packed panels hold
// the K2 pairs exactly; a thread's rows go tile row by tile row (tile_row_bf16). The amx
// level has its own (gemm_amx.hpp): the driver below is the same for both.
struct VectorEngine {
    static index panel_pairs(index k2) { return k2; }
    static void finish_a(Word*, index, index, index) {}
    void block(index k2, const Word* apack, index k2p, const Word* bpack, index jp0, index jp1, float alpha,
               float beta, float* c, index ldc, index row, index rows, index n, const FusedEpilogue<float>& fused) {
        for (index ir = 0; ir < rows; ir += Bf16Tile::MR)
            tile_row_bf16(k2, apack + ir * k2p, k2p, bpack, jp0, jp1, alpha, beta, c, ldc, row + ir,
                          imin(Bf16Tile::MR, rows - ir), n, fused);
    }
};

// Elements (pair words, 4 bytes each) of the packed op(B) of k x n: Engine's panels.
template <class Engine>
index packed_b_size_bf16(index n, index k) { return round_up(n, Bf16Tile::NR) * Engine::panel_pairs((k + 1) / 2); }

// Panel jp of op(B) as Engine keeps it: pack_b_bf16's K2 pair rows, then zero rows up to
// Engine::panel_pairs(K2).
template <class Engine>
void pack_panel_bf16(bool tb, const float* b, index ldb, index n, index k, index jp, Word* dst) {
    constexpr index NR = Bf16Tile::NR;
    const index k2 = (k + 1) / 2, rows = Engine::panel_pairs(k2);
    pack_b_bf16(tb, b, ldb, n, k, jp, dst);
    std::memset(dst + k2 * NR, 0, sizeof(Word) * std::size_t((rows - k2) * NR));
}

// packed <- op(B) as the driver packs it per call (every panel, panel jp at
// jp * panel_pairs * NR words), done once: the inference weights.
template <class Engine>
void pack_b_all_bf16(bool tb, index n, index k, const float* b, index ldb, float* packed) {
    const index stride = Engine::panel_pairs((k + 1) / 2) * Bf16Tile::NR;
    Word* const words = reinterpret_cast<Word*>(packed);
    for (index jp = 0; jp * Bf16Tile::NR < n; ++jp) pack_panel_bf16<Engine>(tb, b, ldb, n, k, jp, words + jp * stride);
}

// The driver of every entry: op(B) packed once per call (or given pre-packed), then row
// blocks x column ranges of C dealt to the threads, each packing its A block and running
// it on its own Engine. In a trainer's team every member calls it with the same
// arguments: the workspace is the team's (team_buffer), the members share the work.
template <class Engine>
void gemm_bf16_run(bool ta, bool tb, index m, index n, index k, float alpha, const float* a, index lda,
                   const float* b, index ldb, float beta, float* c, index ldc, int threads,
                   const FusedEpilogue<float>& fused, const float* packed_b = nullptr) {
    constexpr index NR = Bf16Tile::NR;
    if (m <= 0 || n <= 0) return;
    if (k <= 0)
        return team_serial([&] {
            scale_c(m, n, beta, c, ldc);
            finish_fused_rows(fused, c, ldc, 0, m, n);
        });
    const index k2 = (k + 1) / 2, panel_words = Engine::panel_pairs(k2) * NR;
    const index k2p = round_up(k2, 16) + 16;   // rows of an A block a cache line off a multiple
    const index panels = (n + NR - 1) / NR, row_blocks = (m + kBf16MC - 1) / kBf16MC;
    // Enough items for the team: column ranges of whole panels when the row blocks are few.
    const index chunks = imin(panels, imax(index(1), (index(threads) + row_blocks - 1) / row_blocks));
    const index chunk_panels = (panels + chunks - 1) / chunks;
    const std::size_t b_bytes = packed_b ? 0 : std::size_t(round_up(panels * panel_words * index(sizeof(Word)), 64));
    const std::size_t a_bytes = std::size_t(round_up(kBf16MC * k2p * index(sizeof(Word)), 64));
    const int team = int(imax(index(1), imin(index(threads), row_blocks * chunks)));
    const std::size_t need = b_bytes + a_bytes * std::size_t(team);
    Team* const shared = current_team();
    char* ws = shared ? team_buffer(shared->gemm, need) : tl_workspace.reserve(need);
    const Word* bpack = reinterpret_cast<const Word*>(packed_b);
    if (!packed_b) {
        Word* const own = reinterpret_cast<Word*>(ws);
        bf16_region(panels, team, [&](index p0, index p1, int) {
            for (index jp = p0; jp < p1; ++jp) pack_panel_bf16<Engine>(tb, b, ldb, n, k, jp, own + jp * panel_words);
        });
        bpack = own;
    }
    bf16_region(row_blocks * chunks, team, [&](index i0, index i1, int worker) {
        Word* const apack = reinterpret_cast<Word*>(ws + b_bytes + a_bytes * std::size_t(worker));
        Engine engine;
        for (index item = i0; item < i1; ++item) {
            const index ic = item / chunks * kBf16MC, rows = imin(kBf16MC, m - ic);
            const index jp0 = item % chunks * chunk_panels, jp1 = imin(panels, jp0 + chunk_panels);
            pack_a_bf16(ta, a, lda, ic, rows, k, k2p, apack);
            Engine::finish_a(apack, rows, k2, k2p);
            engine.block(k2, apack, k2p, bpack, jp0, jp1, alpha, beta, c, ldc, ic, rows, n, fused);
        }
    });
}

template <class Engine>
void gemm_bf16(bool ta, bool tb, index m, index n, index k, float alpha, const float* a, index lda,
               const float* b, index ldb, float beta, float* c, index ldc, int threads) {
    gemm_bf16_run<Engine>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, FusedEpilogue<float>{});
}

// gemm_bias_act's contract (common.hpp) on the bfloat16 product.
template <class Engine>
void gemm_bias_act_bf16(bool ta, bool tb, index m, index n, index k, const float* a, index lda, const float* b,
                        index ldb, const float* bias, float* z, index ldz, float* out, index ldo, Activation act,
                        float param, int threads) {
    gemm_bf16_run<Engine>(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, z, ldz, threads,
                          bias_act_epilogue(bias, z, out, ldo, act, param));
}

// gemm_act_backward's contract on the bfloat16 product.
template <class Engine>
void gemm_act_backward_bf16(bool ta, bool tb, index m, index n, index k, const float* a, index lda,
                            const float* b, index ldb, const float* z, const float* act_z, index ldz, float* dx,
                            index lddx, float* dz, index lddz, Activation act, float param, int threads) {
    gemm_bf16_run<Engine>(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, dx, lddx, threads,
                          act_backward_epilogue(z, act_z, ldz, dx, dz, lddz, act, param));
}

// gemm_bias_act_bf16 with A untransposed and B pre-packed by pack_b_all_bf16: the same bits.
template <class Engine>
void gemm_bias_act_packed_bf16(index m, index n, index k, const float* a, index lda, const float* packed_b,
                               const float* bias, float* z, index ldz, float* out, index ldo, Activation act,
                               float param, int threads) {
    gemm_bf16_run<Engine>(false, false, m, n, k, 1.0f, a, lda, nullptr, 0, 0.0f, z, ldz, threads,
                          bias_act_epilogue(bias, z, out, ldo, act, param), packed_b);
}

// The bfloat16 GemmTable entries on Engine.
template <class Engine>
void fill_bf16_products(GemmTable<float>& t) {
    t.gemm = &gemm_bf16<Engine>;
    t.gemm_bias_act = &gemm_bias_act_bf16<Engine>;
    t.gemm_act_backward = &gemm_act_backward_bf16<Engine>;
    t.packed_b_size = &packed_b_size_bf16<Engine>;
    t.pack_b = &pack_b_all_bf16<Engine>;
    t.gemm_bias_act_packed = &gemm_bias_act_packed_bf16<Engine>;
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
