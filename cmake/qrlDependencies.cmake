# Shared by the build and by the installed qrlConfig.cmake, so a consumer of
# find_package(qrl) resolves exactly the dependencies qrl was built against.
include_guard(GLOBAL)

# OpenBLAS for SGEMM. Debian ships it in three threading flavours; the OpenMP
# one shares its thread pool with qrl's own OpenMP loops, where the pthread one
# would spin its own threads against them on a small machine.
function(qrl_find_cpu_dependencies)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  # nlohmann/json: header-only, for safetensors headers and JSON output.
  find_package(nlohmann_json 3.10 REQUIRED)
  if(TARGET qrl::openblas)
    return()
  endif()
  find_library(QRL_OPENBLAS_LIBRARY NAMES openblas
    HINTS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
    DOC "OpenBLAS (prefer the OpenMP build)")
  find_path(QRL_CBLAS_INCLUDE_DIR NAMES cblas.h
    HINTS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} PATH_SUFFIXES openblas)
  if(NOT QRL_OPENBLAS_LIBRARY OR NOT QRL_CBLAS_INCLUDE_DIR)
    message(FATAL_ERROR "qrl needs OpenBLAS: install it with `sudo apt-get install libopenblas-openmp-dev` "
                        "(or run scripts/setup.sh), or pass -DQRL_OPENBLAS_LIBRARY=/path/to/libopenblas.so")
  endif()
  add_library(qrl::openblas UNKNOWN IMPORTED GLOBAL)
  set_target_properties(qrl::openblas PROPERTIES
    IMPORTED_LOCATION "${QRL_OPENBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${QRL_CBLAS_INCLUDE_DIR}")
  message(STATUS "qrl: OpenBLAS ${QRL_OPENBLAS_LIBRARY}")
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
