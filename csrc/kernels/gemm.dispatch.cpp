// GEMM dispatch unit, compiled once per ISA. (Placeholder driver: a plain loop with the
// reduction over k in ascending order per output element; replaced by the packed one.)
#include "../common.hpp"
#include "../simd/vec.hpp"

namespace fastmlp {
namespace FASTMLP_ISA_NS { namespace {

template <class T>
void gemm(bool ta, bool tb, index m, index n, index k, T alpha, const T* a, index lda,
          const T* b, index ldb, T beta, T* c, index ldc, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (index i = 0; i < m; ++i) {
        for (index j = 0; j < n; ++j) {
            T acc = 0;
            for (index p = 0; p < k; ++p) {
                const T x = ta ? a[p * lda + i] : a[i * lda + p];
                const T y = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += x * y;
            }
            c[i * ldc + j] = beta == T(0) ? alpha * acc : alpha * acc + beta * c[i * ldc + j];
        }
    }
}

}}  // namespace FASTMLP_ISA_NS::(anonymous)

template <>
void register_gemm<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    k.f32.gemm = &FASTMLP_ISA_NS::gemm<float>;
    k.f64.gemm = &FASTMLP_ISA_NS::gemm<double>;
}

}  // namespace fastmlp
