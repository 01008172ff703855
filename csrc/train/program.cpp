// The fused paths' programs (program.hpp): their checks and the op interpreter, which
// calls ops.hpp exactly as the per-op path calls the Backend (python/fastmlp/nn/plans.py).
#include "program.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <stdexcept>
#include <type_traits>

#include "../ops.hpp"

namespace fastmlp { namespace train {

namespace {

// Each op code's buffers: how many it reads (the rest it writes) and which one, if any,
// is int32 (Maxout's argmax); in the order of OpCode.
struct Signature {
    int reads, writes, int32_arg;
};
constexpr Signature kSignatures[] = {
    {3, 2, -1},  // gemm_bias_act            x, w, b -> z, a
    {3, 1, -1},  // act_backward             z, a, da -> dz
    {2, 1, -1},  // gemm_weight_grad         dz, x -> dw
    {1, 1, -1},  // col_sum                  dz -> db
    {2, 1, -1},  // gemm_input_grad          dz, w -> dx
    {1, 2, 2},   // maxout_forward           z -> a, argmax
    {2, 1, 1},   // maxout_backward          da, argmax -> dz
    {1, 2, -1},  // dropout_forward          x -> y, mask
    {2, 1, -1},  // mul                      a, b -> out
    {3, 4, -1},  // batchnorm_forward_train  x, gamma, beta -> y, xhat, mean, inv_std
    {2, 2, -1},  // batchnorm_running_update mean, inv_std -> running_mean, running_var
    {5, 1, -1},  // batchnorm_forward_infer  x, gamma, beta, mean, var -> y
    {4, 3, -1},  // batchnorm_backward       dy, xhat, gamma, inv_std -> dx, dgamma, dbeta
    {2, 1, -1},  // scale_columns            x, scale -> y
    {1, 1, -1},  // add_to                   x -> y (added to)
    {1, 1, -1},  // regularize               w -> dw (added to)
};
static_assert(sizeof kSignatures / sizeof kSignatures[0] == sizeof kOpCodeNames / sizeof kOpCodeNames[0],
              "one signature per OpCode");

bool writable(BufferRole r) {
    return r == BufferRole::cache || r == BufferRole::gradient || r == BufferRole::state ||
           r == BufferRole::loss_grad;
}

// The checks of one op, with its program's buffers; fail() throws naming the op.
template <class Fail>
struct OpChecker {
    OpRecord& op;
    const std::vector<BufferSpec>& buffers;
    Fail fail;

