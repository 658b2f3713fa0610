// cpu_threads.h - thread count of the CPU builds (host only; never included by .cu files).
#ifndef EDGESEG_COMMON_CPU_THREADS_H_
#define EDGESEG_COMMON_CPU_THREADS_H_

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace edgeseg {

// OpenMP threads for a kernel call: the caller's request, or OpenMP's default when it is <= 0.
inline int cpu_thread_count(int32_t requested) {
#ifdef _OPENMP
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

}  // namespace edgeseg

#endif  // EDGESEG_COMMON_CPU_THREADS_H_
