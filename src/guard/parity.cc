#include "lockstep/parity.h"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "lockstep/digest.h"
#include "lockstep/error.h"

namespace lockstep {

std::string parity_key(int rank) { return "parity/" + std::to_string(rank); }

namespace {

using Json = nlohmann::json;  // std::map objects: keys come out sorted


void put_field(ParityRecord& record, std::string key, std::string value) {
  if (key.size() > kParityKeyBytesMax || value.size() > kParityValueBytesMax) {
    throw Error(ErrorCode::kLimit, "parity field '" + key.substr(0, kParityKeyBytesMax) +
                                       "' exceeds the key/value byte limits (" +
                                       std::to_string(kParityKeyBytesMax) + "/" +
                                       std::to_string(kParityValueBytesMax) + ")");
  }
  if (record.fields.size() == kParityFieldsMax) {
    throw Error(ErrorCode::kLimit, "parity record exceeds " + std::to_string(kParityFieldsMax) +
                                       " fields at '" + key + "'");
  }
  record.fields[std::move(key)] = std::move(value);
}

std::string cell(const std::string& value) {
  if (value.size() <= kParityCellBytesMax) return value;
  return value.substr(0, kParityCellBytesMax - 3) + "...";
}

// Rows of cells, each column padded to its widest cell.
std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

std::vector<std::string> rank_header(std::string first, std::size_t ranks) {
  std::vector<std::string> header{std::move(first)};
  for (std::size_t r = 0; r < ranks; ++r) header.push_back("rank " + std::to_string(r));
  return header;
}

}  // namespace

ParityRecord make_parity_record(int rank, const ParityInputs& in) {
  ParityRecord record;
  record.rank = rank;
  record.protocol = in.protocol;
  put_field(record, "topology", in.topology);
  put_field(record, "world_size", std::to_string(in.world_size));
  put_field(record, "plan_id", in.plan_id);
  put_field(record, "group_table_digest", digest_hex(in.group_table_digest));
  put_field(record, "model_config_digest", digest_hex(in.model_config_digest));
  put_field(record, "dtype", in.dtype);
  put_field(record, "graph_capture", in.graph_capture ? "true" : "false");
  put_field(record, "compiled_mode", in.compiled_mode ? "true" : "false");
  for (const auto& [key, value] : in.resolved) put_field(record, "resolved." + key, value);
  for (const auto& [key, value] : in.gating_flags) put_field(record, "flag." + key, value);
  for (const std::string& name : in.parity_env) {
    const char* value = std::getenv(name.c_str());
    put_field(record, "env." + name, value != nullptr ? std::string(value) : std::string(kParityEnvUnset));
  }
  return record;
}

Bytes encode_parity_record(const ParityRecord& record) {
  const Json json = {{"rank", record.rank},
                     {"protocol", {record.protocol.min, record.protocol.max}},
                     {"fields", record.fields}};
  const std::string text = json.dump();
  return Bytes(text.begin(), text.end());
}

ParityRecord decode_parity_record(const Bytes& bytes, int rank) {
  const Json json = Json::parse(bytes.begin(), bytes.end(), nullptr, false);
  const auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kDecode, "parity record of rank " + std::to_string(rank) + ": " + why);
  };
  if (!json.is_object() || !json.contains("rank") || !json["rank"].is_number_integer() ||
      !json.contains("protocol") || !json["protocol"].is_array() || json["protocol"].size() != 2 ||
      !json["protocol"][0].is_number_unsigned() || !json["protocol"][1].is_number_unsigned() ||
      !json.contains("fields") || !json["fields"].is_object()) {
    throw bad("not a parity record");
  }
  if (json["rank"].get<int>() != rank) {
    throw bad("holds rank " + std::to_string(json["rank"].get<int>()));
  }
  ParityRecord record;
  record.rank = rank;
  record.protocol.min = json["protocol"][0].get<ProtocolVersion>();
  record.protocol.max = json["protocol"][1].get<ProtocolVersion>();
  for (const auto& [key, value] : json["fields"].items()) {
    if (!value.is_string()) throw bad("field '" + key + "' is not a string");
    record.fields[key] = value.get<std::string>();
  }
  return record;
}

std::string parity_diff_table(const std::vector<ParityRecord>& records) {
  std::set<std::string> keys;
  for (const ParityRecord& r : records) {
    for (const auto& [key, value] : r.fields) keys.insert(key);
  }
  std::vector<std::vector<std::string>> rows{rank_header("key", records.size())};
  for (const std::string& key : keys) {
    std::vector<std::string> row{key};
    for (const ParityRecord& r : records) {
      const auto it = r.fields.find(key);
      row.push_back(it == r.fields.end() ? "<missing>" : cell(it->second));
    }
    bool differs = false;
    for (std::size_t c = 2; c < row.size(); ++c) differs = differs || row[c] != row[1];
    if (differs) rows.push_back(std::move(row));
  }
  return rows.size() == 1 ? std::string() : format_table(rows);
}

ProtocolVersion check_parity(const std::vector<ParityRecord>& records) {
  std::vector<VersionRange> ranges;
  for (const ParityRecord& r : records) ranges.push_back(r.protocol);
  const ProtocolVersion version = negotiate_protocol_version(ranges);
  const std::string table = parity_diff_table(records);
  if (!table.empty()) {
    throw Error(ErrorCode::kParity,
                "start-up parity records differ across " + std::to_string(records.size()) +
                    " ranks; the job stops before inference:\n" + table);
  }
  return version;
}

ParityOutcome exchange_parity(Store& store, const ParityRecord& mine, int world_size,
                              std::chrono::milliseconds timeout) {
  if (world_size < 1 || mine.rank < 0 || mine.rank >= world_size) {
    throw Error(ErrorCode::kInvalidArgument, "parity exchange: rank " + std::to_string(mine.rank) +
                                                 " outside world_size " + std::to_string(world_size));
  }
  store.set(parity_key(mine.rank), encode_parity_record(mine));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ParityOutcome outcome;
  std::vector<int> missing;
  for (int rank = 0; rank < world_size; ++rank) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    try {
      const Bytes bytes = store.get(parity_key(rank), std::max(left, std::chrono::milliseconds(1)));
      outcome.records.push_back(decode_parity_record(bytes, rank));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kTimeout) throw;
      missing.push_back(rank);
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const int r : missing) list += (list.empty() ? "" : ", ") + std::to_string(r);
    throw Error(ErrorCode::kTimeout, "parity handshake: ranks [" + list +
                                         "] never published a record within " +
                                         std::to_string(timeout.count()) + " ms");
  }
  outcome.protocol_version = check_parity(outcome.records);
  return outcome;
}

}  // namespace lockstep
