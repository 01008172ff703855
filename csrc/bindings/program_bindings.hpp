// A program dict (python/fastmlp/train/fused.py, docs/plans.md "The compiled program") as a
// train::Program for the Trainer and Predictor bindings: names parsed, arrays checked for
// type, shape and placement, kept alive by the caller. No math and no program checks here:
// check_program (train/program.cpp) checks what the records say.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "../train/program.hpp"

namespace fastmlp { namespace bind {

// A program's arrays: the flat parameter buffer, the gradient buffer (training only: null
// for inference), and the state and constant arrays, appended to `keep`.
struct ProgramArrays {
    const char* who;
    const pybind11::array& params;
    const pybind11::array* grads;
    pybind11::list& keep;
};

// The program dict `program`: its buffers, its phases' op records (training: forward,
// backward, penalty; inference: forward), its input and its heads: the dict's "heads" (a
// list of dicts: "loss" (a name), "output" (a buffer id), training also "loss_grad" (a
// buffer id) and "weight"), or without it one head of `loss` (which must then be None
// otherwise) over "output" (and "loss_grad"), weight 1. TypeError or ValueError naming
// `arrays.who` and the entry.
template <class T>
train::Program<T> program_of(const ProgramArrays& arrays, const pybind11::object& program,
                             const pybind11::object& loss);

extern template train::Program<float> program_of<float>(const ProgramArrays&, const pybind11::object&,
                                                        const pybind11::object&);
extern template train::Program<double> program_of<double>(const ProgramArrays&, const pybind11::object&,
                                                          const pybind11::object&);

}}  // namespace fastmlp::bind
