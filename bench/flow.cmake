lockstep_bench(flow SOURCES ${CMAKE_CURRENT_LIST_DIR}/flow_bench.cc DEPS lockstep_flow lockstep_runtime)
