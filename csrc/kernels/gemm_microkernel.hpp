// The GEMM microkernel: one MR x NR tile of C from one packed micro-panel of A and one of B,
// written once against the vector wrapper (Vec<T>, load, splat, fma) and compiled per ISA.
// The contract, the packed layouts and the diagram are in gemm.hpp.
//
// Register budget (Vec = one vector register; NR = NV * lanes<T>):
//
//   ISA       vector regs  tile (float)  tile (double)  accumulators  + B row  + A bcast
//   avx512        32        12 x 32        12 x 16        24            2        1   = 27
//   avx2          16         6 x 16         6 x  8        12            2        1   = 15
//   generic       16         4 x  8         4 x  4         8            2        1   = 11
//                                                       (generic has no FMA: fma() is a
//                                                        multiply and an add, so it also
//                                                        needs a temporary per product)
//
// MR is chosen from the register count (kVecBytes: 64 -> 32 registers, else 16) and NV = 2
// everywhere, so one tile is NV vector loads of B and MR broadcasts of A per k, feeding
// MR * NV independent FMA chains: enough to hide the FMA latency on every ISA. The driver
// also instantiates NV = 1 for a last panel of at most one vector of columns (n = 10, say):
// the same per-element arithmetic, half the wasted lanes.
#pragma once
#include <type_traits>

#include "../simd/vec.hpp"
#include "activations.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
struct GemmTile {
    static constexpr int NV = 2;                                  // vectors per row of the tile
    static constexpr int MR = kVecBytes >= 64 ? 12 : kVecBytes >= 32 ? 6 : 4;
    static constexpr int MRS = MR >= 12 ? 4 : 2;                   // short tile rows (gemm.hpp)
    static constexpr int MRL = MR - 2;   // a last tile row of MRS < mr <= MRL rows (gemm.hpp)
    // One row across NPR panels at once (inference on one sample): NPR * NV accumulators,
    // as many B vectors and a broadcast fit the registers (avx512 17 of 32, else 9 of 16).
    static constexpr int NPR = kVecBytes >= 64 ? 4 : 2;
    static constexpr index W = lanes<T>;
    static constexpr index NR = NV * W;
};

// How a finished accumulator meets C. Used for vectors and scalars alike with the same
// operations in the same order, so interior and edge elements round identically
// (-ffp-contract=off: nothing here is fused).
enum class Epilogue : int {
    overwrite,    // first K block, beta == 0:  C = alpha * acc        (C is never read)
    scale_add,    // first K block, beta != 0:  C = alpha * acc + beta * C
    accumulate,   // later K blocks:            C = C + alpha * acc
};

// The fused epilogues, applied where C is finished (after its last K block):
//   bias + activation (gemm_bias_act; bias set), by the microkernel on each tile: z = C +
//     bias[j] (one rounding in T, as bias_act_forward does it), C = z, out = act(z)
//     (activate<T>, the same vector function bias_act_forward uses). out == nullptr: only
//     z is written (the linear activation with out == z); out == C: act(z) over z.
//   backward of the activation (gemm_act_backward; z set): C = dx as a plain GEMM has it,
//     out = dx * act'(z) (z and a = act(z) with row stride ldz; out == nullptr: over dx in
//     C, which is then not kept), each product as act_backward_rows computes it (the
//     function act_backward runs; the same derivative<T>): in registers on full tiles
//     where the derivative is cheap (cheap_derivative: no exp; dx then written only when
//     kept), else by act_backward_rows from the stored tile.
// Neither set: a plain GEMM. Every pointer is at the first row and column of the part of
// C it goes with (at()); bias at its first column.
template <class T>
struct FusedEpilogue {
    const T* bias = nullptr;
    const T* z = nullptr;
    const T* a = nullptr;
    index ldz = 0;
    T* out = nullptr;
    index ldo = 0;
    Activation act = Activation::linear;
    T param = T(0);

    bool any() const { return bias || z; }
    // The same epilogue for the part of C that starts at row i, column j.
    FusedEpilogue at(index i, index j) const {
        FusedEpilogue f = *this;
        if (bias) f.bias += j;
        if (z) f.z += i * ldz + j, f.a += i * ldz + j;
        if (out) f.out += i * ldo + j;
        return f;
    }
};

// The epilogue of K block blk (gemm.hpp, the contract).
inline Epilogue epilogue_for(index blk, double beta) {
    return blk > 0 ? Epilogue::accumulate : beta == 0 ? Epilogue::overwrite : Epilogue::scale_add;
}

