# cmake -DINPUT=page_runtime.js -DOUTPUT=page_runtime_js.cpp -P embed_js.cmake
# Writes OUTPUT, a C++ source that defines qrl::envs::detail::page_runtime_js
# as INPUT's text, so the page runtime is edited as JavaScript and shipped
# inside qrl::dino with no file to find at run time.
file(READ "${INPUT}" text)
set(delimiter "qrl_js")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains )${delimiter}\", which ends the C++ raw string it is embedded in")
endif()
get_filename_component(name "${INPUT}" NAME)
set(source "// Generated from ${name} by embed_js.cmake; edit ${name}, not this file.
#include <string_view>

namespace qrl::envs::detail {
extern const std::string_view page_runtime_js;
const std::string_view page_runtime_js = R\"${delimiter}(${text})${delimiter}\";
}  // namespace qrl::envs::detail
")
file(WRITE "${OUTPUT}" "${source}")
