#include "wire/wire_fixtures.h"

#include "lockstep/frame.h"

namespace lockstep::wire_test {

namespace {
void store_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
}  // namespace

void reseal_header(std::vector<std::uint8_t>& frame) {
  store_u64(frame.data() + frame_layout::kHeaderChecksum, digest_bytes(frame.data(), frame_layout::kHeaderChecksum));
}

void reseal_frame(std::vector<std::uint8_t>& frame) {
  const std::span<const std::uint8_t> body(frame.data() + kHeaderBytes, frame.size() - kHeaderBytes);
  store_u64(frame.data() + frame_layout::kBodyChecksum, digest_bytes(body));
  reseal_header(frame);
}

}  // namespace lockstep::wire_test
