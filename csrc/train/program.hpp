// A model as the fused paths (trainer.hpp, predictor.hpp) run it: flat buffers and op
// records compiled from the layers' plans (python/fastmlp/nn/plans.py, compiled by
// python/fastmlp/train/fused.py; docs/plans.md). No layer appears here: the plans' ops over
// the model's buffers, in order. A training program has a forward, a backward (without
// the first layer's dx-only ops) and a penalty (regularize records), and its loss heads;
// an inference program has the forward and its heads (the outputs the predictor returns).
//
//   buffer role  what it is                                   where it lives
//   batch        the step's (or chunk's) input rows            the runner's gathered rows
//   loss_grad    the loss gradient, the backward's start       the runner's workspace
//   parameter    a view into the flat parameters               offset
//   gradient     a view into the flat gradients                offset
//   state        written by training (running statistics)     the caller's array
//   constant     read only (Normalization's statistics)        the caller's array
//   cache        per-step scratch, width per row or in all     the runner's workspace
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../common.hpp"
#include "../kernels/sparse.hpp"

namespace fastmlp { namespace train {

enum class BufferRole : int { batch, loss_grad, parameter, gradient, state, constant, cache };
constexpr const char* kBufferRoleNames[] = {"batch",    "loss_grad", "parameter", "gradient",
                                            "state",    "constant",  "cache"};
static_assert(names_every<BufferRole::cache>(kBufferRoleNames), "one name per BufferRole");

struct BufferSpec {
    BufferRole role = BufferRole::cache;
    index width = 0;           // elements per row (per_row), or in all
    bool per_row = false;
    bool int32 = false;        // an int32 cache (Maxout's argmax); the model's dtype otherwise
    index offset = 0;          // parameter, gradient: into the flat buffer
};

constexpr int kMaxArgs = 7;

// One op of a plan: its code, its buffers (ids into Program::buffers, reads then writes,
// in the order of nn/plans.py OPS), its constants in that order, the activation of the
// gemm_bias_act and act_backward ops, and the mask key of its layer (seed, index).
struct OpRecord {
    OpCode code = OpCode::mul;
    int args[kMaxArgs] = {-1, -1, -1, -1, -1, -1, -1};
    double constants[3] = {0, 0, 0};
    Activation activation = Activation::linear;
    std::uint64_t seed = 0, layer = 0;
    index dims[2] = {0, 0};    // the widths the kernels take, set by check_program
    // A gemm_input_grad with the act_backward after it fused in (fuse_act_backward): that
    // op's z, a and dz (its activation and param in activation and constants[0]); dx is
    // written only when keep_dx.
    int fused[3] = {-1, -1, -1};
    bool keep_dx = true;
    bool bf16 = false;   // a product with its operands rounded to bfloat16 (ops.hpp, products)
};

// One head of a program: an output buffer with its loss. A training program's heads are
// its losses: the kernel over the output against the step's targets in columns
// [offset, offset + width) of the target rows, with the loss weight w (scale w / rows, or
// w / sum of the row weights), its gradient into a loss_grad buffer; a chain has one head
// of weight 1, MultiTask one per head, in its order. An inference program's heads are the
// outputs the predictor returns, the loss giving their probabilities and labels (no
// loss_grad, weight unused).
struct LossHead {
    Loss loss = Loss::softmax_cross_entropy;
    int output = -1, loss_grad = -1;
    double weight = 1.0;
    index offset = 0;          // set by check_program: the widths of the heads before
};

template <class T>
struct Program {
    std::vector<BufferSpec> buffers;
    std::vector<T*> arrays;    // per buffer: the array of a state or constant buffer, else null
    std::vector<OpRecord> forward, backward, penalty;
    std::vector<LossHead> heads;   // its outputs, in order
    int input = -1;
    bool bf16 = false;   // every product's operands rounded to bfloat16 (docs/bfloat16.md)

    index features() const { return buffers[std::size_t(input)].width; }
    index width(int id) const { return buffers[std::size_t(id)].width; }
    // The targets' width (training), the outputs' (inference): every head's output width.
    index targets() const {
        index k = 0;
        for (const LossHead& h : heads) k += width(h.output);
        return k;
    }
};

// Checks every buffer (widths >= 1, parameters and gradients inside the n_params buffers,
// arrays where the role needs one), the heads (one or more, each an output of the dtype;
// training: with a loss_grad buffer as wide, weight >= 0; sets the offsets)
// and op (its buffers' count, roles, types and widths, no output shared with another
// argument, its constants), and sets each op's dims and, in a bfloat16 program (float32
// only), its products' bf16 flag; throws std::invalid_argument whose message starts with
// `who`.
template <class T>
void check_program(Program<T>& program, index n_params, bool training, const std::string& who);

// Fuses each gemm_input_grad (dz, w -> dx) of the backward with the act_backward right
// after it that takes dx as its da (the layer below's, z, a, dx -> dz): one record, run
// as gemm_act_backward (ops.hpp: the derivative in the GEMM's epilogue, the same bits).
// dx is still written where another op or a head names it, else only dz. After
// check_program; the training program's runner calls it (a program with no such pair is
// left as it is).
template <class T>
void fuse_act_backward(Program<T>& program);

// A gemm_bias_act whose z only the act_backward of its own layer reads, for an activation
// whose derivative comes out the same from a (derivative_from_output): z becomes a in
// both, so the GEMM's epilogue stores a alone (gemm_bias_act with out == z) and the
// backward reads a for z; the same bits, one (rows x width) buffer less to write and
// read per layer. After check_program, before fuse_act_backward; the training program's
// runner calls it.
template <class T>
void keep_outputs_only(Program<T>& program);

// The buffers' addresses for one runner: ptr[i] of a float buffer, ints[i] of an int32
// one; two tables of one entry per buffer, held by the runner (the trainer's Bound, the
// predictor's per-call scratch). With sparse input rows (`csr` set) the batch buffer
// `input` is those rows: the ops that read it (the first layer's gemm_bias_act and
// gemm_weight_grad: check_sparse_input) multiply them as CSR.
template <class T>
struct BoundView {
    T* const* ptr;
    std::int32_t* const* ints;
    const CsrRows<T, std::int64_t>* csr = nullptr;
    int input = -1;
};

// The tables of a BoundView in vectors (the trainer's, set once).
template <class T>
struct Bound {
    std::vector<T*> ptr;
    std::vector<std::int32_t*> ints;
    const CsrRows<T, std::int64_t>* csr = nullptr;
    int input = -1;
    BoundView<T> view() const { return {ptr.data(), ints.data(), csr, input}; }
};

// Throws std::invalid_argument (message starting with `who`) unless every op of the
// program's forward and backward that reads the batch buffer is a gemm_bias_act taking it
// as x or a gemm_weight_grad taking it as x: what sparse input rows need.
template <class T>
void check_sparse_input(const Program<T>& program, const std::string& who);

// Runs one op (not regularize: the penalty's divisor is the runner's) over `rows` rows;
// `step` is the model's training-step counter and `first_row` the rows' first index in
// their global batch (Dropout's mask; a data-parallel shard starts past 0).
template <class T>
void run_op(const OpRecord& op, BoundView<T> b, index rows, std::uint64_t step, index first_row = 0);

template <class T>
void run_op(const OpRecord& op, const Bound<T>& b, index rows, std::uint64_t step, index first_row = 0) {
    run_op(op, b.view(), rows, step, first_row);
}

}}  // namespace fastmlp::train
