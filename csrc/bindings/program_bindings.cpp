// A program dict as a train::Program (program_bindings.hpp): the buffers and their
// arrays, the op records, the heads.
#include "program_bindings.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "names.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

using train::BufferRole;
using train::OpRecord;
using train::Program;

// The element offset of `view` inside `base` (both of dtype T); ValueError unless `view`
// is a 1-D C-contiguous array of `width` elements lying wholly inside `base`.
template <class T>
index offset_in(const char* who, const py::array& base, const py::object& obj, const std::string& name, index width) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(who) + ": " + name + " must be a numpy array");
    py::array view = obj.cast<py::array>();
    const T* p = input<T>(view, who, name.c_str(), 1);
    if (view.shape(0) != width)
        fail_value(who, name + " has shape " + shape_of(view) + ", expected (" + std::to_string(width) + ",)");
    const T* b = static_cast<const T*>(base.data());
    if (view.size() > 0 && (p < b || p + view.size() > b + base.size()))
        fail_value(who, name + " is not a view into the flat buffer it belongs to");
    return index(p - b);
}

// A state or constant buffer's array: (width,) of T, kept alive; a state array the
// trainer writes is disjoint from the flat buffers.
template <class T>
T* buffer_array(const ProgramArrays& arrays, const py::object& obj, index width, const std::string& name,
                bool written) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(arrays.who) + ": " + name + " must be a numpy array");
    py::array a = obj.cast<py::array>();
    T* p = written ? output<T>(a, arrays.who, name.c_str(), 1) : const_cast<T*>(input<T>(a, arrays.who, name.c_str(), 1));
    if (a.shape(0) != width)
        fail_value(arrays.who, name + " has shape " + shape_of(a) + ", expected (" + std::to_string(width) + ",)");
    if (written) {
        no_overlap(arrays.who, a, name.c_str(), arrays.params, "params");
        if (arrays.grads) no_overlap(arrays.who, a, name.c_str(), *arrays.grads, "grads");
    }
    arrays.keep.append(a);
    return p;
}

// The buffers of a program dict: "roles" (names), "shapes" int64 (n, 3) of (width,
// per_row, int32), "arrays" (the views and arrays the roles need, else None).
template <class T>
void program_buffers(const ProgramArrays& arrays, const py::dict& d, Program<T>& p) {
    const py::list roles = d["roles"].cast<py::list>(), items = d["arrays"].cast<py::list>();
    py::array shapes_array = d["shapes"].cast<py::array>();
    const std::int64_t* shapes = input<std::int64_t>(shapes_array, arrays.who, "program['shapes']", 2);
    const std::size_t n = roles.size();
    if (items.size() != n || shapes_array.shape(0) != py::ssize_t(n) || shapes_array.shape(1) != 3)
        fail_value(arrays.who, "the program's roles, shapes (n, 3) and arrays must describe one set of buffers");
    for (std::size_t i = 0; i < n; ++i) {
        const std::string name = "buffers[" + std::to_string(i) + "]";
        train::BufferSpec b;
        b.role = parse_name<BufferRole>(arrays.who, "buffer role", roles[i].cast<std::string>(), train::kBufferRoleNames);
        b.width = index(shapes[3 * i]);
        b.per_row = shapes[3 * i + 1] != 0;
        b.int32 = shapes[3 * i + 2] != 0;
        const py::object item = items[i];
        T* array = nullptr;
        if (b.role == BufferRole::parameter) b.offset = offset_in<T>(arrays.who, arrays.params, item, name, b.width);
        if (b.role == BufferRole::gradient) {
            if (!arrays.grads) fail_value(arrays.who, name + ": an inference program has no gradients");
            b.offset = offset_in<T>(arrays.who, *arrays.grads, item, name, b.width);
        }
        if (b.role == BufferRole::state || b.role == BufferRole::constant)
            array = buffer_array<T>(arrays, item, b.width, name, b.role == BufferRole::state && arrays.grads);
        p.buffers.push_back(b);
        p.arrays.push_back(array);
    }
}