template <class V, class S>
inline V apply_epilogue(Epilogue e, V acc, V c_old, S alpha, S beta) {
    switch (e) {
        case Epilogue::overwrite: return alpha * acc;
        case Epilogue::scale_add: return alpha * acc + beta * c_old;
        default: return c_old + alpha * acc;
    }
}

// Rows [0, mr) x [0, nr) of a finished C (row stride ldc) through the backward epilogue.
// Out of line: one copy per dtype, not one per microkernel instance and activation.
template <class T>
[[gnu::noinline]] void finish_act_backward(T* c, index ldc, index mr, index nr, const FusedEpilogue<T>& f) {
    act_backward_rows<T>(f.z, f.a, f.ldz, c, ldc, f.out ? f.out : c, f.out ? f.ldo : ldc, mr, nr, f.act, f.param);
}

// An edge tile (mr < MR or nr < NR) finished from its spilled accumulators, tile[r * ld +
// j] (whole vectors: ld is a multiple of W), with the same epilogue as full tiles. On
// 64-byte vectors a vector at a time (masked loads and stores for a row's last columns),
// a cheap derivative's backward in the same pass (a training epoch of the digits network,
// 9 steps whose 100- and 10-column layers end in partial vectors: 1403 -> 1393 us,
// medians of 50); elsewhere element by element, the backward after. Kept out of line: inlined
// into every microkernel instance it made the driver's one big function spill registers
// (measured: 192 x 100 x 10 NN float64, all packed, 11.4 -> 19.2 us with two more
// instances inlined).
template <class T>
[[gnu::noinline]] void finish_edge_tile(T* tile, index ld, T alpha, T beta, Epilogue e, T* c, index ldc,
                                        index mr, index nr, const FusedEpilogue<T>& ba) {
    constexpr index W = lanes<T>;
    if constexpr (kVecBytes == 64) {
        const Vec<T> va = splat<T>(alpha), vb = splat<T>(beta);
        const bool keep_dx = ba.out != nullptr;
        with_activation(ba.act, [&](auto kind) {
            constexpr bool cheap = cheap_derivative(decltype(kind)::value);
            for (index r = 0; r < mr; ++r)
                for (index j = 0; j < nr; j += W) {
                    const index k = nr - j < W ? nr - j : W;
                    T* cp = c + r * ldc + j;
                    const Vec<T> old = e == Epilogue::overwrite ? Vec<T>{} : load_part<T>(cp, k, T(0));
                    const Vec<T> x = apply_epilogue(e, load<T>(tile + r * ld + j), old, va, vb);
                    if (ba.bias) {
                        const Vec<T> z = x + load_part<T>(ba.bias + j, k, T(0));
                        if (ba.out != c) store_part<T>(cp, z, k);
                        if (ba.out) store_part<T>(ba.out + r * ba.ldo + j, activate<T>(kind, z, ba.param), k);
                        continue;
                    }
                    if constexpr (cheap) if (ba.z) {   // dz = dx * act'(z) as act_backward_rows has it
                        if (keep_dx) store_part<T>(cp, x, k);
                        const index at = r * ba.ldz + j;
                        const Vec<T> d = derivative<T>(kind, load_part<T>(ba.z + at, k, T(0)),
                                                       load_part<T>(ba.a + at, k, T(0)), ba.param);
                        store_part<T>(keep_dx ? ba.out + r * ba.ldo + j : cp, x * d, k);
                        continue;
                    }
                    store_part<T>(cp, x, k);
                }
        });
        if (ba.z && !cheap_derivative(ba.act)) finish_act_backward<T>(c, ldc, mr, nr, ba);
        return;
    }
    for (index r = 0; r < mr; ++r)
        for (index j = 0; j < nr; ++j) {
            T* cp = c + r * ldc + j;
            const T old = e == Epilogue::overwrite ? T(0) : *cp;
            T z = apply_epilogue(e, tile[r * ld + j], old, alpha, beta);
            if (ba.bias) z = z + ba.bias[j];
            *cp = tile[r * ld + j] = z;
        }
    if (ba.z) return finish_act_backward<T>(c, ldc, mr, nr, ba);
    if (!ba.out) return;
    // The activation, a vector at a time from the tile (lanes are independent, so the
    // lanes past nr, never stored, do not matter).
    with_activation(ba.act, [&](auto kind) {
        for (index r = 0; r < mr; ++r)
            for (index j = 0; j < nr; j += W) {
                const Vec<T> av = activate<T>(kind, load<T>(tile + r * ld + j), ba.param);
                if (nr - j >= W) store<T>(ba.out + r * ba.ldo + j, av);
                else store_part<T>(ba.out + r * ba.ldo + j, av, nr - j);
            }
    });
}