    const BufferSpec& at(int i) const { return buffers[std::size_t(op.args[i])]; }
    index rowwise(int i) const {           // width per row of a per-row argument
        if (!at(i).per_row) fail("argument " + std::to_string(i) + " must have one row per batch row");
        return at(i).width;
    }
    index whole(int i) const {              // size of a fixed argument
        if (at(i).per_row) fail("argument " + std::to_string(i) + " must not depend on the rows");
        return at(i).width;
    }
    void same(index a, index b) const {
        if (a != b) fail("has arguments of widths " + std::to_string(a) + " and " + std::to_string(b));
    }
    void buffers_and_roles() const {
        const Signature s = kSignatures[int(op.code)];
        for (int i = 0; i < kMaxArgs; ++i) {
            const int id = op.args[i];
            if ((i < s.reads + s.writes) != (id >= 0)) fail("needs " + std::to_string(s.reads + s.writes) + " buffers");
            if (id < 0) continue;
            if (id >= int(buffers.size())) fail("names buffer " + std::to_string(id) + " of " + std::to_string(buffers.size()));
            if (at(i).int32 != (i == s.int32_arg)) fail("argument " + std::to_string(i) + " has the wrong type");
            if (i >= s.reads && !writable(at(i).role)) fail("writes a buffer it may only read");
            for (int j = 0; j < i; ++j)
                if (op.args[j] == id && !(op.code == OpCode::gemm_bias_act && i == 4 && j == 3 &&
                                          op.activation == Activation::linear))
                    fail("takes one buffer twice");
        }
    }
    void widths() const {
        index& n = op.dims[0];
        index& k = op.dims[1];
        switch (op.code) {
            case OpCode::gemm_bias_act:
                k = rowwise(0), n = whole(2);
                same(whole(1), n * k), same(rowwise(3), n), same(rowwise(4), n);
                return;
            case OpCode::act_backward:
                n = rowwise(0);
                for (int i = 1; i < 4; ++i) same(rowwise(i), n);
                return;
            case OpCode::gemm_weight_grad:
                n = rowwise(0), k = rowwise(1);
                same(whole(2), n * k);
                return;
            case OpCode::col_sum: n = rowwise(0), same(whole(1), n); return;
            case OpCode::gemm_input_grad:
                n = rowwise(0), k = rowwise(2);
                same(whole(1), n * k);
                return;
            case OpCode::maxout_forward:
            case OpCode::maxout_backward: {
                const bool fwd = op.code == OpCode::maxout_forward;
                n = rowwise(fwd ? 1 : 0), k = rowwise(fwd ? 0 : 2) / n;       // units, pieces
                same(rowwise(fwd ? 2 : 1), n), same(k * n, rowwise(fwd ? 0 : 2));
                return;
            }
            case OpCode::dropout_forward:
            case OpCode::mul:
            case OpCode::scale_columns:
                n = rowwise(0);
                same(op.code == OpCode::scale_columns ? whole(1) : rowwise(1), n), same(rowwise(2), n);
                return;
            case OpCode::batchnorm_forward_train:
                n = rowwise(0);
                same(whole(1), n), same(whole(2), n), same(rowwise(3), n), same(rowwise(4), n);
                same(whole(5), n), same(whole(6), n);
                return;
            case OpCode::add_to: n = rowwise(0), same(rowwise(1), n); return;
            case OpCode::batchnorm_running_update:
            case OpCode::regularize:
                n = whole(0);
                for (int i = 1; i < kSignatures[int(op.code)].reads + kSignatures[int(op.code)].writes; ++i)
                    same(whole(i), n);
                return;
            case OpCode::batchnorm_forward_infer:
                n = rowwise(0);
                for (int i = 1; i < 5; ++i) same(whole(i), n);
                same(rowwise(5), n);
                return;
            case OpCode::batchnorm_backward:
                n = rowwise(0);
                same(rowwise(1), n), same(whole(2), n), same(whole(3), n), same(rowwise(4), n);
                same(whole(5), n), same(whole(6), n);
                return;
        }
    }
    void constants() const {
        const double* c = op.constants;
        switch (op.code) {
            case OpCode::dropout_forward:
                if (!(c[0] >= 0 && c[0] < 1)) fail("needs 0 <= rate < 1");
                return;
            case OpCode::batchnorm_forward_train:
                if (!(c[0] > 0)) fail("needs eps > 0");
                return;
            case OpCode::batchnorm_running_update:
                if (!(c[0] >= 0 && c[0] < 1 && c[1] > 0)) fail("needs 0 <= momentum < 1 and eps > 0");
                return;
            case OpCode::regularize:
                if (!(c[0] >= 0 && c[1] >= 0)) fail("has regularizer coefficients < 0");
                if (!(c[2] == 0 || c[2] == 1 || c[2] == 2)) fail("has a regularizer scale other than 0, 1 or 2");
                return;
            default: return;
        }
    }
};

template <class T>
void check_ops(std::vector<OpRecord>& ops, const Program<T>& p, const std::string& who, const char* phase) {
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const std::string name = who + ": " + phase + "[" + std::to_string(i) + "] (" +
                                 kOpCodeNames[int(ops[i].code)] + ") ";
        auto fail = [&](const std::string& what) { throw std::invalid_argument(name + what); };
        const OpChecker<decltype(fail)> check{ops[i], p.buffers, fail};
        check.buffers_and_roles();
        check.widths();
        check.constants();
    }
}

// A buffer's role against the kind of program: its array, its place in the flat buffer.
template <class T>
void check_buffer(const Program<T>& p, std::size_t i, index n_params, bool training, const std::string& who) {
    const BufferSpec& b = p.buffers[i];
    const std::string name = who + ": buffers[" + std::to_string(i) + "] (" + kBufferRoleNames[int(b.role)] + ") ";
    auto fail = [&](const std::string& what) { throw std::invalid_argument(name + what); };
    if (b.width < 1) fail("must have width >= 1");
    const bool pointed = b.role == BufferRole::state || b.role == BufferRole::constant;
    if (pointed != (p.arrays[i] != nullptr)) fail(pointed ? "needs its array" : "takes no array");
    if (b.int32 && b.role != BufferRole::cache) fail("only a cache may be int32");
    if ((b.role == BufferRole::gradient || b.role == BufferRole::loss_grad) && !training)
        fail("has no place in an inference program");
    if (b.role == BufferRole::parameter || b.role == BufferRole::gradient)
        if (b.per_row || b.offset < 0 || b.offset + b.width > n_params)
            fail("lies outside the " + std::to_string(n_params) + " parameters");
}

// A program's heads: outputs of the dtype; a training program's each with its own
// loss_grad buffer as wide and a weight >= 0 (sets each head's target offset), an
// inference program's without one.
template <class T>
void check_heads(Program<T>& p, bool training, const std::string& who) {
    if (p.heads.empty())
        throw std::invalid_argument(who + (training ? ": a training program needs a loss head"
                                                    : ": an inference program needs an output head"));
    const int n = int(p.buffers.size());
    auto per_row_of_dtype = [&](int id) {
        return id >= 0 && id < n && p.buffers[std::size_t(id)].per_row && !p.buffers[std::size_t(id)].int32;
    };
    index offset = 0;
    for (std::size_t h = 0; h < p.heads.size(); ++h) {
        LossHead& head = p.heads[h];
        auto fail = [&](const std::string& what) {
            throw std::invalid_argument(who + ": heads[" + std::to_string(h) + "] " + what);
        };
        if (!per_row_of_dtype(head.output)) fail("needs an output: a per-row buffer of the dtype");
        head.offset = offset;
        offset += p.width(head.output);
        if (!training) {
            if (head.loss_grad != -1) fail("has a loss gradient: an inference program has none");
            continue;
        }
        if (!per_row_of_dtype(head.loss_grad) || p.buffers[std::size_t(head.loss_grad)].role != BufferRole::loss_grad)
            fail("needs a loss_grad buffer for its gradient: a per-row buffer of the dtype");
        if (p.width(head.loss_grad) != p.width(head.output)) fail("has a loss gradient not as wide as its output");
        for (std::size_t g = 0; g < h; ++g)
            if (p.heads[g].loss_grad == head.loss_grad) fail("shares its loss gradient with another head");
        if (!(head.weight >= 0 && std::isfinite(head.weight))) fail("needs a finite loss weight >= 0");
    }
}

}  // namespace

template <class T>
void check_program(Program<T>& p, index n_params, bool training, const std::string& who) {
    const int n = int(p.buffers.size());
    if (p.arrays.size() != p.buffers.size()) throw std::invalid_argument(who + ": one array entry per buffer is needed");
    for (std::size_t i = 0; i < p.buffers.size(); ++i) check_buffer(p, i, n_params, training, who);
    auto role_of = [&](int id, BufferRole role, const char* what) {
        if (id < 0 || id >= n || p.buffers[std::size_t(id)].role != role || !p.buffers[std::size_t(id)].per_row)
            throw std::invalid_argument(who + ": the " + what + " must be a per-row " + kBufferRoleNames[int(role)] +
                                        " buffer");
    };
    role_of(p.input, BufferRole::batch, "input");
    check_heads(p, training, who);
    if (!training && (!p.backward.empty() || !p.penalty.empty()))
        throw std::invalid_argument(who + ": an inference program has a forward only");
    check_ops(p.forward, p, who, "forward");
    check_ops(p.backward, p, who, "backward");
    check_ops(p.penalty, p, who, "penalty");
    for (const auto* ops : {&p.forward, &p.backward})
        for (const OpRecord& op : *ops)
            if (op.code == OpCode::regularize) throw std::invalid_argument(who + ": regularize belongs to the penalty");
    for (const OpRecord& op : p.penalty)
        if (op.code != OpCode::regularize) throw std::invalid_argument(who + ": the penalty holds regularize ops only");
    if (p.bf16 && !std::is_same_v<T, float>)
        throw std::invalid_argument(who + ": a bfloat16 program's arrays are float32 (its master weights), not float64");
    for (auto* ops : {&p.forward, &p.backward})
        for (OpRecord& op : *ops)
            op.bf16 = p.bf16 && (op.code == OpCode::gemm_bias_act || op.code == OpCode::gemm_weight_grad ||
                                 op.code == OpCode::gemm_input_grad);
}

namespace {

// How many times the program names buffer `id`: as an argument of any op, or in a head.
template <class T>
int references(const Program<T>& p, int id) {
    int n = 0;
    for (const auto* ops : {&p.forward, &p.backward, &p.penalty})
        for (const OpRecord& op : *ops) n += int(std::count(std::begin(op.args), std::end(op.args), id));
    for (const LossHead& h : p.heads) n += (h.output == id) + (h.loss_grad == id);
    return n;
}

// Whether backward[i] and backward[i + 1] are a gemm_input_grad and the act_backward that
// reads its dx, writing a dz the GEMM does not read.
bool fusable(const OpRecord& gemm, const OpRecord& act) {
    return gemm.code == OpCode::gemm_input_grad && act.code == OpCode::act_backward &&
           act.args[2] == gemm.args[2] && act.args[3] != gemm.args[0] && act.args[3] != gemm.args[1];
}

}  // namespace

template <class T>
void keep_outputs_only(Program<T>& p) {
    for (OpRecord& forward : p.forward) {
        const int z = forward.args[3], a = forward.args[4];
        if (forward.code != OpCode::gemm_bias_act || z == a || !derivative_from_output(forward.activation) ||
            references(p, z) != 2)
            continue;
        for (OpRecord& backward : p.backward)
            if (backward.code == OpCode::act_backward && backward.args[0] == z && backward.args[1] == a) {
                backward.args[0] = forward.args[3] = a;
                note_outputs_only_layer();
                break;
            }
    }
}

template <class T>
void fuse_act_backward(Program<T>& p) {
    std::vector<OpRecord>& ops = p.backward;
    std::vector<bool> keep_dx(ops.size(), true);   // from the program as it was given
    for (std::size_t i = 0; i + 1 < ops.size(); ++i)
        if (fusable(ops[i], ops[i + 1])) keep_dx[i] = references(p, ops[i].args[2]) > 2;
    std::vector<OpRecord> fused;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        fused.push_back(ops[i]);
        if (i + 1 == ops.size() || !fusable(ops[i], ops[i + 1])) continue;
        OpRecord& gemm = fused.back();
        const OpRecord& act = ops[++i];
        std::copy(act.args, act.args + 2, gemm.fused);
        gemm.fused[2] = act.args[3];
        gemm.activation = act.activation;
        gemm.constants[0] = act.constants[0];
        gemm.keep_dx = keep_dx[i - 1];
    }
    ops = std::move(fused);
}

