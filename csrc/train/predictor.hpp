// The fused inference path: predict / predict_proba / evaluate's forward in one call over
// all rows, for models whose layers all state plans: the model's inference program
// (program.hpp, compiled from the plans' inference ops by python/fastmlp/train/fused.py;
// Dropout has none). Per chunk of rows it runs the program's ops through the kernels, the
// per-op inference forward's calls (layers.py, forward with training=False), except that
// each gemm_bias_act takes its W^T pre-packed: the constructor packs every such weight
// once for the active ISA (gemm.hpp, "Pre-packed B"), so a call packs nothing (one row on
// 784-256-128-10 would otherwise spend most of its time packing). The packed product is
// the same bits as the unpacked one. A Predictor is a snapshot of everything training
// writes (the parameters and the state buffers, taken under the model's WeightsLock held
// shared, so between two training steps of another thread): the caller builds a new one
// when they or the ISA change. The constant buffers (Normalization's statistics), which
// training never writes, are read from their arrays at every call.
//
// then, per head (each output of the program, with its loss), for predict_proba ops.hpp
// output() (softmax / sigmoid rows) and, for predict, the labels (the first maximum of
// each row with NaN counting as the maximum, as np.argmax; z > 0 for binary
// cross-entropy; the logits for mse). GEMM's K order does not depend on the row count
// and every other step is row-wise, so a row's result does not depend on the chunk or
// the batch it comes in, bit for bit, and equals the per-op path's.
//
// Passes and threads: a call runs its rows in passes of at most `chunk` rows, each pass
// through every op before the next, and short enough that its caches (every layer's
// outputs for the pass's rows) stay in the core's L2 (kPassBytes; measured on config A,
// 10,000 rows, one thread: passes of 64-256 rows 44.4-45.9 ms, of 4,096 rows 52.7 ms).
// With several threads and enough rows (kMinRowsPerThread per thread) the passes are
// dealt out to a team, one parallel region per call, each thread running whole passes
// with one-thread kernels: no barrier between layers and no serial step (the finite
// check, softmax and labels run in the pass). Fewer rows run their passes one after the
// other with each GEMM split over the threads instead (columns for a few rows: each
// thread then reads only its part of the weights). A row's result does not depend on the
// pass it is in, so every split gives the same bits.
//
// Thread safety: a Predictor is immutable after construction; the scratch is per thread
// (thread_local grow-only buffers up to kKeepScratch bytes per thread, larger ones
// allocated for the call and freed), so several threads may run one Predictor at once.
// A pass's buffer tables (BoundView) and caches both live in that scratch, sized by
// what the constructor computed: a call allocates nothing unless its scratch outgrows
// the thread's.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "../common.hpp"
#include "program.hpp"
#include "weights_lock.hpp"

namespace fastmlp { namespace train {

enum class PredictMode : int { logits = 0, proba = 1, labels = 2 };

// Where run() writes one head's result: out_t for logits, probabilities and mse labels,
// out_i for class labels; both null: the head is computed but not written.
template <class T>
struct HeadOut {
    T* out_t = nullptr;
    std::int64_t* out_i = nullptr;
};

template <class T>
class Predictor {
public:
    // Checks the program (check_program; std::invalid_argument naming the problem),
    // then, holding `lock` shared, packs the gemm weights and copies the other parameters
    // and the state it reads out of params and the state arrays.
    Predictor(Program<T> program, const T* params, index n_params, WeightsLock& lock);

    index features() const { return program_.features(); }
    const std::vector<LossHead>& heads() const { return program_.heads; }
    index outputs(std::size_t head) const { return program_.width(program_.heads[head].output); }

    // x (n, features) row-major; chunk >= 1 rows per pass; outs: one per head. Per head
    // of k outputs: logits and proba (n, k) of T (out_t); labels (n,) int64 for softmax
    // cross-entropy, (n, k) int64 for binary cross-entropy (out_i), or (n, k) of T for mse
    // (out_t). Each pass's rows of x are checked to be finite as they are read (in cache):
    // returns false when a pass holds a NaN or an infinity (the outputs are then partly
    // written; no pass starts after one failed), true when all is done.
    bool run(const T* x, index n, index chunk, PredictMode mode, const HeadOut<T>* outs) const;

private:
    struct Passes;
    void snapshot(const T* params);
    Passes plan(index n, index chunk) const;
    std::size_t scratch_bytes(index rows) const;
    bool run_passes(const T* x, index n, const Passes& p, index first, index last, PredictMode mode,
                    const HeadOut<T>* outs, const std::atomic<bool>* stop) const;
    void write_head(const LossHead& head, PredictMode mode, const T* z, index start, index rows,
                    const HeadOut<T>& out) const;

    Program<T> program_;
    // The ISA's kernel the weights were packed for (set_isa may switch the table later).
    decltype(GemmTable<T>::gemm_bias_act_packed) gemm_bias_act_packed_;
    std::vector<std::shared_ptr<T>> packed_;   // per forward op: a gemm_bias_act's packed W^T
    std::vector<std::vector<T>> copies_;       // per buffer: the snapshot of a parameter or state
    std::vector<T*> fixed_;                    // per buffer: its snapshot or constant array, or null
    std::vector<int> caches_;                  // the cache buffers' ids: a call's scratch
    std::size_t row_bytes_ = 0;                // the caches' bytes per row of a pass
    index macs_per_row_ = 0;                   // the gemm ops' multiply-adds per row
};

extern template class Predictor<float>;
extern template class Predictor<double>;

}}  // namespace fastmlp::train
