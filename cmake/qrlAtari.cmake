# Atari through the Arcade Learning Environment. ALE is GPL-2.0 and is never
# part of qrl: scripts/build_ale.sh builds it into .deps/ale from the pinned
# ale-py source distribution, or a user points ale_DIR at their own install.
# QRL_WITH_ATARI: AUTO (on when ALE is found), ON (fail without it), OFF.
include_guard(GLOBAL)

set(QRL_WITH_ATARI AUTO CACHE STRING "Build the Atari env and example (AUTO: when ALE is found)")
set_property(CACHE QRL_WITH_ATARI PROPERTY STRINGS AUTO ON OFF)

set(QRL_ATARI_ENABLED OFF)
if(NOT QRL_WITH_ATARI STREQUAL "OFF")
  find_package(ale CONFIG QUIET HINTS "${PROJECT_SOURCE_DIR}/.deps/ale")
  if(ale_FOUND)
    set(QRL_ATARI_ENABLED ON)
  elseif(QRL_WITH_ATARI STREQUAL "ON")
    message(FATAL_ERROR "QRL_WITH_ATARI=ON but ALE was not found: run `bash scripts/build_ale.sh` "
                        "(it builds ALE into .deps/ale), or pass -Dale_DIR=<prefix>/lib/cmake/ale")
  endif()
endif()

if(QRL_ATARI_ENABLED)
  # ALE's exported target names <prefix>/include/ale, but its headers include
  # "ale/..." from the level above.
  get_filename_component(_qrl_ale_prefix "${ale_DIR}/../../.." ABSOLUTE)
  add_library(qrl_atari INTERFACE)
  add_library(qrl::atari ALIAS qrl_atari)
  target_include_directories(qrl_atari INTERFACE "${PROJECT_SOURCE_DIR}/envs/atari")
  # SYSTEM: ALE's headers do not pass qrl's -Wextra.
  target_include_directories(qrl_atari SYSTEM INTERFACE "${_qrl_ale_prefix}/include")
  target_link_libraries(qrl_atari INTERFACE qrl::qrl ale::ale-lib)
  set(_qrl_ale_roms "${_qrl_ale_prefix}/share/ale/roms")
  if(IS_DIRECTORY "${_qrl_ale_roms}")
    target_compile_definitions(qrl_atari INTERFACE QRL_ALE_ROMS_DIR="${_qrl_ale_roms}")
  else()
    set(_qrl_ale_roms "none next to ALE; set ALE_ROMS_DIR or pass a ROM path")
  endif()
  message(STATUS "qrl: Atari enabled (ALE ${ale_VERSION} from ${_qrl_ale_prefix}; ROMs: ${_qrl_ale_roms})")
elseif(QRL_WITH_ATARI STREQUAL "OFF")
  message(STATUS "qrl: Atari disabled (QRL_WITH_ATARI=OFF)")
else()
  message(STATUS "qrl: Atari disabled: ALE not found; `bash scripts/build_ale.sh` builds it into .deps/ale")
endif()