// BatchNorm's running averages// BatchNorm's running averages as the per-op path computes them in NumPy (nn/plans.py
// _running_update): the batch variance var = max(1 / inv_std^2 - eps, 0) in double;
// running = momentum * running + (1 - momentum) * batch, with momentum * running in
// double and (1 - momentum) * mean in T (NumPy multiplies a Python float and a T array
// in T), the sum in double, stored in T.
template <class T>
void running_update(const T* mean, const T* inv_std, T* running_mean, T* running_var, index n, double momentum,
                    double eps) {
    const double m = momentum;
    const T keep_new = T(1 - m);
    for (index j = 0; j < n; ++j) {
        const double inv = double(inv_std[j]);
        const double var = std::max(1.0 / (inv * inv) - eps, 0.0);
        running_mean[j] = T(m * double(running_mean[j]) + double(keep_new * mean[j]));
        running_var[j] = T(m * double(running_var[j]) + (1 - m) * var);
    }
}

template <class T>
void run_op(const OpRecord& op, BoundView<T> b, index rows, std::uint64_t step, index first_row) {
    T* const* p = b.ptr;
    const int* a = op.args;
    const double* c = op.constants;
    const index n = op.dims[0], k = op.dims[1];
    switch (op.code) {
        case OpCode::gemm_bias_act:     // z = x W^T + b, a = act(z): the bias and activation in the epilogue
            if (b.csr && a[0] == b.input) {
                csr_gemm_bias_act<T>(*b.csr, p[a[1]], p[a[2]], p[a[3]], p[a[4]], n, op.activation, T(c[0]));
                return;
            }
            gemm_bias_act<T>(false, true, rows, n, k, p[a[0]], k, p[a[1]], k, p[a[2]], p[a[3]], n, p[a[4]], n,
                             op.activation, T(c[0]), op.bf16);
            return;
        case OpCode::act_backward:
            act_backward<T>(p[a[0]], p[a[1]], p[a[2]], p[a[3]], rows * n, op.activation, T(c[0]));
            return;
        case OpCode::gemm_weight_grad:
            if (b.csr && a[1] == b.input) {
                csr_weight_grad<T>(p[a[0]], *b.csr, p[a[2]], n);
                return;
            }
            gemm<T>(true, false, n, k, rows, T(1.0), p[a[0]], n, p[a[1]], k, T(0.0), p[a[2]], k, op.bf16);
            return;
        case OpCode::col_sum: col_sum<T>(p[a[0]], rows, n, p[a[1]]); return;
        case OpCode::gemm_input_grad:
            if (op.fused[2] >= 0) {     // with the layer below's act_backward (fuse_act_backward)
                T* dz = p[op.fused[2]];
                gemm_act_backward<T>(false, false, rows, k, n, p[a[0]], n, p[a[1]], k, p[op.fused[0]],
                                     p[op.fused[1]], k, op.keep_dx ? p[a[2]] : dz, k, dz, k, op.activation, T(c[0]),
                                     op.bf16);
                return;
            }
            gemm<T>(false, false, rows, k, n, T(1.0), p[a[0]], n, p[a[1]], k, T(0.0), p[a[2]], k, op.bf16);
            return;
        case OpCode::maxout_forward: maxout_forward<T>(p[a[0]], p[a[1]], b.ints[a[2]], rows, n, k); return;
        case OpCode::maxout_backward: maxout_backward<T>(p[a[0]], b.ints[a[1]], p[a[2]], rows, n, k); return;
        case OpCode::dropout_forward:
            dropout_forward<T>(p[a[0]], p[a[1]], p[a[2]], rows * n, c[0], op.seed, op.layer, step, first_row * n);
            return;
        case OpCode::mul: mul<T>(p[a[0]], p[a[1]], p[a[2]], rows * n); return;
        case OpCode::batchnorm_forward_train:
            batchnorm_forward_train<T>(p[a[0]], p[a[1]], p[a[2]], p[a[3]], p[a[4]], p[a[5]], p[a[6]], rows, n,
                                       T(c[0]));
            return;
        case OpCode::batchnorm_running_update:     // the serial ops: on a team's leader (parallel.hpp)
            return team_serial([&] { running_update<T>(p[a[0]], p[a[1]], p[a[2]], p[a[3]], n, c[0], c[1]); });
        case OpCode::batchnorm_forward_infer:
            batchnorm_forward_infer<T>(p[a[0]], p[a[1]], p[a[2]], p[a[3]], p[a[4]], p[a[5]], rows, n, T(c[0]));
            return;
        case OpCode::batchnorm_backward:
            batchnorm_backward<T>(p[a[0]], p[a[1]], p[a[2]], p[a[3]], p[a[4]], p[a[5]], p[a[6]], rows, n);
            return;
        case OpCode::scale_columns:        // NumPy's x * scale: one product per element
            return team_serial([&] {
                const T* x = p[a[0]];
                const T* s = p[a[1]];
                T* y = p[a[2]];
                for (index r = 0; r < rows; ++r)
                    for (index j = 0; j < n; ++j) y[r * n + j] = x[r * n + j] * s[j];
            });
        case OpCode::add_to:               // NumPy's y += x: one sum per element
            return team_serial([&] {
                const T* x = p[a[0]];
                T* y = p[a[1]];
                for (index i = 0; i < rows * n; ++i) y[i] += x[i];
            });
        case OpCode::regularize:
            throw std::logic_error("run_op: regularize runs in the penalty, with its divisor");
    }
}

