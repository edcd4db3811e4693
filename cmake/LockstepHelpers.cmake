# lockstep_layer(NAME SOURCES ... DEPS ...): one static library per layer of
# SPEC §3, exported under lockstep:: for find_package(lockstep).
function(lockstep_layer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(lockstep_${name} STATIC ${ARG_SOURCES})
  add_library(lockstep::${name} ALIAS lockstep_${name})
  # Installed as lockstep::<layer>, the same name the build tree aliases.
  set_target_properties(lockstep_${name} PROPERTIES EXPORT_NAME ${name})
  target_include_directories(lockstep_${name}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(lockstep_${name} PUBLIC ${ARG_DEPS})
  set_property(GLOBAL APPEND PROPERTY LOCKSTEP_EXPORTED_LAYERS lockstep_${name})
endfunction()

# lockstep_test(NAME SOURCES ... DEPS ... LABELS ... TIMEOUT s): a GoogleTest
# binary registered with ctest. Every test carries a hard timeout.
function(lockstep_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 60)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
    ENVIRONMENT "LOCKSTEP_BIN=$<TARGET_FILE:lockstep>")
endfunction()
