// libFuzzer target for the frame decoder (SPEC §4A: "a decoder fed arbitrary
// bytes returns a clear error and never reads out of bounds"). Built with
// ASan+UBSan by the `fuzz` preset. The first input byte is a selector:
//   bits 0-1 decoder (envelope, result, control, header only)
//   bits 2-3 expected version % 3 (0 = any supported)
//   bit 4    reseal: recompute both checksums first, so mutations get past
//            them and reach the body parsers and schema checks
// and the rest is the frame. Any exception other than lockstep::Error, any
// crash, and any sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "lockstep/control.h"
#include "lockstep/digest.h"
#include "lockstep/envelope.h"
#include "lockstep/error.h"
#include "lockstep/result.h"

namespace {

// The corpus frames carry this token's digest; without it every input would
// stop at the job-token check.
const std::uint64_t kFuzzTokenDigest = lockstep::job_token_digest("fuzz-job", 0);

void decode_all_the_way(std::span<const std::uint8_t> frame, std::uint8_t selector) {
  const lockstep::FrameExpectations expect{kFuzzTokenDigest, static_cast<lockstep::ProtocolVersion>((selector >> 2) % 3)};
  switch (selector & 3) {
    case 0: {
      const lockstep::DecodedEnvelope decoded = lockstep::decode_envelope(frame, expect);
      // A decoded manifest must be allocatable within the limits.
      if (decoded.header.payload_bytes <= (std::uint64_t{1} << 20)) lockstep::allocate_payload(decoded.manifest);
      break;
    }
    case 1: lockstep::decode_result(frame, expect); break;
    case 2: lockstep::decode_control(frame, expect); break;
    default:
      if (frame.size() >= lockstep::kHeaderBytes) lockstep::decode_header(frame.first<lockstep::kHeaderBytes>(), expect);
      break;
  }
}

void store_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// Makes the checksums match whatever the fuzzer wrote, as a buggy (not
// noisy) sender would.
void reseal(std::vector<std::uint8_t>& frame) {
  namespace fl = lockstep::frame_layout;
  if (frame.size() < lockstep::kHeaderBytes) return;
  const std::span<const std::uint8_t> body(frame.data() + lockstep::kHeaderBytes,
                                           frame.size() - lockstep::kHeaderBytes);
  store_u64(frame.data() + fl::kBodyChecksum, lockstep::digest_bytes(body));
  store_u64(frame.data() + fl::kHeaderChecksum, lockstep::digest_bytes(frame.data(), fl::kHeaderChecksum));
}

constexpr std::uint8_t kResealBit = 0x10;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // A copy sized exactly, so ASan catches any read past the frame.
  std::vector<std::uint8_t> frame(data + 1, data + size);
  if (data[0] & kResealBit) reseal(frame);
  try {
    decode_all_the_way(frame, data[0]);
  } catch (const lockstep::Error&) {
    // The documented outcome for bad bytes.
  }
  return 0;
}
