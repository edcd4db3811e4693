// The generic JSON input path for meta (CLI, tests, configs). JSON can express
// objects and nested arrays; meta cannot, and this is where that is enforced
// with an error naming the key (A3).
#include <nlohmann/json.hpp>

#include <limits>
#include <string>

#include "lockstep/error.h"
#include "lockstep/meta.h"

namespace lockstep {

namespace {

using Json = nlohmann::json;

[[noreturn]] void tensor_shaped(const std::string& key, std::string_view what) {
  throw Error(ErrorCode::kSchema, "meta '" + key + "' is " + std::string(what) +
                                      "; meta holds only scalars and flat lists (tensors and nested data go in the "
                                      "tensor manifest)");
}

std::int64_t json_int(const Json& value, const std::string& key) {
  if (value.is_number_unsigned() &&
      value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    throw Error(ErrorCode::kEncode, "meta '" + key + "' integer " + value.dump() + " does not fit int64");
  }
  return value.get<std::int64_t>();
}

// The scalar type of a JSON value, as a meta type; objects, arrays and null
// have none.
MetaType scalar_type(const Json& value, const std::string& key) {
  if (value.is_object()) tensor_shaped(key, "a nested object");
  if (value.is_array()) tensor_shaped(key, "a nested array");
  if (value.is_boolean()) return MetaType::kBool;
  if (value.is_number_integer()) return MetaType::kInt64;
  if (value.is_number_float()) return MetaType::kFloat64;
  if (value.is_string()) return MetaType::kString;
  throw Error(ErrorCode::kEncode, "meta '" + key + "' is " + std::string(value.type_name()) + ", which has no meta type");
}

MetaValue scalar_value(const Json& value, MetaType type, const std::string& key) {
  switch (type) {
    case MetaType::kBool: return value.get<bool>();
    case MetaType::kInt64: return json_int(value, key);
    case MetaType::kFloat64: return value.get<double>();
    default: return value.get<std::string>();
  }
}

template <typename Item>
std::vector<Item> list_of(const Json& array, MetaType type, const std::string& key) {
  std::vector<Item> items;
  items.reserve(array.size());
  for (const Json& item : array) items.push_back(std::get<Item>(scalar_value(item, type, key)));
  return items;
}

MetaValue list_value(const Json& array, const std::string& key) {
  if (array.empty()) throw Error(ErrorCode::kEncode, "meta '" + key + "' is an empty list, whose item type is unknown");
  const MetaType type = scalar_type(array.front(), key);
  for (const Json& item : array) {
    if (scalar_type(item, key) != type) {
      throw Error(ErrorCode::kEncode, "meta '" + key + "' mixes item types (" + std::string(meta_type_name(type)) +
                                          " and " + std::string(item.type_name()) + ")");
    }
  }
  switch (type) {
    case MetaType::kBool: return list_of<bool>(array, type, key);
    case MetaType::kInt64: return list_of<std::int64_t>(array, type, key);
    case MetaType::kFloat64: return list_of<double>(array, type, key);
    default: return list_of<std::string>(array, type, key);
  }
}

}  // namespace

Meta meta_from_json(std::string_view json_text) {
  const Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) throw Error(ErrorCode::kDecode, "meta JSON does not parse");
  if (!root.is_object()) {
    throw Error(ErrorCode::kDecode, "meta JSON must be an object, got " + std::string(root.type_name()));
  }
  Meta meta;
  meta.reserve(root.size());
  for (const auto& [key, value] : root.items()) {
    if (value.is_array()) {
      meta.set(key, list_value(value, key));
    } else {
      meta.set(key, scalar_value(value, scalar_type(value, key), key));
    }
  }
  return meta;
}

}  // namespace lockstep
