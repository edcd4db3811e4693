# Wire-protocol benchmarks (SPEC §8): envelope preflight+encode+digest vs a
# stable-JSON encoding of the same meta, and frame decode+validate.
lockstep_bench(wire SOURCES wire_bench.cc DEPS lockstep_wire nlohmann_json::nlohmann_json)
