// A restricted pickle reader for PyTorch's flight-recorder dumps (issue 15):
// a small pickle machine for protocols 2 through 5 that builds plain values
// only — None, bool, int, float, str, bytes, list, tuple, dict — and refuses
// everything else (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, NEWOBJ, INST, OBJ,
// persistent ids, extensions, out-of-band buffers, sets, protocol 0/1 text
// opcodes) with an Error naming the opcode and its offset. Unlike
// `pickle.load`, reading a dump can never run code.
//
// Bounded in everything: input bytes, nesting depth, values made, memo
// entries, string and integer sizes. Memo references share one value (as
// Python does), so a value may appear in several containers; a container that
// holds itself (a reference cycle) is refused, so every result is a finite
// tree of at most depth_max levels to walk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lockstep::doctor {

struct PickleLimits {
  std::size_t bytes_max = std::size_t{256} << 20;  // the whole pickle
  std::size_t depth_max = 64;                       // containers inside containers
  std::size_t values_max = std::size_t{1} << 24;    // values made, all kinds
  std::size_t memo_max = std::size_t{1} << 24;      // memo slots
  std::size_t string_bytes_max = std::size_t{64} << 20;
};

struct PickleValue {
  enum class Kind : std::uint8_t { kNone, kBool, kInt, kFloat, kStr, kBytes, kList, kTuple, kDict };
  using Ref = std::shared_ptr<PickleValue>;

  Kind kind = Kind::kNone;
  bool boolean = false;
  std::int64_t integer = 0;
  double real = 0;
  std::string text;                             // kStr (UTF-8) and kBytes
  std::vector<Ref> items;                       // kList, kTuple
  std::vector<std::pair<Ref, Ref>> entries;     // kDict, in insertion order (a later equal key replaces)

  // The value of a dict entry whose key is the string `key`; nullptr when
  // this is not a dict or has no such key.
  const PickleValue* get(std::string_view key) const;
  bool is_string() const { return kind == Kind::kStr || kind == Kind::kBytes; }
  bool is_sequence() const { return kind == Kind::kList || kind == Kind::kTuple; }
};

// "None", "bool", "int", "float", "str", "bytes", "list", "tuple", "dict".
std::string_view pickle_kind_name(PickleValue::Kind kind);

// Runs the pickle in `data` and returns the value STOP left on the stack.
// Throws Error{kDecode} naming the opcode and offset for a refused or unknown
// opcode, truncated input, a stack or mark underflow, an unhashable dict key
// (list or dict), or a missing memo entry; Error{kLimit} when a PickleLimits
// bound would be exceeded. Pure; any thread.
PickleValue::Ref read_pickle(std::span<const std::uint8_t> data, const PickleLimits& limits = {});

}  // namespace lockstep::doctor
