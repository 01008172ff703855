// bfloat16 GEMM on AMX tiles (TDPBF16PS): gemm_bf16.hpp's contract, packing and driver on
// the amx level, with its own engine (AmxEngine) and its own order of sums.
//
// Tiles (palette 1, every tile 16 rows x 64 bytes)
// ------------------------------------------------
//   C: tmm0 tmm1 (rows 0-15, columns 0-15 and 16-31 of a panel), tmm2 tmm3 (rows 16-31);
//   A: tmm4 (rows 0-15), tmm5 (rows 16-31): 16 rows x 16 pair words of the A block;
//   B: tmm6 tmm7: 16 pair rows x 16 columns of the panel, the packed words as they lie
//   (the panel's pair rows are AMX's "VNNI" rows: pair q of column j at panel[q * NR + j]).
//   So that every tile is whole, K2 is padded to a multiple of 16 pairs with zero words in
//   both packed operands (panel_pairs, finish_a) and A blocks to a multiple of 16 rows; a
//   tile row's valid columns and rows are copied out of a 32 x 32 float32 scratch.
//
// Arithmetic (one element of C, K2 padded to 16 T pairs; docs/bfloat16.md)
// -------------------------------------------------------------------------
//   acc = +0; for each tile t of 16 pairs, in order (TDPBF16PS as the SDM describes it):
//       even = +0, odd = +0;  for q in the tile:  even = even + A(i, 2q) B(2q, j)
//                                                 odd  = odd  + A(i, 2q+1) B(2q+1, j)
//       acc = acc + (even + odd)
//   every step one float32 rounding to nearest even, subnormal inputs read as zero and
//   subnormal results flushed to zero. This is not VDPBF16PS's order: the amx level agrees
//   with the others within the bound of docs/bfloat16.md, not bit for bit. Whether the
//   hardware adds in exactly this order is measured where a CPU with AMX runs the tests
//   (tests/kernels/test_gemm_bf16.py compares it with EmulatedTiles).
//
// Two tile machines run the same engine: AmxTiles (the instructions; amx unit only) and
// EmulatedTiles (plain C++: the SDM's pseudo-code, with its faults checked), which the
// tests run on CPUs without AMX (_core._testing.emulate_amx).
#pragma once
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "gemm_bf16.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

constexpr int kTileRows = 16;    // rows of every tile: C and A rows, B pair rows
constexpr int kTileBytes = 64;   // bytes of a tile row: 16 float32 or 16 pair words
constexpr int kTileWords = kTileBytes / int(sizeof(Word));
static_assert(Bf16Tile::NR == 2 * kTileWords, "an amx panel is two B tiles wide (avx512 panels)");

// LDTILECFG's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
    std::uint8_t palette, start_row, reserved[14];
    std::uint16_t colsb[16];
    std::uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

inline TileConfig whole_tiles() {
    TileConfig cfg{};
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) {
        cfg.colsb[t] = kTileBytes;
        cfg.rows[t] = kTileRows;
    }
    return cfg;
}

#if defined(FASTMLP_ISA_AMX)
// The instructions. Every asm names the memory it reads or writes ("memory"), so the
// compiler neither sinks the packing's stores past a load nor reads the scratch early.
struct AmxTiles {
    void configure(const TileConfig& cfg) { __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory"); }
    void release() { __asm__ volatile("tilerelease" ::: "memory"); }
    template <int T>
    void zero() { __asm__ volatile("tilezero %%tmm%c0" ::"i"(T)); }
    template <int T>
    void load(const void* p, index stride) {
        __asm__ volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(p), "r"(stride), "i"(T) : "memory");
    }
    template <int T>
    void store(void* p, index stride) {
        __asm__ volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(p), "r"(stride), "i"(T) : "memory");
    }
    // tmm C += tmm A . tmm B (AT&T order: B, A, C).
    template <int C, int A, int B>
    void dot() { __asm__ volatile("tdpbf16ps %%tmm%c0, %%tmm%c1, %%tmm%c2" ::"i"(B), "i"(A), "i"(C)); }
};
#endif

