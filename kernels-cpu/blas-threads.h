// BLAS calls made inside ThreadPool workers: each must run single-threaded, since a second set of spinning BLAS
// threads would only fight the pool's workers for the cores.
#pragma once

namespace ember {

// Makes the calling thread's BLAS calls single-threaded (OpenBLAS: its global thread count, once; oneDNN: this
// thread's OpenMP thread count, which sizes its parallel regions). Nothing without BLAS. Cheap after the first call.
void blas_single_thread();

}  // namespace ember
