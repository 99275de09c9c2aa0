# Shared by the build and by the installed qrlConfig.cmake, so a consumer of
# find_package(qrl) resolves exactly the dependencies qrl was built against.
include_guard(GLOBAL)

# oneDNN for the CPU backend's convolutions and SGEMM. Debian builds it on
# OpenMP, the runtime of qrl's own loops, so the two share one thread pool.
function(qrl_find_cpu_dependencies)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  # nlohmann/json: header-only, for safetensors headers and JSON output.
  find_package(nlohmann_json 3.10 REQUIRED)
  if(TARGET qrl::onednn)
    return()
  endif()
  # Not find_package(dnnl): Debian's dnnl-config.cmake demands OpenCL, which the
  # CPU engine does not use.
  find_library(QRL_DNNL_LIBRARY NAMES dnnl DOC "oneDNN (libdnnl-dev)")
  find_path(QRL_DNNL_INCLUDE_DIR NAMES oneapi/dnnl/dnnl.hpp)
  if(NOT QRL_DNNL_LIBRARY OR NOT QRL_DNNL_INCLUDE_DIR)
    message(FATAL_ERROR "qrl needs oneDNN 2.x for its CPU backend: install it with "
                        "`sudo apt-get install libdnnl-dev` (or run scripts/setup.sh), or pass "
                        "-DQRL_DNNL_LIBRARY=/path/to/libdnnl.so -DQRL_DNNL_INCLUDE_DIR=/path/to/include")
  endif()
  add_library(qrl::onednn UNKNOWN IMPORTED GLOBAL)
  set_target_properties(qrl::onednn PROPERTIES
    IMPORTED_LOCATION "${QRL_DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${QRL_DNNL_INCLUDE_DIR}")
  message(STATUS "qrl: oneDNN ${QRL_DNNL_LIBRARY}")
endfunction()

# cuDNN for the CUDA backend, as the imported target qrl::cudnn (with the CUDA
# toolkit's targets from find_package(CUDAToolkit)). Sets QRL_CUDNN_FOUND in
# the caller. cuDNN ships beside the toolkit here (and in NVIDIA's
# containers); elsewhere point CUDNN_ROOT at it. The installed config passes
# the directories qrl was built with as extra hints.
function(qrl_find_cuda_dependencies)
  set(QRL_CUDNN_FOUND FALSE PARENT_SCOPE)
  find_package(CUDAToolkit QUIET)
  if(NOT CUDAToolkit_FOUND)
    return()
  endif()
  if(TARGET qrl::cudnn)
    set(QRL_CUDNN_FOUND TRUE PARENT_SCOPE)
    return()
  endif()
  find_path(QRL_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDNN_ROOT} ENV CUDNN_ROOT ${CUDAToolkit_INCLUDE_DIRS}
    ${QRL_CUDNN_HINTS} PATH_SUFFIXES include)
  find_library(QRL_CUDNN_LIBRARY cudnn HINTS ${CUDNN_ROOT} ENV CUDNN_ROOT ${CUDAToolkit_LIBRARY_DIR}
    ${CUDAToolkit_LIBRARY_ROOT} ${QRL_CUDNN_HINTS} PATH_SUFFIXES lib lib64 lib/x64)
  if(NOT QRL_CUDNN_INCLUDE_DIR OR NOT QRL_CUDNN_LIBRARY)
    return()
  endif()
  add_library(qrl::cudnn UNKNOWN IMPORTED GLOBAL)
  set_target_properties(qrl::cudnn PROPERTIES
    IMPORTED_LOCATION "${QRL_CUDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${QRL_CUDNN_INCLUDE_DIR}")
  set(QRL_CUDNN_FOUND TRUE PARENT_SCOPE)
endfunction()