// The tiles in memory, TDPBF16PS as the SDM's pseudo-code writes it; a use the hardware
// would fault on (#UD: no configuration, shapes that do not chain, rows or bytes past the
// palette) stops the process with the reason, as the instruction would.
class EmulatedTiles {
  public:
    void configure(const TileConfig& cfg) {
        check(cfg.palette == 1, "palette");
        for (int t = 0; t < 8; ++t) {
            check(cfg.rows[t] <= kTileRows && cfg.colsb[t] <= kTileBytes && cfg.colsb[t] % 4 == 0, "tile shape");
            tiles_[t] = Tile{cfg.rows[t], cfg.colsb[t], {}};   // LDTILECFG zeroes the tiles
        }
        configured_ = true;
    }
    void release() { configured_ = false; }
    template <int T>
    void zero() { tile<T>().bytes = {}; }
    template <int T>
    void load(const void* p, index stride) {
        Tile& t = tile<T>();
        t.bytes = {};
        for (int r = 0; r < t.rows; ++r) std::memcpy(&t.bytes[r * kTileBytes], static_cast<const char*>(p) + r * stride, t.colsb);
    }
    template <int T>
    void store(void* p, index stride) {
        const Tile& t = tile<T>();
        for (int r = 0; r < t.rows; ++r) std::memcpy(static_cast<char*>(p) + r * stride, &t.bytes[r * kTileBytes], t.colsb);
    }
    // C (m x n float32) += A (m x K pairs) . B (K pair rows x n): per row, the even and the
    // odd products summed apart from +0 over the K pairs, then C + (even + odd).
    template <int C, int A, int B>
    void dot() {
        Tile &c = tile<C>(), &a = tile<A>(), &b = tile<B>();
        check(a.colsb / 4 == b.rows && c.colsb == b.colsb && c.rows == a.rows, "shapes that do not chain");
        const int columns = c.colsb / 4;
        for (int m = 0; m < c.rows; ++m) {
            float even[kTileWords] = {}, odd[kTileWords] = {};
            for (int k = 0; k < a.colsb / 4; ++k) {
                const float a_even = half(a, m, 2 * k), a_odd = half(a, m, 2 * k + 1);
                for (int n = 0; n < columns; ++n) {
                    even[n] = step(even[n], a_even, half(b, k, 2 * n));
                    odd[n] = step(odd[n], a_odd, half(b, k, 2 * n + 1));
                }
            }
            for (int n = 0; n < columns; ++n) {
                float sum;
                std::memcpy(&sum, &c.bytes[m * kTileBytes + 4 * n], 4);
                sum = add(flush(sum), add(even[n], odd[n]));
                std::memcpy(&c.bytes[m * kTileBytes + 4 * n], &sum, 4);
            }
        }
    }

  private:
    struct Tile {
        int rows, colsb;
        std::array<unsigned char, kTileRows * kTileBytes> bytes;
    };
    static void check(bool ok, const char* what) {
        if (ok) return;
        std::fprintf(stderr, "fastmlp: emulated AMX tiles: fault (%s)\n", what);
        std::abort();
    }
    template <int T>
    Tile& tile() {
        static_assert(0 <= T && T < 8, "tmm0 ... tmm7");
        check(configured_, "tile used without a configuration");
        return tiles_[T];
    }
    // bfloat16 element e of row r as float32 (its bits the high half).
    static float half(const Tile& t, int r, int e) {
        std::uint16_t h;
        std::memcpy(&h, &t.bytes[r * kTileBytes + 2 * e], 2);
        const std::uint32_t bits = std::uint32_t(h) << 16;
        float x;
        std::memcpy(&x, &bits, 4);
        return x;
    }
    static float flush(float x) { return std::fabs(x) < 0x1p-126f ? std::copysign(0.0f, x) : x; }
    // x + y rounded once; x, y exact in double, so is their sum unless it is far below
    // float32's precision of the larger (then the double rounding cannot reach a tie).
    static float add(float x, float y) { return flush(float(double(x) + double(y))); }
    // acc + a * b with the product exact (FMA with DAZ and FTZ).
    static float step(float acc, float a, float b) {
        return flush(float(double(flush(acc)) + double(flush(a)) * double(flush(b))));
    }
    std::array<Tile, 8> tiles_{};
    bool configured_ = false;
};

