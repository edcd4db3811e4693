#include "doctor/pickle_reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>

#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

using Kind = PickleValue::Kind;
using Ref = PickleValue::Ref;

// Opcodes of protocols 2-5 that build plain values (pickletools' names).
enum Op : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kNone = 'N',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kBinFloat = 'G',
  kBinUnicode = 'X',
  kShortBinString = 'U',
  kBinString = 'T',
  kShortBinBytes = 'C',
  kBinBytes = 'B',
  kEmptyList = ']',
  kAppend = 'a',
  kAppends = 'e',
  kList = 'l',
  kEmptyDict = '}',
  kSetItem = 's',
  kSetItems = 'u',
  kDict = 'd',
  kEmptyTuple = ')',
  kTuple = 't',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kMemoize = 0x94,
  kFrame = 0x95,
};

// Opcodes a dump never needs and that could run code or build objects.
std::optional<std::string_view> refused_name(std::uint8_t op) {
  switch (op) {
    case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL";
    case 'R': return "REDUCE";
    case 'b': return "BUILD";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 'I': return "INT (protocol 0)";
    case 'L': return "LONG (protocol 0)";
    case 'F': return "FLOAT (protocol 0)";
    case 'S': return "STRING (protocol 0)";
    case 'V': return "UNICODE (protocol 0)";
    case 'p': return "PUT (protocol 0)";
    case 'g': return "GET (protocol 0)";
    default: return std::nullopt;
  }
}

class Machine {
 public:
  Machine(std::span<const std::uint8_t> data, const PickleLimits& limits) : data_(data), limits_(limits) {}
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;
  // A refused pickle may have built a reference cycle, which shared
  // ownership alone would never free: empty every container it made.
  ~Machine() {
    if (accepted_) return;
    for (const Ref& container : containers_) {
      container->items.clear();
      container->entries.clear();
    }
  }

  Ref run() {
    if (data_.size() > limits_.bytes_max) {
      throw Error(ErrorCode::kLimit, "pickle of " + std::to_string(data_.size()) + " bytes exceeds " +
                                         std::to_string(limits_.bytes_max));
    }
    while (true) {
      op_offset_ = pos_;
      const std::uint8_t op = byte();
      if (op == kStop) {
        if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values");
        // Only a container pushed a second time (memo GET, DUP) can be
        // shared or hold itself; without one the value is a tree, and a
        // plain walk bounds its depth (torch memoizes strings, not containers).
        if (shares_container_) {
          check_nesting(*stack_.back(), 0);
        } else {
          check_tree_depth(*stack_.back(), 0);
        }
        accepted_ = true;
        return stack_.back();
      }
      step(op);
    }
  }

 private:
  // Memo references can make a container hold itself, directly or through
  // others; a reader walking such a value would never end. Depth-first, each
  // container's height computed once (a shared one is not walked again), the
  // whole at most depth_max levels deep. Returns the value's height.
  std::size_t check_nesting(const PickleValue& value, std::size_t depth) {
    if (value.kind != Kind::kList && value.kind != Kind::kTuple && value.kind != Kind::kDict) return 0;
    auto [it, fresh] = heights_.try_emplace(&value, kOnPath);
    if (!fresh) {
      if (it->second == kOnPath) throw Error(ErrorCode::kDecode, "pickle container holds itself (a reference cycle)");
      check_depth(depth + it->second);
      return it->second;
    }
    check_depth(depth + 1);
    std::size_t below = 0;
    for (const Ref& item : value.items) below = std::max(below, check_nesting(*item, depth + 1));
    for (const auto& [key, item] : value.entries) {
      below = std::max({below, check_nesting(*key, depth + 1), check_nesting(*item, depth + 1)});
    }
    heights_[&value] = below + 1;
    return below + 1;
  }
  static bool is_container(const PickleValue& value) {
    return value.kind == Kind::kList || value.kind == Kind::kTuple || value.kind == Kind::kDict;
  }
  void check_tree_depth(const PickleValue& value, std::size_t depth) const {
    if (!is_container(value)) return;
    check_depth(depth + 1);
    for (const Ref& item : value.items) check_tree_depth(*item, depth + 1);
    for (const auto& [key, item] : value.entries) {
      check_tree_depth(*key, depth + 1);
      check_tree_depth(*item, depth + 1);
    }
  }
  void check_depth(std::size_t levels) const {
    if (levels > limits_.depth_max) {
      throw Error(ErrorCode::kLimit, "pickle nests containers deeper than " + std::to_string(limits_.depth_max));
    }
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw Error(ErrorCode::kDecode, "pickle offset " + std::to_string(op_offset_) + ": " + why);
  }

