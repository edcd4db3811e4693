# Comm (SPEC §8): shm-ring fan-out of a 4 KiB envelope to 2/4/8 local reader
# processes vs the same bytes by Gloo broadcast; guarded vs raw collectives.
if(TARGET lockstep_comm AND TARGET lockstep_gloo_backend)
  lockstep_bench(comm SOURCES ${CMAKE_CURRENT_LIST_DIR}/comm_bench.cc
    DEPS lockstep_comm lockstep_gloo_backend lockstep_store PkgConfig::XXHASH)
endif()