// The amx level's engine on a tile machine: panels and A rows padded to whole tiles; a
// thread's A block goes 32 rows (two A tiles) or 16 rows at a time across its panels.
template <class Tiles>
class AmxEngine {
  public:
    static index panel_pairs(index k2) { return round_up(k2, kTileRows); }
    // Zero the pair words past K2 of every row, and the rows past `rows` up to a multiple
    // of 16 (pack_a_bf16 leaves K2 words a row, rows up to a multiple of MR).
    static void finish_a(Word* apack, index rows, index k2, index k2p) {
        const index pairs = panel_pairs(k2);
        for (index r = 0; r < round_up(rows, kTileRows); ++r) {
            const index from = r < rows ? k2 : 0;
            std::memset(apack + r * k2p + from, 0, sizeof(Word) * std::size_t(pairs - from));
        }
    }

    AmxEngine() { tiles_.configure(whole_tiles()); }
    ~AmxEngine() { tiles_.release(); }
    AmxEngine(const AmxEngine&) = delete;
    AmxEngine& operator=(const AmxEngine&) = delete;

    void block(index k2, const Word* apack, index k2p, const Word* bpack, index jp0, index jp1, float alpha,
               float beta, float* c, index ldc, index row, index rows, index n, const FusedEpilogue<float>& fused) {
        constexpr index NR = Bf16Tile::NR;
        const index pairs = panel_pairs(k2);
        for (index ir = 0; ir < rows; ir += 2 * kTileRows)
            for (index jp = jp0; jp < jp1; ++jp) {
                const index col = jp * NR, mr = imin(2 * kTileRows, rows - ir);
                tile(pairs, apack + ir * k2p, k2p, bpack + jp * pairs * NR, mr);
                finish_tile_bf16<2 * kTileRows, 2>(
                    [&](int r, int v) { return load<float>(scratch_ + r * NR + v * kTileWords); }, alpha, beta,
                    c + (row + ir) * ldc + col, ldc, mr, imin(NR, n - col),
                    fused.any() ? fused.at(row + ir, col) : fused);
            }
    }

  private:
    // scratch_ = A rows [0, mr) . the panel over `pairs` pairs (mr <= 32 rows, 32 columns).
    void tile(index pairs, const Word* a, index k2p, const Word* panel, index mr) {
        constexpr index NR = Bf16Tile::NR;
        const index a_stride = k2p * index(sizeof(Word)), b_stride = NR * index(sizeof(Word));
        const index c_stride = NR * index(sizeof(float));
        const bool two = mr > kTileRows;
        tiles_.template zero<0>();
        tiles_.template zero<1>();
        if (two) {
            tiles_.template zero<2>();
            tiles_.template zero<3>();
        }
        for (index q = 0; q < pairs; q += kTileRows) {
            tiles_.template load<6>(panel + q * NR, b_stride);
            tiles_.template load<7>(panel + q * NR + kTileWords, b_stride);
            tiles_.template load<4>(a + q, a_stride);
            tiles_.template dot<0, 4, 6>();
            tiles_.template dot<1, 4, 7>();
            if (two) {
                tiles_.template load<5>(a + kTileRows * k2p + q, a_stride);
                tiles_.template dot<2, 5, 6>();
                tiles_.template dot<3, 5, 7>();
            }
        }
        tiles_.template store<0>(scratch_, c_stride);
        tiles_.template store<1>(scratch_ + kTileWords, c_stride);
        if (two) {
            tiles_.template store<2>(scratch_ + kTileRows * NR, c_stride);
            tiles_.template store<3>(scratch_ + kTileRows * NR + kTileWords, c_stride);
        }
    }

    Tiles tiles_;
    alignas(64) float scratch_[2 * kTileRows * Bf16Tile::NR];
};

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
