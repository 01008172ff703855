#include "dispatch.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cpu_features.hpp"

namespace fastmlp {
namespace {

Kernels g_tables[kIsaCount];
bool g_compiled[kIsaCount];
std::atomic<int> g_active{0};
bool g_amx_emulated = false;
constexpr const char* kAmxRefused =
    "Linux refused this process the AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM: a kernel "
    "before 5.16, or an alternate signal stack too small for the tile state)";

template <Isa isa>
void fill_table() {
    g_compiled[int(isa)] = true;
    // register_* is compiled with its unit's -march, like the kernels (GCC stores the
    // pointers with AVX moves): never call it on a CPU that lacks the level (found by
    // the qemu Nehalem stage, .ci/qemu).
    if (!cpu_supports(isa)) return;
    register_gemm<isa>(g_tables[int(isa)]);
    register_elementwise<isa>(g_tables[int(isa)]);
    register_gemm_bf16<isa>(g_tables[int(isa)]);
}

// A level that adds bfloat16 instructions to `base`: base's float32 and float64 kernels,
// its own bfloat16 ones.
template <Isa isa, Isa base>
void fill_bf16_table() {
    g_compiled[int(isa)] = true;
    if (!cpu_supports(isa) || !cpu_supports(base)) return;
    g_tables[int(isa)] = g_tables[int(base)];
    register_gemm_bf16<isa>(g_tables[int(isa)]);
}

}  // namespace

void init_dispatch() {
    fill_table<Isa::generic>();
#if defined(FASTMLP_HAVE_AVX2)
    fill_table<Isa::avx2>();
#endif
#if defined(FASTMLP_HAVE_AVX512)
    fill_table<Isa::avx512>();
    fill_bf16_table<Isa::avx512_bf16, Isa::avx512>();
#endif
#if defined(FASTMLP_HAVE_AMX)
    fill_bf16_table<Isa::amx, Isa::avx512_bf16>();
#endif
    Isa chosen = best_isa();
    const char* env = std::getenv("FASTMLP_ISA");
    if (env && *env && std::string(env) != "auto") {
        Isa wanted;
        if (!parse_isa(env, wanted))
            std::fprintf(stderr, "fastmlp: ignoring FASTMLP_ISA=%s (expected generic, avx2, avx512, avx512_bf16, amx or auto)\n", env);
        else if (wanted == Isa::amx && isa_usable(wanted) && !request_amx_tiles())
            std::fprintf(stderr, "fastmlp: FASTMLP_ISA=amx: %s; using %s\n", kAmxRefused, isa_name(chosen));
        else if (int(wanted) < int(chosen) || isa_usable(wanted))
            chosen = wanted;  // capped at what the CPU has
    }
    g_active = int(chosen);
}

const Kernels& kernels() { return g_tables[g_active.load(std::memory_order_relaxed)]; }
Isa active_isa() { return Isa(g_active.load()); }
bool isa_compiled(Isa isa) { return g_compiled[int(isa)]; }
bool isa_usable(Isa isa) {
    return isa_compiled(isa) && (cpu_supports(isa) || (isa == Isa::amx && g_amx_emulated));
}

// The best level below amx: the amx kernels run where asked for (FASTMLP_ISA=amx, set_isa)
// until a CPU with AMX has run their tests (docs/bfloat16.md, "The amx level").
Isa best_isa() {
    for (int i = int(Isa::amx) - 1; i > 0; --i)
        if (isa_usable(Isa(i))) return Isa(i);
    return Isa::generic;
}

void select_isa(Isa isa) {
    if (!isa_compiled(isa))
        throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' was not compiled into this build");
    if (!isa_usable(isa))
        throw std::invalid_argument(std::string("this CPU does not support ISA '") + isa_name(isa) + "'" +
                                    (isa == Isa::amx ? " (AMX-TILE, AMX-BF16 and the OS's tile state)" : ""));
    if (isa == Isa::amx && !g_amx_emulated && !request_amx_tiles()) throw std::invalid_argument(kAmxRefused);
    g_active = int(isa);
}

void emulate_amx(bool on) {
#if defined(FASTMLP_HAVE_AMX)
    if (on && !cpu_supports(Isa::avx512_bf16))
        throw std::invalid_argument("emulated AMX tiles run on the avx512_bf16 level's CPUs only");
    if (on || cpu_supports(Isa::amx)) {
        g_tables[int(Isa::amx)] = g_tables[int(Isa::avx512_bf16)];
        if (on) register_gemm_bf16_emulated<Isa::amx>(g_tables[int(Isa::amx)]);
        else register_gemm_bf16<Isa::amx>(g_tables[int(Isa::amx)]);
    }
    g_amx_emulated = on;
    // Left on amx's instructions (selected while emulated, so never asked for): ask now.
    const Isa active = active_isa();
    if (!isa_usable(active) || (active == Isa::amx && !on && !request_amx_tiles())) g_active = int(best_isa());
#else
    if (on) throw std::invalid_argument("the amx level was not compiled into this build");
#endif
}

bool amx_emulated() { return g_amx_emulated; }

}  // namespace fastmlp
