// The fused inference path (predictor.hpp): the per-op inference forward's calls.
#include "predictor.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <cstring>
#include <memory>
#include <shared_mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "../ops.hpp"

namespace fastmlp { namespace train {

namespace {

constexpr std::size_t kAlign = 64;
// Scratch kept per thread between calls (bytes); a call that needs more allocates its own.
constexpr std::size_t kKeepScratch = std::size_t(1) << 20;
// The caches of one pass: at most this many bytes (half of a 1 MiB L2), so the layers'
// outputs stay in cache from one op to the next (predictor.hpp, "Passes and threads").
constexpr std::size_t kPassBytes = std::size_t(1) << 19;
// The fewest rows of a pass, however wide the model (its per-call work stays amortized).
constexpr index kMinPassRows = 16;
// Rows per thread below which the passes run one after the other with each GEMM split
// over the threads: a thread running whole passes reads every weight for its rows, so
// each weight should serve at least this many of them.
constexpr index kMinRowsPerThread = 64;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("Predictor: " + msg); }

struct AlignedFree {
    void operator()(void* p) const { ::operator delete(p, std::align_val_t(kAlign)); }
};

// Per-thread grow-only scratch of at most kKeepScratch bytes.
struct ThreadScratch {
    void* data = nullptr;
    std::size_t bytes = 0;
    ~ThreadScratch() {
        if (data) ::operator delete(data, std::align_val_t(kAlign));
    }
};
thread_local ThreadScratch tl_scratch;

// `bytes` of 64-byte aligned scratch for this call: the thread's kept buffer when small
// enough, otherwise a buffer owned by `owned` and freed when the call ends.
void* scratch(std::size_t bytes, std::unique_ptr<void, AlignedFree>& owned) {
    if (bytes > kKeepScratch) {
        owned.reset(::operator new(bytes, std::align_val_t(kAlign)));
        return owned.get();
    }
    ThreadScratch& s = tl_scratch;
    if (s.bytes < bytes) {
        if (s.data) ::operator delete(s.data, std::align_val_t(kAlign));
        s.data = nullptr;
        s.bytes = 0;
        s.data = ::operator new(bytes, std::align_val_t(kAlign));
        s.bytes = bytes;
    }
    return s.data;
}

std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// A cache buffer's place in a call's scratch for `chunk` rows, 64-byte aligned.
template <class T>
std::size_t cache_bytes(const BufferSpec& b, index chunk) {
    return aligned(std::size_t(b.per_row ? chunk * b.width : b.width) * (b.int32 ? sizeof(std::int32_t) : sizeof(T)));
}

// The two tables of a BoundView, one entry per buffer, at the start of a call's scratch.
template <class T>
std::size_t table_bytes(std::size_t buffers) {
    return aligned(buffers * (sizeof(T*) + sizeof(std::int32_t*)));
}

}  // namespace

template <class T>
Predictor<T>::Predictor(Program<T> program, const T* params, index n_params, WeightsLock& lock)
    : program_(std::move(program)) {
    if (!params) fail("params is required");
    check_program(program_, n_params, false, "Predictor");
    gemm_bias_act_packed_ = products<T>(program_.bf16).gemm_bias_act_packed;
    const std::shared_lock<WeightsLock> reading(lock);
    snapshot(params);
}

// W (n x k) of every gemm_bias_act packed as op(B) = W^T for the active ISA (and, in a
// bfloat16 program, rounded to bfloat16 as it packs); a copy of
// every other parameter and state buffer the program reads; the constants' arrays; the
// cache buffers' ids (what a call's scratch holds).
template <class T>
void Predictor<T>::snapshot(const T* params) {
    const GemmTable<T>& table = products<T>(program_.bf16);
    const std::size_t n = program_.buffers.size();
    std::vector<bool> read_unpacked(n, false);
    for (const OpRecord& op : program_.forward)
        for (int i = 0; i < kMaxArgs && op.args[i] >= 0; ++i)
            read_unpacked[std::size_t(op.args[i])] = read_unpacked[std::size_t(op.args[i])] ||
                                                     !(op.code == OpCode::gemm_bias_act && i == 1);
    copies_.resize(n);
    fixed_.assign(n, nullptr);
    for (std::size_t i = 0; i < n; ++i) {
        const BufferSpec& b = program_.buffers[i];
        if (b.role == BufferRole::cache) {
            caches_.push_back(int(i));
            if (b.per_row) row_bytes_ += std::size_t(b.width) * (b.int32 ? sizeof(std::int32_t) : sizeof(T));
        }
        const T* from = b.role == BufferRole::parameter ? params + b.offset : program_.arrays[i];
        if (b.role == BufferRole::constant) fixed_[i] = program_.arrays[i];
        if ((b.role == BufferRole::parameter || b.role == BufferRole::state) && read_unpacked[i]) {
            copies_[i].assign(from, from + b.width);
            fixed_[i] = copies_[i].data();
        }
    }
    for (const OpRecord& op : program_.forward) {
        packed_.emplace_back();
        if (op.code != OpCode::gemm_bias_act) continue;
        const BufferSpec& w = program_.buffers[std::size_t(op.args[1])];
        if (w.role != BufferRole::parameter) fail("a gemm_bias_act's weights must be parameters");
        const index rows = op.dims[0], inputs = op.dims[1];
        macs_per_row_ += rows * inputs;
        const std::size_t count = std::size_t(table.packed_b_size(rows, inputs));
        packed_.back().reset(static_cast<T*>(::operator new(sizeof(T) * count, std::align_val_t(kAlign))),
                             [](T* p) { ::operator delete(p, std::align_val_t(kAlign)); });
        table.pack_b(true, rows, inputs, params + w.offset, inputs, packed_.back().get());
    }
}

template <class T>
std::size_t Predictor<T>::scratch_bytes(index rows) const {
    std::size_t bytes = table_bytes<T>(program_.buffers.size());
    for (const int id : caches_) bytes += cache_bytes<T>(program_.buffers[std::size_t(id)], rows);
    return bytes;
}

// A call's passes: `count` passes of `rows` rows (the last ones may have fewer, or none),
// shared by `team` threads (1: one after the other), as many passes per thread.
template <class T>
struct Predictor<T>::Passes {
    index rows = 0, count = 0;
    int team = 1;
};

template <class T>
typename Predictor<T>::Passes Predictor<T>::plan(index n, index chunk) const {
    const index fit = std::max(kMinPassRows, index(kPassBytes / std::max<std::size_t>(row_bytes_, 1)));
    const index longest = std::min(chunk < 1 ? n : chunk, fit);
    Passes p;
    p.team = int(std::max<index>(1, std::min<index>(threads_for(n * macs_per_row_, kGemmGrain), n / kMinRowsPerThread)));
    p.count = (n + longest - 1) / longest;
    p.count = (p.count + p.team - 1) / p.team * p.team;
    p.rows = (n + p.count - 1) / p.count;
    return p;
}

template <class T>
bool Predictor<T>::run(const T* x, index n, index chunk, PredictMode mode, const HeadOut<T>* outs) const {
    if (n < 1) return true;
    const Passes p = plan(n, chunk);
    if (p.team == 1) return run_passes(x, n, p, 0, p.count, mode, outs, nullptr);
    // One region for the call: each thread runs its passes with one-thread kernels. An
    // exception (std::bad_alloc from a scratch) must not leave the region: the first is
    // kept and rethrown after it.
    std::atomic<bool> failed{false};
    std::atomic<int> team{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    parallel_for(p.count, p.team, [&](index first, index last) {
        ++team;
        const int outer = push_threads(1);
        try {
            if (!run_passes(x, n, p, first, last, mode, outs, &failed)) failed = true;
        } catch (...) {
            const std::lock_guard<std::mutex> hold(error_mutex);
            if (!error) error = std::current_exception();
            failed = true;
        }
        pop_threads(outer);
    });
    note_team_size(team);               // the passes' one-thread kernels noted 1
    if (error) std::rethrow_exception(error);
    return !failed;
}

// Passes [first, last) of the plan on the calling thread, with its scratch; false at the
// first pass whose rows of x are not all finite. `stop` (a team's): set when another
// thread's pass failed; no pass starts after it is.
template <class T>
bool Predictor<T>::run_passes(const T* x, index n, const Passes& p, index first, index last, PredictMode mode,
                              const HeadOut<T>* outs, const std::atomic<bool>* stop) const {
    // The buffer tables (the fixed buffers' addresses, the caches' places), then every
    // cache for a pass's rows.
    std::unique_ptr<void, AlignedFree> owned;
    char* base = static_cast<char*>(scratch(scratch_bytes(p.rows), owned));
    const std::size_t count = program_.buffers.size();
    T** ptr = reinterpret_cast<T**>(base);
    std::int32_t** ints = reinterpret_cast<std::int32_t**>(base + count * sizeof(T*));
    std::copy(fixed_.begin(), fixed_.end(), ptr);
    std::fill(ints, ints + count, nullptr);
    char* next = base + table_bytes<T>(count);
    for (const int id : caches_) {
        const BufferSpec& b = program_.buffers[std::size_t(id)];
        if (b.int32) ints[id] = reinterpret_cast<std::int32_t*>(next);
        else ptr[id] = reinterpret_cast<T*>(next);
        next += cache_bytes<T>(b, p.rows);
    }
    const BoundView<T> bound{ptr, ints};
    T*& in = ptr[program_.input];
    for (index pass = first; pass < last; ++pass) {
        const index start = pass * p.rows;
        if (start >= n || (stop && *stop)) break;
        const index rows = std::min(p.rows, n - start);
        in = const_cast<T*>(x + start * features());   // read only: no op writes the batch
        if (!all_finite<T>(in, rows * features())) return false;
        for (std::size_t o = 0; o < program_.forward.size(); ++o) {
            const OpRecord& op = program_.forward[o];
            if (op.code != OpCode::gemm_bias_act) {
                run_op(op, bound, rows, 0);
                continue;
            }
            // z = x W^T + b, a = act(z): the bias and activation in the GEMM's epilogue.
            const index m = op.dims[0], kk = op.dims[1];
            gemm_bias_act_packed_(rows, m, kk, ptr[op.args[0]], kk, packed_[o].get(), ptr[op.args[2]], ptr[op.args[3]],
                                  m, ptr[op.args[4]], m, op.activation, T(op.constants[0]),
                                  threads_for(rows * m * kk, kGemmGrain));
        }
        for (std::size_t h = 0; h < program_.heads.size(); ++h) {
            const LossHead& head = program_.heads[h];
            write_head(head, mode, ptr[head.output], start, rows, outs[h]);
        }
    }
    return true;
}

// One head's result for the pass of `rows` rows at `start` from its logits z (rows, k).
template <class T>
void Predictor<T>::write_head(const LossHead& head, PredictMode mode, const T* z, index start, index rows,
                              const HeadOut<T>& out) const {
    if (!out.out_t && !out.out_i) return;
    const index k = program_.width(head.output);
    const bool values = mode == PredictMode::labels && is_regression(head.loss);
    if (mode == PredictMode::logits) {
        std::memcpy(out.out_t + start * k, z, sizeof(T) * std::size_t(rows * k));
    } else if (mode == PredictMode::proba || values) {   // predict's values: the output (z, exp z)
        output<T>(head.loss, z, out.out_t + start * k, rows, k);
    } else if (head.loss == Loss::softmax_cross_entropy) {
        argmax_rows<T>(z, rows, k, out.out_i + start);
    } else {                                   // binary cross-entropy
        std::int64_t* o = out.out_i + start * k;
        for (index i = 0; i < rows * k; ++i) o[i] = z[i] > T(0);
    }
}

template class Predictor<float>;
template class Predictor<double>;

}}  // namespace fastmlp::train
