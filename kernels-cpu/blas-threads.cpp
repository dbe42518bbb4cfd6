#include "kernels-cpu/blas-threads.h"

#include <mutex>

#if defined(EMBER_OPENBLAS)
#include <cblas.h>
#elif defined(EMBER_ONEDNN)
#include <omp.h>
#endif

namespace ember {

void blas_single_thread() {
#if defined(EMBER_OPENBLAS)
    static std::once_flag once;  // OpenBLAS's thread count is global
    std::call_once(once, [] { openblas_set_num_threads(1); });
#elif defined(EMBER_ONEDNN)
    thread_local bool done = false;  // OpenMP's is per calling thread
    if (!done) {
        omp_set_num_threads(1);
        done = true;
    }
#endif
}

}  // namespace ember
