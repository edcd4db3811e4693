// libFuzzer target for the doctor's restricted pickle reader (issue 15: PyTorch
// flight-recorder dumps are read without pickle.load). Any input must end in a
// value or a lockstep::Error; any other exception, crash or sanitizer report
// is a finding. Limits are small so the fuzzer explores more than memory.
#include <cstddef>
#include <cstdint>
#include <span>

#include "doctor/pickle_reader.h"
#include "lockstep/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lockstep::doctor::PickleLimits limits;
  limits.values_max = 1 << 16;
  limits.memo_max = 1 << 16;
  limits.string_bytes_max = 1 << 16;
  try {
    const auto value = lockstep::doctor::read_pickle(std::span<const std::uint8_t>(data, size), limits);
    // A returned value is a finite tree: walking it must end.
    (void)value->get("entries");
  } catch (const lockstep::Error&) {
  }
  return 0;
}