// One phase's op records: "codes" (names), "args" int64 (n, 7) of buffer ids (-1: none),
// "constants" float64 (n, 3), "keys" uint64 (n, 2) (the layer's seed and index),
// "activations" (names).
std::vector<OpRecord> op_records(const char* who, const py::dict& d, const char* phase) {
    const py::list codes = d["codes"].cast<py::list>(), acts = d["activations"].cast<py::list>();
    py::array args_a = d["args"].cast<py::array>(), consts_a = d["constants"].cast<py::array>(),
              keys_a = d["keys"].cast<py::array>();
    const std::int64_t* args = input<std::int64_t>(args_a, who, "args", 2);
    const double* consts = input<double>(consts_a, who, "constants", 2);
    const std::uint64_t* keys = input<std::uint64_t>(keys_a, who, "keys", 2);
    const py::ssize_t n = py::ssize_t(codes.size());
    if (py::ssize_t(acts.size()) != n || args_a.shape(0) != n || args_a.shape(1) != train::kMaxArgs ||
        consts_a.shape(0) != n || consts_a.shape(1) != 3 || keys_a.shape(0) != n || keys_a.shape(1) != 2)
        fail_value(who, std::string("the ") + phase + " records must have one row per op: codes, activations, args (n, " +
                            std::to_string(train::kMaxArgs) + "), constants (n, 3), keys (n, 2)");
    std::vector<OpRecord> ops(static_cast<std::size_t>(n));
    for (py::ssize_t i = 0; i < n; ++i) {
        OpRecord& op = ops[std::size_t(i)];
        op.code = op_code_of(who, codes[std::size_t(i)].cast<std::string>());
        op.activation = activation_of(who, acts[std::size_t(i)].cast<std::string>());
        for (int j = 0; j < train::kMaxArgs; ++j) op.args[j] = int(args[i * train::kMaxArgs + j]);
        for (int j = 0; j < 3; ++j) op.constants[j] = consts[i * 3 + j];
        op.seed = keys[i * 2];
        op.layer = keys[i * 2 + 1];
    }
    return ops;
}

// One head of the dict's "heads": "loss", "output", training also "loss_grad" and "weight".
train::LossHead head_of(const char* who, const py::dict& h, bool training) {
    train::LossHead head;
    head.loss = loss_of(who, h["loss"].cast<std::string>());
    head.output = h["output"].cast<int>();
    if (training) {
        head.loss_grad = h["loss_grad"].cast<int>();
        head.weight = h["weight"].cast<double>();
    }
    return head;
}

// The program's heads: its "heads", or one head of `loss` over "output" (and "loss_grad").
std::vector<train::LossHead> heads_of(const char* who, const py::dict& d, const py::object& loss, bool training) {
    std::vector<train::LossHead> heads;
    if (!d.contains("heads")) {
        if (loss.is_none()) fail_value(who, "loss is needed for a program without heads");
        train::LossHead head;
        head.loss = loss_of(who, loss.cast<std::string>());
        head.output = d["output"].cast<int>();
        if (training) head.loss_grad = d["loss_grad"].cast<int>();
        heads.push_back(head);
        return heads;
    }
    if (!loss.is_none()) fail_value(who, "the program lists its heads' losses: loss must be None");
    for (const py::handle item : d["heads"].cast<py::list>()) heads.push_back(head_of(who, item.cast<py::dict>(), training));
    return heads;
}

}  // namespace

template <class T>
Program<T> program_of(const ProgramArrays& arrays, const py::object& obj, const py::object& loss) {
    if (!py::isinstance<py::dict>(obj)) throw py::type_error(std::string(arrays.who) + ": program must be a dict");
    const py::dict d = py::reinterpret_borrow<py::dict>(obj);
    const bool training = arrays.grads != nullptr;
    Program<T> p;
    program_buffers<T>(arrays, d, p);
    p.forward = op_records(arrays.who, d["forward"].cast<py::dict>(), "forward");
    if (training) {
        p.backward = op_records(arrays.who, d["backward"].cast<py::dict>(), "backward");
        p.penalty = op_records(arrays.who, d["penalty"].cast<py::dict>(), "penalty");
    }
    p.input = d["input"].cast<int>();
    p.heads = heads_of(arrays.who, d, loss, training);
    p.bf16 = d.contains("bf16") && d["bf16"].cast<bool>();
    return p;
}

template Program<float> program_of<float>(const ProgramArrays&, const py::object&, const py::object&);
template Program<double> program_of<double>(const ProgramArrays&, const py::object&, const py::object&);

}}  // namespace fastmlp::bind
