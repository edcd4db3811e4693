#include "lockstep/recovery.h"

#include <charconv>
#include <string>
#include <string_view>

#include "lockstep/digest.h"
#include "lockstep/fatal.h"
#include "lockstep/job_token.h"

namespace lockstep {

std::string_view on_fault_name(OnFault policy) {
  switch (policy) {
    case OnFault::kExit: return "exit";
    case OnFault::kRestart: return "restart";
  }
  return "unknown";
}

OnFault on_fault_from_name(std::string_view name) {
  for (const OnFault policy : {OnFault::kExit, OnFault::kRestart}) {
    if (on_fault_name(policy) == name) return policy;
  }
  throw Error(ErrorCode::kInvalidArgument, "--on-fault '" + std::string(name) + "' (known: exit, restart)");
}

bool restart_can_cure(ErrorCode code) {
  switch (code) {
    case ErrorCode::kTimeout:
    case ErrorCode::kPeerFailure:
    case ErrorCode::kAborted:
    case ErrorCode::kBackend:
    case ErrorCode::kStore: return true;
    default: return false;
  }
}

bool restart_can_cure_exit(int exit_code, int signal) {
  if (signal > 0) return true;
  if (exit_code == kExitHardDeadline || exit_code == kExitTerminated) return true;
  for (const ErrorCode code : {ErrorCode::kTimeout, ErrorCode::kPeerFailure, ErrorCode::kAborted, ErrorCode::kBackend,
                               ErrorCode::kStore}) {
    if (exit_code == exit_code_for(code)) return true;
  }
  return false;
}

RestartBudget::RestartBudget(int restarts_max, std::int64_t window_ns)
    : restarts_max_(restarts_max), window_ns_(window_ns) {
  if (restarts_max < 0 || restarts_max > kRestartsPerWindowMax || window_ns <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "restart budget: " + std::to_string(restarts_max) + " restarts per " +
                                                 std::to_string(window_ns) + " ns (restarts in [0, " +
                                                 std::to_string(kRestartsPerWindowMax) + "], window > 0)");
  }
}

bool RestartBudget::admit(std::int64_t now_ns) {
  while (!admitted_ns_.empty() && now_ns - admitted_ns_.front() >= window_ns_) admitted_ns_.pop_front();
  if (static_cast<int>(admitted_ns_.size()) >= restarts_max_) return false;
  admitted_ns_.push_back(now_ns);
  return true;
}

namespace {

constexpr std::chrono::milliseconds kReadTimeout{1000};
constexpr std::string_view kCurrentGenerationKey = "current_generation";
constexpr std::string_view kStreamPositionKey = "stream_position";

std::uint64_t parse_decimal(std::string_view text, std::string_view key) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    throw Error(ErrorCode::kDecode, "job key '" + std::string(key) + "': '" + std::string(text) +
                                        "' is not a decimal number");
  }
  return value;
}

std::string read_text(Store& store, std::string_view key) {
  const Bytes value = store.get(std::string(key), kReadTimeout);
  return {value.begin(), value.end()};
}

void write_text(Store& store, std::string_view key, const std::string& text) {
  store.set(std::string(key), Bytes(text.begin(), text.end()));
}

std::string generation_started_key(std::uint32_t generation) { return "generation/" + std::to_string(generation); }

StreamPosition read_stream_position(Store& job_store) {
  if (!job_store.check({std::string(kStreamPositionKey)})) return {};
  const std::string text = read_text(job_store, kStreamPositionKey);
  const std::size_t space = text.find(' ');
  if (space == std::string::npos) {
    throw Error(ErrorCode::kDecode, "job key 'stream_position': '" + text + "' is not '<next_chunk> <epoch>'");
  }
  return {parse_decimal(std::string_view(text).substr(0, space), kStreamPositionKey),
          parse_decimal(std::string_view(text).substr(space + 1), kStreamPositionKey)};
}

}  // namespace

bool job_has_recovered(Store& job_store) { return job_store.check({std::string(kCurrentGenerationKey)}); }

std::uint32_t read_current_generation(Store& job_store) {
  if (!job_has_recovered(job_store)) return 0;
  const std::uint64_t value = parse_decimal(read_text(job_store, kCurrentGenerationKey), kCurrentGenerationKey);
  if (value > kJobGenerationMax) {
    throw Error(ErrorCode::kDecode, "job key 'current_generation': " + std::to_string(value) +
                                        " > kJobGenerationMax " + std::to_string(kJobGenerationMax));
  }
  return static_cast<std::uint32_t>(value);
}

void publish_stream_position(Store& job_store, const StreamPosition& position) {
  write_text(job_store, kStreamPositionKey, std::to_string(position.next_chunk) + " " + std::to_string(position.epoch));
}

void begin_generation(Store& job_store, std::uint32_t next) {
  write_text(job_store, kCurrentGenerationKey, std::to_string(next));
  write_text(job_store, generation_started_key(next), "begun");
}

StreamPosition generation_start(Store& job_store) {
  if (!job_has_recovered(job_store)) return {};
  StreamPosition start = read_stream_position(job_store);
  ++start.epoch;
  return start;
}

bool generation_is_current(Store& job_store, std::uint32_t generation) {
  return !job_has_recovered(job_store) || read_current_generation(job_store) == generation;
}

void advance_stream(Store& job_store, std::uint32_t generation, const StreamPosition& position) {
  if (!generation_is_current(job_store, generation)) {
    throw Error(ErrorCode::kPeerFailure, "Stage 0 of generation " + std::to_string(generation) +
                                             " is not the job's current generation (" +
                                             std::to_string(read_current_generation(job_store)) +
                                             "): nothing of it may be emitted");
  }
  publish_stream_position(job_store, position);
}

std::uint32_t await_generation_after(Store& job_store, std::uint32_t ended, std::chrono::milliseconds timeout) {
  try {
    job_store.get(generation_started_key(ended + 1), timeout);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kTimeout) throw;
    throw Error(ErrorCode::kTimeout, "generation " + std::to_string(ended) + " ended and no later one began within " +
                                         std::to_string(timeout.count()) +
                                         " ms (the launcher ended the job, or its restart budget is spent)");
  }
  return read_current_generation(job_store);
}

void check_kept_weights(Store& job_store, int rank, std::uint32_t generation, std::uint64_t fingerprint) {
  const std::string key = "weights/" + std::to_string(rank);
  if (!job_store.check({key})) {
    write_text(job_store, key, digest_hex(fingerprint) + " " + std::to_string(generation));
    return;
  }
  const std::string recorded = read_text(job_store, key);
  const std::size_t space = recorded.find(' ');
  const std::optional<std::uint64_t> first = digest_from_hex(std::string_view(recorded).substr(0, space));
  if (space == std::string::npos || !first) {
    throw Error(ErrorCode::kDecode, "job key '" + key + "': '" + recorded + "' is not '<fingerprint> <generation>'");
  }
  if (*first == fingerprint) return;
  throw Error(ErrorCode::kParity, "rank " + std::to_string(rank) + ": weight fingerprint " + digest_hex(fingerprint) +
                                      " in generation " + std::to_string(generation) + " differs from " +
                                      digest_hex(*first) + " recorded in generation " + recorded.substr(space + 1) +
                                      ": the weights this rank serves with are not the ones the job loaded");
}

std::filesystem::path generation_dir(const std::filesystem::path& job_dir, std::uint32_t generation) {
  if (generation == 0) return job_dir;
  return job_dir / "generations" / ("g" + std::to_string(generation));
}

}  // namespace lockstep
