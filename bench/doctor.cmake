# SPEC §8: doctor on 1024 ranks x 4096 events <= 2 s.
if(TARGET lockstep_doctor)
  lockstep_bench(doctor SOURCES ${CMAKE_CURRENT_LIST_DIR}/doctor_bench.cc DEPS lockstep_doctor)
endif()
