// A plain-data value stored as atomic words, for seqlock-style publication
// between a writer and a concurrent reader without a lock or a data race.
// Stores are release and loads acquire (plain moves on x86), so a reader that
// saw any word of a newer write also sees that writer's stamp when it
// re-reads the stamp afterwards: no fences needed (and TSan understands it).
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <type_traits>

namespace lockstep::guard_detail {

template <class T>
class AtomicWords {
  static_assert(std::is_trivially_copyable_v<T>);
  static_assert(sizeof(T) % sizeof(std::uint64_t) == 0, "pad T to whole words");
  static constexpr std::size_t kWords = sizeof(T) / sizeof(std::uint64_t);
  using Words = std::array<std::uint64_t, kWords>;

 public:
  void store(const T& value) noexcept {
    const auto words = std::bit_cast<Words>(value);
    for (std::size_t i = 0; i < kWords; ++i) words_[i].store(words[i], std::memory_order_release);
  }
  T load() const noexcept {
    Words words;
    for (std::size_t i = 0; i < kWords; ++i) words[i] = words_[i].load(std::memory_order_acquire);
    return std::bit_cast<T>(words);
  }

 private:
  std::array<std::atomic<std::uint64_t>, kWords> words_{};
};

}  // namespace lockstep::guard_detail
