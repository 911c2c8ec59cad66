# weightd_add_fuzzer(NAME SOURCES... CORPUS DIR [MAX_LEN N] LIBS LIBS...)
# With WEIGHTD_FUZZ: a libFuzzer executable, part of the `fuzzers` target and listed
# in ${CMAKE_BINARY_DIR}/fuzzers.txt ("name corpus max_len") for scripts/test.
# Without: the same target body linked with a replay main, and a ctest that runs it
# over every input of its corpus, so each found crash stays a regression test.
add_custom_target(fuzzers)
file(WRITE ${CMAKE_BINARY_DIR}/fuzzers.txt "")

function(weightd_add_fuzzer name)
  cmake_parse_arguments(ARG "" "CORPUS;MAX_LEN" "LIBS" ${ARGN})
  if(NOT ARG_MAX_LEN)
    set(ARG_MAX_LEN 4096)
  endif()
  set(corpus ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_CORPUS})
  if(WEIGHTD_FUZZ)
    add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
    target_link_libraries(${name} PRIVATE ${ARG_LIBS})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    add_dependencies(fuzzers ${name})
    file(APPEND ${CMAKE_BINARY_DIR}/fuzzers.txt "${name} ${corpus} ${ARG_MAX_LEN}\n")
  else()
    add_executable(${name}_replay ${ARG_UNPARSED_ARGUMENTS} ${PROJECT_SOURCE_DIR}/tests/fuzz_replay_main.cc)
    target_link_libraries(${name}_replay PRIVATE ${ARG_LIBS})
    set_target_properties(${name}_replay PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    add_test(NAME fuzz_replay.${name} COMMAND ${name}_replay ${corpus})
    set_tests_properties(fuzz_replay.${name} PROPERTIES LABELS fuzz)
  endif()
endfunction()
