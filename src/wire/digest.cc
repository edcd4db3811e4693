#include "lockstep/digest.h"

#define XXH_STATIC_LINKING_ONLY  // XXH64_state_t on the stack: digest_tensor allocates nothing
#include <xxhash.h>

#include <algorithm>
#include <array>

#include "lockstep/assert.h"
#include "wire/bytes.h"

namespace lockstep {

namespace {
// Fixed seed for the job token, so its digest never equals digest_string of the
// same text used elsewhere (e.g. a token that also appears in meta).
constexpr XXH64_hash_t kJobTokenSeed = 0x6c6f636b73746570ull;  // "lockstep"
constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::size_t kHexDigits64 = 16;
}  // namespace

std::uint64_t digest_bytes(std::span<const std::uint8_t> bytes) noexcept {
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::uint64_t digest_bytes(const void* data, std::size_t size_bytes) noexcept {
  return XXH3_64bits(data, size_bytes);
}

std::uint64_t digest_string(std::string_view text) noexcept { return XXH3_64bits(text.data(), text.size()); }

namespace {
class TensorBlockFold {
 public:
  explicit TensorBlockFold(std::size_t size_bytes) noexcept { XXH64_reset(&state_, size_bytes); }
  void add(std::uint64_t block_digest) noexcept {
    std::array<std::uint8_t, 8> word{};
    wire_detail::store_le(word.data(), block_digest, 8);
    XXH64_update(&state_, word.data(), word.size());
  }
  std::uint64_t digest() const noexcept { return XXH64_digest(&state_); }

 private:
  XXH64_state_t state_{};
};
}  // namespace

std::uint64_t digest_tensor(const void* data, std::size_t size_bytes) noexcept {
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  TensorBlockFold fold(size_bytes);
  for (std::size_t offset = 0, block = 0; offset < size_bytes; offset += kTensorDigestBlockBytes, ++block) {
    fold.add(XXH64(bytes + offset, std::min(kTensorDigestBlockBytes, size_bytes - offset), block));
  }
  return fold.digest();
}

std::uint64_t digest_tensor_blocks(std::span<const std::uint64_t> block_digests, std::size_t size_bytes) noexcept {
  TensorBlockFold fold(size_bytes);
  for (const std::uint64_t block_digest : block_digests) fold.add(block_digest);
  return fold.digest();
}

std::uint64_t digest_combine(std::uint64_t running, std::uint64_t next) noexcept {
  std::array<std::uint8_t, 16> pair{};
  wire_detail::store_le(pair.data(), running, 8);
  wire_detail::store_le(pair.data() + 8, next, 8);
  return XXH3_64bits(pair.data(), pair.size());
}

std::string digest_hex(std::uint64_t digest) {
  std::string out(kHexDigits64, '0');
  for (std::size_t i = 0; i < kHexDigits64; ++i) {
    out[kHexDigits64 - 1 - i] = kHexDigits[(digest >> (4 * i)) & 0xF];
  }
  return out;
}

std::optional<std::uint64_t> digest_from_hex(std::string_view text) noexcept {
  if (text.size() != kHexDigits64) return std::nullopt;
  std::uint64_t value = 0;
  for (const char c : text) {
    int nibble = -1;
    if (c >= '0' && c <= '9') nibble = c - '0';
    if (c >= 'a' && c <= 'f') nibble = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') nibble = c - 'A' + 10;
    if (nibble < 0) return std::nullopt;
    value = (value << 4) | static_cast<std::uint64_t>(nibble);
  }
  return value;
}

std::uint64_t job_token_digest(std::string_view job_token, std::uint32_t generation) noexcept {
  return (XXH3_64bits_withSeed(job_token.data(), job_token.size(), kJobTokenSeed) & ~kFrameGenerationMask) |
         (generation & kFrameGenerationMask);
}

struct DigestStream::State {
  XXH3_state_t* xxh = nullptr;
  ~State() { XXH3_freeState(xxh); }
};

DigestStream::DigestStream() : state_(std::make_unique<State>()) {
  state_->xxh = XXH3_createState();
  LOCKSTEP_ASSERT(state_->xxh != nullptr);
  XXH3_64bits_reset(state_->xxh);
}

DigestStream::~DigestStream() = default;
DigestStream::DigestStream(DigestStream&&) noexcept = default;
DigestStream& DigestStream::operator=(DigestStream&&) noexcept = default;

void DigestStream::update(std::span<const std::uint8_t> bytes) noexcept {
  XXH3_64bits_update(state_->xxh, bytes.data(), bytes.size());
}

void DigestStream::update_u64(std::uint64_t value) noexcept {
  std::array<std::uint8_t, 8> le{};
  wire_detail::store_le(le.data(), value, 8);
  XXH3_64bits_update(state_->xxh, le.data(), le.size());
}

std::uint64_t DigestStream::digest() const noexcept { return XXH3_64bits_digest(state_->xxh); }

}  // namespace lockstep
