#include "doctor/pickle_writer.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>

#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

// Opcodes used (protocol 2; pickletools' names).
constexpr char kProto = '\x80', kStop = '.', kNone = 'N', kNewTrue = '\x88', kNewFalse = '\x89';
constexpr char kBinInt = 'J', kLong1 = '\x8a', kBinFloat = 'G', kBinUnicode = 'X';
constexpr char kLongBinPut = 'r', kLongBinGet = 'j', kMark = '(';
constexpr char kEmptyList = ']', kAppends = 'e', kEmptyDict = '}', kSetItems = 'u';

class Writer {
 public:
  std::string run(const nlohmann::json& value) {
    out_ += kProto;
    out_ += '\x02';
    put(value);
    out_ += kStop;
    return std::move(out_);
  }

 private:
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void integer(std::int64_t v) {
    if (v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max()) {
      out_ += kBinInt;
      u32(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
      return;
    }
    out_ += kLong1;  // 8 bytes, little-endian two's complement
    out_ += '\x08';
    for (int i = 0; i < 8; ++i) out_ += static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
  }
  void real(double v) {
    out_ += kBinFloat;  // 8 bytes, big-endian
    const auto bits = std::bit_cast<std::uint64_t>(v);
    for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  void text(std::string_view s) {
    if (const auto it = memo_.find(std::string(s)); it != memo_.end()) {
      out_ += kLongBinGet;
      u32(it->second);
      return;
    }
    const auto index = static_cast<std::uint32_t>(memo_.size());
    memo_.emplace(std::string(s), index);
    out_ += kBinUnicode;
    u32(static_cast<std::uint32_t>(s.size()));
    out_ += s;
    out_ += kLongBinPut;
    u32(index);
  }
  void put(const nlohmann::json& v) {
    switch (v.type()) {
      case nlohmann::json::value_t::null: out_ += kNone; return;
      case nlohmann::json::value_t::boolean: out_ += v.get<bool>() ? kNewTrue : kNewFalse; return;
      case nlohmann::json::value_t::number_integer: integer(v.get<std::int64_t>()); return;
      case nlohmann::json::value_t::number_unsigned: {
        const auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          throw Error(ErrorCode::kInvalidArgument, "pickle writer: integer " + std::to_string(u) + " beyond int64");
        }
        integer(static_cast<std::int64_t>(u));
        return;
      }
      case nlohmann::json::value_t::number_float: real(v.get<double>()); return;
      case nlohmann::json::value_t::string: text(v.get_ref<const std::string&>()); return;
      case nlohmann::json::value_t::array:
        out_ += kEmptyList;
        if (v.empty()) return;
        out_ += kMark;
        for (const auto& item : v) put(item);
        out_ += kAppends;
        return;
      case nlohmann::json::value_t::object:
        out_ += kEmptyDict;
        if (v.empty()) return;
        out_ += kMark;
        for (const auto& [key, item] : v.items()) {
          text(key);
          put(item);
        }
        out_ += kSetItems;
        return;
      case nlohmann::json::value_t::binary:
      case nlohmann::json::value_t::discarded:
        break;
    }
    throw Error(ErrorCode::kInvalidArgument, "pickle writer: a binary or discarded JSON value has no pickle form");
  }

  std::string out_;
  std::unordered_map<std::string, std::uint32_t> memo_;
};

}  // namespace

std::string write_pickle(const nlohmann::json& value) { return Writer().run(value); }

}  // namespace lockstep::doctor