  std::span<const std::uint8_t> take(std::size_t n) {
    if (n > data_.size() - pos_) fail("truncated: needs " + std::to_string(n) + " more bytes");
    const auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint8_t byte() { return take(1)[0]; }
  std::uint64_t little(std::size_t n) {
    const auto bytes = take(n);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < n; ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
    return value;
  }

  Ref make(Kind kind) {
    if (++values_ > limits_.values_max) {
      throw Error(ErrorCode::kLimit, "pickle makes more than " + std::to_string(limits_.values_max) + " values");
    }
    auto value = std::make_shared<PickleValue>();
    value->kind = kind;
    if (kind == Kind::kList || kind == Kind::kTuple || kind == Kind::kDict) containers_.push_back(value);
    return value;
  }
  void push(Ref value) { stack_.push_back(std::move(value)); }
  Ref pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    Ref value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  Ref& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  // The values pushed since the last MARK, which is removed.
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                           std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }

  std::string_view string_bytes(std::uint64_t n) {
    if (n > limits_.string_bytes_max) {
      throw Error(ErrorCode::kLimit, "pickle string of " + std::to_string(n) + " bytes exceeds " +
                                         std::to_string(limits_.string_bytes_max));
    }
    const auto bytes = take(static_cast<std::size_t>(n));
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
  void push_string(Kind kind, std::uint64_t n) {
    Ref value = make(kind);
    value->text = string_bytes(n);
    push(std::move(value));
  }
  void push_int(std::int64_t n) {
    Ref value = make(Kind::kInt);
    value->integer = n;
    push(std::move(value));
  }
  // LONG1/LONG4: little-endian two's complement of n bytes; more than 8
  // bytes cannot be an int64 (dump fields are counts, ids and times).
  void push_long(std::uint64_t n) {
    if (n > 8) throw Error(ErrorCode::kLimit, "pickle integer of " + std::to_string(n) + " bytes exceeds int64");
    const auto bytes = take(static_cast<std::size_t>(n));
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < n; ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
    if (n > 0 && n < 8 && (bytes[n - 1] & 0x80) != 0) value |= ~std::uint64_t{0} << (8 * n);  // sign-extend
    push_int(static_cast<std::int64_t>(value));
  }

  void append(PickleValue& list, Ref item) {
    if (list.kind != Kind::kList) fail("APPEND to a " + std::string(pickle_kind_name(list.kind)));
    list.items.push_back(std::move(item));
  }
  static bool same_key(const PickleValue& a, const PickleValue& b) {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
      case Kind::kNone: return true;
      case Kind::kBool: return a.boolean == b.boolean;
      case Kind::kInt: return a.integer == b.integer;
      case Kind::kFloat: return a.real == b.real;
      case Kind::kStr:
      case Kind::kBytes: return a.text == b.text;
      case Kind::kTuple:
        if (a.items.size() != b.items.size()) return false;
        for (std::size_t i = 0; i < a.items.size(); ++i) {
          if (!same_key(*a.items[i], *b.items[i])) return false;
        }
        return true;
      default: return false;
    }
  }
  void set_item(PickleValue& dict, Ref key, Ref value) {
    if (dict.kind != Kind::kDict) fail("SETITEM on a " + std::string(pickle_kind_name(dict.kind)));
    if (key->kind == Kind::kList || key->kind == Kind::kDict) {
      fail("unhashable dict key of type " + std::string(pickle_kind_name(key->kind)));
    }
    for (auto& [existing, slot] : dict.entries) {
      if (same_key(*existing, *key)) {
        slot = std::move(value);
        return;
      }
    }
    dict.entries.emplace_back(std::move(key), std::move(value));
  }
  void set_items(PickleValue& dict, std::vector<Ref> items) {
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    for (std::size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
  }
  Ref tuple_of(std::vector<Ref> items) {
    Ref tuple = make(Kind::kTuple);
    tuple->items = std::move(items);
    return tuple;
  }

  void put(std::uint64_t index) {
    if (index >= limits_.memo_max) {
      throw Error(ErrorCode::kLimit, "pickle memo index " + std::to_string(index) + " exceeds " +
                                         std::to_string(limits_.memo_max));
    }
    if (index >= memo_.size()) memo_.resize(static_cast<std::size_t>(index) + 1);
    Ref& slot = memo_[static_cast<std::size_t>(index)];
    if (slot == nullptr) ++memo_entries_;
    slot = top();
  }
  void get(std::uint64_t index) {
    if (index >= memo_.size() || memo_[static_cast<std::size_t>(index)] == nullptr) {
      fail("memo entry " + std::to_string(index) + " was never put");
    }
    const Ref& value = memo_[static_cast<std::size_t>(index)];
    shares_container_ = shares_container_ || is_container(*value);
    push(value);
  }

  void step(std::uint8_t op) {
    switch (op) {
      case kProto: {
        const std::uint8_t protocol = byte();
        if (protocol < 2 || protocol > 5) fail("protocol " + std::to_string(protocol) + " (read: 2 to 5)");
        return;
      }
      case kFrame: little(8); return;  // frames only group opcodes
      case kMark: marks_.push_back(stack_.size()); return;
      case kPop: pop(); return;
      case kPopMark: pop_mark(); return;
      case kDup:
        shares_container_ = shares_container_ || is_container(*top());
        push(top());
        return;
      case kNone: push(make(Kind::kNone)); return;
      case kNewTrue:
      case kNewFalse: {
        Ref value = make(Kind::kBool);
        value->boolean = op == kNewTrue;
        push(std::move(value));
        return;
      }
      case kBinInt: push_int(static_cast<std::int32_t>(little(4))); return;
      case kBinInt1: push_int(static_cast<std::int64_t>(little(1))); return;
      case kBinInt2: push_int(static_cast<std::int64_t>(little(2))); return;
      case kLong1: push_long(little(1)); return;
      case kLong4: push_long(little(4)); return;
      case kBinFloat: {
        const auto bytes = take(8);
        std::uint64_t bits = 0;
        for (std::size_t i = 0; i < 8; ++i) bits = (bits << 8) | bytes[i];  // big-endian
        Ref value = make(Kind::kFloat);
        value->real = std::bit_cast<double>(bits);
        push(std::move(value));
        return;
      }
      case kShortBinUnicode: push_string(Kind::kStr, little(1)); return;
      case kBinUnicode: push_string(Kind::kStr, little(4)); return;
      case kBinUnicode8: push_string(Kind::kStr, little(8)); return;
      case kShortBinString: push_string(Kind::kStr, little(1)); return;  // Python 2 str
      case kBinString: push_string(Kind::kStr, little(4)); return;
      case kShortBinBytes: push_string(Kind::kBytes, little(1)); return;
      case kBinBytes: push_string(Kind::kBytes, little(4)); return;
      case kBinBytes8: push_string(Kind::kBytes, little(8)); return;
      case kEmptyList: push(make(Kind::kList)); return;
      case kAppend: {
        Ref item = pop();
        append(*top(), std::move(item));
        return;
      }
      case kAppends: {
        std::vector<Ref> items = pop_mark();
        Ref& list = top();
        for (Ref& item : items) append(*list, std::move(item));
        return;
      }
      case kList: {
        Ref list = make(Kind::kList);
        list->items = pop_mark();
        push(std::move(list));
        return;
      }
      case kEmptyDict: push(make(Kind::kDict)); return;
      case kSetItem: {
        Ref value = pop();
        Ref key = pop();
        set_item(*top(), std::move(key), std::move(value));
        return;
      }
      case kSetItems: {
        std::vector<Ref> items = pop_mark();
        set_items(*top(), std::move(items));
        return;
      }
      case kDict: {
        Ref dict = make(Kind::kDict);
        set_items(*dict, pop_mark());
        push(std::move(dict));
        return;
      }
      case kEmptyTuple: push(make(Kind::kTuple)); return;
      case kTuple: push(tuple_of(pop_mark())); return;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        std::vector<Ref> items(op - kTuple1 + 1);
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push(tuple_of(std::move(items)));
        return;
      }
      case kBinPut: put(little(1)); return;
      case kLongBinPut: put(little(4)); return;
      case kMemoize: put(memo_entries_); return;  // Python: memo[len(memo)] = top
      case kBinGet: get(little(1)); return;
      case kLongBinGet: get(little(4)); return;
      default: break;
    }
    if (const auto name = refused_name(op)) {
      fail("opcode " + std::string(*name) + " refused: a flight-recorder dump holds plain values only "
           "(dict, list, tuple, str, bytes, int, float, bool, None)");
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op);
    fail(std::string("unknown opcode ") + hex);
  }

  std::span<const std::uint8_t> data_;
  const PickleLimits& limits_;
  std::size_t pos_ = 0;
  std::size_t op_offset_ = 0;
  std::size_t values_ = 0;
  std::uint64_t memo_entries_ = 0;
  std::vector<Ref> stack_;
  std::vector<std::size_t> marks_;
  std::vector<Ref> memo_;
  std::vector<Ref> containers_;  // every container made, to break cycles of a refused pickle
  bool accepted_ = false;
  bool shares_container_ = false;  // a container was pushed twice (memo GET or DUP)
  static constexpr std::size_t kOnPath = 0;  // a container being walked (finished ones have height >= 1)
  std::unordered_map<const PickleValue*, std::size_t> heights_;
};

}  // namespace

const PickleValue* PickleValue::get(std::string_view key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k->is_string() && k->text == key) return v.get();
  }
  return nullptr;
}

std::string_view pickle_kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
  }
  return "invalid";
}

PickleValue::Ref read_pickle(std::span<const std::uint8_t> data, const PickleLimits& limits) {
  return Machine(data, limits).run();
}

}  // namespace lockstep::doctor
