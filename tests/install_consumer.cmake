# ctest driver: install qrl from the build tree into a scratch prefix, then
# configure, build and run tests/consumer against that prefix only
# (-DQRL_CONSUMER_CUDA=ON: also its qrl::cuda program).
foreach(var QRL_BINARY_DIR QRL_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_consumer.cmake needs -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
run(${CMAKE_COMMAND} --install "${QRL_BINARY_DIR}" --prefix "${prefix}")
if(NOT DEFINED QRL_CONSUMER_CUDA)
  set(QRL_CONSUMER_CUDA OFF)
endif()
run(${CMAKE_COMMAND} -S "${QRL_SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_PREFIX_PATH=${prefix}" -DQRL_CONSUMER_CUDA=${QRL_CONSUMER_CUDA})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
if(QRL_CONSUMER_CUDA)
  # Links against the installed qrl::cuda; runs a check only where a device is.
  run("${WORK_DIR}/build/consumer_cuda")
endif()
