#pragma once
// Functors in include/qrl/kernels are compiled twice: by g++ as the CPU
// backend's implementation and by nvcc inside kernels/*.cu. This macro is the
// only CUDA-ism they may use, so plain C++ translation units never see CUDA.
#if defined(__CUDACC__)
#define QRL_HOST_DEVICE __host__ __device__
#else
#define QRL_HOST_DEVICE
#endif
