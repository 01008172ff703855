// The fused inference path (predictor.hpp): the per-op inference forward's calls.
#include "predictor.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <shared_mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "../ops.hpp"
#include "rows.hpp"

namespace fastmlp { namespace train {

namespace {

constexpr std::size_t kAlign = 64;
// Scratch kept per thread between calls (bytes); a call that needs more allocates its own.
constexpr std::size_t kKeepScratch = std::size_t(1) << 20;

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

}  // namespace

template <class T>
Predictor<T>::Predictor(Program<T> program, Loss loss, const T* params, index n_params, WeightsLock& lock)
    : program_(std::move(program)), loss_(loss) {
    if (!params) fail("params is required");
    check_program(program_, n_params, false, "Predictor");
    gemm_bias_act_packed_ = kernels().get<T>().gemm_bias_act_packed;
    const std::shared_lock<WeightsLock> reading(lock);
    snapshot(params);
}

// W (n x k) of every gemm_bias_act packed as op(B) = W^T for the active ISA; a copy of
// every other parameter and state buffer the program reads; the constants' arrays.
template <class T>
void Predictor<T>::snapshot(const T* params) {
    const KernelTable<T>& table = kernels().get<T>();
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
        const std::size_t count = std::size_t(table.packed_b_size(rows, inputs));
        packed_.back().reset(static_cast<T*>(::operator new(sizeof(T) * count, std::align_val_t(kAlign))),
                             [](T* p) { ::operator delete(p, std::align_val_t(kAlign)); });
        table.pack_b(true, rows, inputs, params + w.offset, inputs, packed_.back().get());
    }
}

template <class T>
bool Predictor<T>::run(const T* x, index n, index chunk, PredictMode mode, T* out_t, std::int64_t* out_i) const {
    if (n < 1) return true;
    if (chunk < 1 || chunk > n) chunk = n;
    const index k = outputs();
    // Every cache of the program in the call's scratch, each for `chunk` rows, 64-byte aligned.
    const std::size_t count = program_.buffers.size();
    std::vector<std::size_t> offsets(count, 0);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const BufferSpec& b = program_.buffers[i];
        if (b.role != BufferRole::cache) continue;
        offsets[i] = bytes;
        bytes += aligned(std::size_t(b.per_row ? chunk * b.width : b.width) *
                         (b.int32 ? sizeof(std::int32_t) : sizeof(T)));
    }
    std::unique_ptr<void, AlignedFree> owned;
    char* base = static_cast<char*>(scratch(bytes, owned));
    Bound<T> bound{fixed_, std::vector<std::int32_t*>(count, nullptr)};
    for (std::size_t i = 0; i < count; ++i) {
        if (program_.buffers[i].role != BufferRole::cache) continue;
        if (program_.buffers[i].int32) bound.ints[i] = reinterpret_cast<std::int32_t*>(base + offsets[i]);
        else bound.ptr[i] = reinterpret_cast<T*>(base + offsets[i]);
    }
    T*& in = bound.ptr[std::size_t(program_.input)];
    for (index start = 0; start < n; start += chunk) {
        const index rows = start + chunk < n ? chunk : n - start;
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
            T* const* p = bound.ptr.data();
            gemm_bias_act_packed_(rows, m, kk, p[op.args[0]], kk, packed_[o].get(), p[op.args[2]], p[op.args[3]], m,
                                  p[op.args[4]], m, op.activation, T(op.constants[0]),
                                  threads_for(rows * m * kk, kGemmGrain));
        }
        const T* z = bound.ptr[std::size_t(program_.output)];   // the chunk's logits (rows, k)
        switch (mode) {
            case PredictMode::logits:
                std::memcpy(out_t + start * k, z, sizeof(T) * std::size_t(rows * k));
                break;
            case PredictMode::proba:
                output<T>(loss_, z, out_t + start * k, rows, k);
                break;
            case PredictMode::labels:
                if (loss_ == Loss::softmax_cross_entropy) {
                    for (index i = 0; i < rows; ++i) out_i[start + i] = argmax_row(z + i * k, k);
                } else if (loss_ == Loss::binary_cross_entropy) {
                    std::int64_t* o = out_i + start * k;
                    for (index i = 0; i < rows * k; ++i) o[i] = z[i] > T(0);
                } else {
                    std::memcpy(out_t + start * k, z, sizeof(T) * std::size_t(rows * k));
                }
                break;
        }
    }
    return true;
}

template class Predictor<float>;
template class Predictor<double>;

}}  // namespace fastmlp::train