// C[0:mr, 0:nr] <- epilogue(alpha * sum_p a[r][p] * b[p][j]), p ascending from 0 to kc - 1.
//
//   a: A micro-panel, MR rows of kc values: packed, with the fixed row stride AS
//      (a[r * AS + p] = A(r, p), so each broadcast is one load at a constant offset), or,
//      with AS = 0, op(A) read in place with row stride a_ld (a[r * a_ld + p]), or with
//      AS = -1, A^T read in place (a[p * a_ld + r]: MR adjacent values per p; gemm.hpp,
//      "Direct A")
//   b: B micro-panel, kc x NR with rows b_ld apart (b[p * b_ld + j] = B(p, j)): packed
//      (b_ld = NR, or W for the one-vector instance; columns >= nr zero-padded) or op(B)
//      read in place (b_ld = ldb; then every column of the tile is a column of B);
//      with NV > GemmTile::NV the tile spans NV / GemmTile::NV adjacent full panels, panel
//      q at b + q * panel_stride (the one-row path: more accumulators than one panel gives)
//   c: row-major with leading dimension ldc; only the mr x nr corner is read or written
//
// Each accumulator starts at +0 and takes fma(A(r, p), B(p, j), acc) for p ascending: the
// only arithmetic, identical for every element of the tile, whether the tile is full or an
// edge. A full tile is finished straight into C; an edge tile (mr < MR or nr < NR) is
// spilled to a local buffer and finished element by element with the same epilogue.
//
// TB < kVecBytes (64-byte vectors only, NV = 1): a narrow tile of TB-byte vectors, for a
// last panel of at most TB / sizeof(T) columns. The same FMA per element; AMD's Zen 4
// runs a 64-byte FMA as two 32-byte halves, so the narrow tile of a 4-column float64
// tail takes half the time of a 64-byte one, whose upper lanes are padding. Always
// finished as an edge tile.
//
// NN = 1 (64-byte vectors only, NV = 1): a mixed tile, one full vector and then one narrow
// 32-byte vector a row (8 < nr <= 12 float64 columns, 16 < nr <= 24 float32: a 10-class
// output layer), its B rows a full panel's apart. One pass over A feeds both, where a
// full and a narrow tile called one after the other broadcast A twice. The full vector is
// finished as a full tile's when all MR rows are there, the narrow one as an edge tile.
template <class T, int MR, int NV, index AS, int TB = kVecBytes, int NN = 0>
inline void gemm_microkernel(index kc, const T* __restrict a, index a_ld, const T* __restrict b, index b_ld, T alpha,
                             T beta, Epilogue e, T* __restrict c, index ldc, index mr, index nr,
                             const FusedEpilogue<T>& ba = FusedEpilogue<T>{}, index panel_stride = 0) {
    static_assert(TB == kVecBytes || NV == 1, "a narrow tile has one vector per row");
    static_assert(NN == 0 || (kVecBytes == 64 && TB == kVecBytes && NV == 1), "a mixed tile is 64 + 32 bytes a row");
    using V = std::conditional_t<TB == kVecBytes, Vec<T>, VecBytes<T, TB>>;
    using VN = VecBytes<T, (kVecBytes >= 64 ? 32 : kVecBytes)>;   // the mixed tile's narrow vector
    constexpr index W = lanes<T>;
    constexpr index VW = TB / index(sizeof(T));        // lanes of V
    constexpr index NR = NV * VW;                      // the tile's columns (past them: NN narrow ones)
    const index a_row = AS > 0 ? AS : AS == 0 ? a_ld : 1;   // A(r, p) at a[r * a_row + p * a_col]
    const index a_col = AS < 0 ? a_ld : 1;
    constexpr int NVP = NV < GemmTile<T>::NV ? NV : GemmTile<T>::NV;   // vectors per panel row
    // B's row step in a packed panel: a full panel's for a mixed tile
    constexpr index PACKED_STEP = NN ? GemmTile<T>::NR : NVP * W;
    V acc[MR][NV];
    VN accn[MR];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
        accn[r] = VN{};
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = V{};
    }

    // The products, with B's row step a constant for packed panels (measured: a runtime
    // step there cost 3 % on 200 x 100 x 10 NN) and b_ld for B read in place.
    auto products = [&](auto b_step) {
#pragma GCC unroll 4
        for (index p = 0; p < kc; ++p) {
            V bv[NV];
            VN bn{};
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + (v / NVP) * panel_stride + (v % NVP) * W, sizeof(V));
            if constexpr (NN > 0) std::memcpy(&bn, b + W, sizeof(VN));
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) {
                const V av = a[r * a_row] - V{};  // a broadcast (x - 0 is x, -0 included)
#pragma GCC unroll 8
                for (int v = 0; v < NV; ++v) acc[r][v] = fma(av, bv[v], acc[r][v]);
                if constexpr (NN > 0) accn[r] = fma(a[r * a_row] - VN{}, bn, accn[r]);
            }
            a += a_col;
            b += b_step;
        }
    };
    if (b_ld == PACKED_STEP) products(std::integral_constant<index, PACKED_STEP>{});
    else products(b_ld);

    // A mixed tile's narrow columns [NR, nr), after its full vector: spilled, finished as an
    // edge tile.
    auto finish_narrow = [&] {
        if constexpr (NN > 0) {
            alignas(64) T tile[MR * W] = {};
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r) std::memcpy(tile + r * W, &accn[r], sizeof(VN));
            finish_edge_tile<T>(tile, W, alpha, beta, e, c + NR, ldc, mr, nr - NR, ba.at(0, NR));
        }
    };
    if constexpr (TB == kVecBytes) if (mr == MR && (NN > 0 ? nr > NR : nr == NR)) {
        const Vec<T> va = splat<T>(alpha), vb = splat<T>(beta);
        const Vec<T> zero = splat<T>(T(0));
        // f(r, v, cp, x) for every accumulator, x its finished value (the epilogue with C's
        // old value at cp where it reads one).
        auto each_finished = [&](auto f) {
#pragma GCC unroll 32
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) {
                    T* cp = c + r * ldc + v * W;
                    const Vec<T> old = e == Epilogue::overwrite ? zero : load<T>(cp);
                    f(r, v, cp, apply_epilogue(e, acc[r][v], old, va, vb));
                }
        };
        if (ba.bias) {
            Vec<T> bias[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) bias[v] = load<T>(ba.bias + v * W);
            each_finished([&](int r, int v, T* cp, Vec<T> x) {
                acc[r][v] = x + bias[v];
                if (ba.out != c) store<T>(cp, acc[r][v]);   // out == C: act(z) alone
            });
            if (ba.out) {
                with_activation(ba.act, [&](auto kind) {
#pragma GCC unroll 32
                    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
                        for (int v = 0; v < NV; ++v)
                            store<T>(ba.out + r * ba.ldo + v * W, activate<T>(kind, acc[r][v], ba.param));
                });
            }
            return finish_narrow();
        }
        if (ba.z && cheap_derivative(ba.act)) {   // dx in registers, dz = dx * act'(z) as act_backward_rows has it
            const bool keep_dx = ba.out != nullptr;
            with_activation(ba.act, [&](auto kind) {
                if constexpr (cheap_derivative(decltype(kind)::value)) {
                    each_finished([&](int r, int v, T* cp, Vec<T> dx) {
                        if (keep_dx) store<T>(cp, dx);
                        const index at = r * ba.ldz + v * W;
                        const Vec<T> d = derivative<T>(kind, load<T>(ba.z + at), load<T>(ba.a + at), ba.param);
                        store<T>(keep_dx ? ba.out + r * ba.ldo + v * W : cp, dx * d);
                    });
                }
            });
            return finish_narrow();
        }
        each_finished([&](int, int, T* cp, Vec<T> x) { store<T>(cp, x); });
        if (ba.z) finish_act_backward<T>(c, ldc, mr, NR, ba);   // the derivatives with exp
        return finish_narrow();
    }
    // whole vectors for finish_edge_tile; a narrow tile's lanes past NR zeroed
    constexpr index LD = NN > 0 ? NR + W : NR < W ? W : NR;
    alignas(64) T tile[MR * LD];
    if constexpr (NR < W || NN > 0) std::memset(tile, 0, sizeof tile);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) std::memcpy(tile + r * LD + v * VW, &acc[r][v], sizeof(V));
        if constexpr (NN > 0) std::memcpy(tile + r * LD + NR, &accn[r], sizeof(VN));
    }
    finish_edge_tile<T>(tile, LD, alpha, beta, e, c, ldc, mr, nr, ba);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
