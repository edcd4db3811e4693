# Guard: flight-recorder append cost (SPEC §8: <= 50 ns).
lockstep_bench(guard SOURCES ${CMAKE_CURRENT_LIST_DIR}/guard_bench.cc DEPS lockstep_guard)