template <class T>
void check_sparse_input(const Program<T>& program, const std::string& who) {
    if (program.bf16)
        throw std::invalid_argument(who + ": bfloat16 products take dense rows; convert sparse X with "
                                          "X.toarray(), or train this model in float32");
    for (const auto* ops : {&program.forward, &program.backward})
        for (const OpRecord& op : *ops)
            for (int j = 0; j < kMaxArgs; ++j) {
                if (op.args[j] != program.input) continue;
                const bool product = (op.code == OpCode::gemm_bias_act && j == 0) ||
                                     (op.code == OpCode::gemm_weight_grad && j == 1);
                if (!product)
                    throw std::invalid_argument(who + ": sparse X needs a first layer that multiplies its input "
                                                "(Dense, Maxout); op " + kOpCodeNames[int(op.code)] +
                                                " reads it");
            }
}

template void check_program<float>(Program<float>&, index, bool, const std::string&);
template void check_program<double>(Program<double>&, index, bool, const std::string&);
template void keep_outputs_only<float>(Program<float>&);
template void keep_outputs_only<double>(Program<double>&);
template void fuse_act_backward<float>(Program<float>&);
template void fuse_act_backward<double>(Program<double>&);
template void check_sparse_input<float>(const Program<float>&, const std::string&);
template void check_sparse_input<double>(const Program<double>&, const std::string&);
template void run_op<float>(const OpRecord&, BoundView<float>, index, std::uint64_t, index);
template void run_op<double>(const OpRecord&, BoundView<double>, index, std::uint64_t, index);

}}  // namespace fastmlp::train
