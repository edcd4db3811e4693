// The start-up parity handshake (SPEC §4B, §4G): before any inference, and
// without any backend collective, every rank publishes a canonical record of
// everything that can change the sequence of collectives or the numerics, and
// reads every other rank's. Any difference stops every rank the same way:
// Error{kParity} with a table naming each differing key and its value on each
// rank. Protocol versions are negotiated (highest common), not compared.
//
// Store keys: parity/<rank>, value = the record's canonical JSON (sorted
// keys, no whitespace), so equal records are equal bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/protocol_version.h"
#include "lockstep/store.h"

namespace lockstep {

inline constexpr std::size_t kParityFieldsMax = 512;
inline constexpr std::size_t kParityKeyBytesMax = 128;
inline constexpr std::size_t kParityValueBytesMax = 1024;
// Table cells longer than this are cut with "..." (the record keeps it all).
inline constexpr std::size_t kParityCellBytesMax = 40;
inline constexpr std::chrono::milliseconds kParityTimeoutDefault{30'000};
// The value recorded for a declared environment variable that is not set.
inline constexpr std::string_view kParityEnvUnset = "<unset>";

// What a rank declares; make_parity_record() flattens it into keys.
struct ParityInputs {
  VersionRange protocol = supported_protocol_versions();
  std::string topology;                  // "tp" | "pp0" | "pp1"
  int world_size = 0;
  std::string plan_id;
  std::uint64_t group_table_digest = 0;  // GroupTable::digest()
  std::uint64_t model_config_digest = 0;
  std::string dtype;
  bool graph_capture = false;
  bool compiled_mode = false;
  // Backend/kernel choices as actually resolved at run time, e.g.
  // {"backend.mesh": "gloo", "kernel.attention": "blocked"} (key "resolved.<k>").
  std::map<std::string, std::string> resolved;
  // Every flag that can add or remove a collective (key "flag.<k>").
  std::map<std::string, std::string> gating_flags;
  // Environment variables declared parity-relevant: their values (or
  // kParityEnvUnset) are read from the process environment (key "env.<NAME>").
  std::vector<std::string> parity_env;
};

struct ParityRecord {
  int rank = -1;
  VersionRange protocol;
  std::map<std::string, std::string> fields;  // sorted: the canonical order
  bool operator==(const ParityRecord&) const = default;
};

// The store key of `rank`'s record: once every rank's is there, the
// generation has rendezvoused (the launcher's view of a recovery).
std::string parity_key(int rank);

// Flattens `inputs` (reads getenv for parity_env). Throws Error{kLimit} past
// kParityFieldsMax fields or a key/value past its byte limit, naming the key.
ParityRecord make_parity_record(int rank, const ParityInputs& inputs);

// Canonical encoding and its inverse. Pure. decode throws Error{kDecode}
// naming `rank` when the bytes are not a record, or hold another rank.
Bytes encode_parity_record(const ParityRecord& record);
ParityRecord decode_parity_record(const Bytes& bytes, int rank);

// The differing keys as a table (header line, then one row per key, one
// column per rank); empty when every record agrees. Pure. REQUIRES records
// indexed by rank.
std::string parity_diff_table(const std::vector<ParityRecord>& records);

// Compares records indexed by rank: negotiates the protocol version (Error
// {kVersion}, per-rank range table, when there is no common version), then
// every field (Error{kParity} with parity_diff_table). Returns the version.
ProtocolVersion check_parity(const std::vector<ParityRecord>& records);

struct ParityOutcome {
  ProtocolVersion protocol_version = 0;
  std::vector<ParityRecord> records;  // indexed by rank
};

// Publishes `mine` under parity/<mine.rank>, reads every rank's record, then
// check_parity(). Blocking: at most `timeout` in total (Error{kTimeout} naming
// the ranks that never published). Any thread; call once per job attempt,
// before the first collective. Throws the errors of check_parity, Error
// {kDecode}, and what the store throws.
ParityOutcome exchange_parity(Store& store, const ParityRecord& mine, int world_size,
                              std::chrono::milliseconds timeout = kParityTimeoutDefault);

}  // namespace lockstep
