#include "lockstep/job_token.h"

#include <xxhash.h>

#include <cstdio>

#include "lockstep/digest.h"
#include "lockstep/error.h"

namespace lockstep {

static_assert(kJobGenerationMax <= kFrameGenerationMask, "a generation must fit the frame header's token field");
namespace {

// Distinct seeds keep the published proof and the key-space prefix
// unrelated: knowing one does not give the other by recomputation.
constexpr XXH64_hash_t kProofSeed = 0x6c6f636b73746570ULL;   // "lockstep"
constexpr XXH64_hash_t kPrefixSeed = 0x6a6f622d73706163ULL;  // "job-spac"
constexpr const char* kTokenKey = "job_token";
// The published value: "<job_id>\n<16 hex digits>".
constexpr char kValueSeparator = '\n';

bool id_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

void check_credentials(const JobCredentials& credentials) {
  const std::string& id = credentials.job_id;
  if (id.empty() || id.size() > kJobIdBytesMax) {
    throw Error(ErrorCode::kInvalidArgument, "job id must have 1.." + std::to_string(kJobIdBytesMax) +
                                                 " bytes, got " + std::to_string(id.size()));
  }
  for (const char c : id) {
    if (!id_byte(c)) {
      throw Error(ErrorCode::kInvalidArgument, "job id '" + id + "' may hold only [A-Za-z0-9._-]");
    }
  }
  const std::size_t token_bytes = credentials.token.size();
  if (token_bytes < kJobTokenBytesMin || token_bytes > kJobTokenBytesMax) {
    throw Error(ErrorCode::kInvalidArgument,
                "job token must have " + std::to_string(kJobTokenBytesMin) + ".." +
                    std::to_string(kJobTokenBytesMax) + " bytes, got " + std::to_string(token_bytes));
  }
}

std::uint64_t seeded_digest(const JobCredentials& credentials, XXH64_hash_t seed) {
  check_credentials(credentials);
  // The id is length-delimited by its separator, which an id cannot contain.
  std::string material = credentials.job_id;
  material += '\0';
  material += credentials.token;
  return XXH3_64bits_withSeed(material.data(), material.size(), seed);
}

std::string hex16(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

Bytes to_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

void check_generation(const JobCredentials& credentials) {
  if (credentials.generation > kJobGenerationMax) {
    throw Error(ErrorCode::kInvalidArgument, "generation " + std::to_string(credentials.generation) +
                                                 " > kJobGenerationMax " + std::to_string(kJobGenerationMax));
  }
}

// The key space every generation of the job shares ("job-<16 hex digits>").
std::string job_prefix(const JobCredentials& credentials) {
  return "job-" + hex16(seeded_digest(credentials, kPrefixSeed));
}

std::string describe_claim(const Bytes& value) {
  const std::string text(value.begin(), value.end());
  const std::size_t separator = text.find(kValueSeparator);
  if (separator == std::string::npos) return "an unreadable claim '" + text + "'";
  return "job '" + text.substr(0, separator) + "' with token digest " + text.substr(separator + 1);
}

[[noreturn]] void throw_mismatch(const JobCredentials& credentials, int rank,
                                 const std::string& mine, const Bytes& published,
                                 const Store& base) {
  throw Error(ErrorCode::kJobToken,
              "job token mismatch: rank " + std::to_string(rank) + " presents job '" +
                  credentials.job_id + "' with token digest " +
                  mine.substr(mine.find(kValueSeparator) + 1) + ", but store " + base.describe() +
                  " belongs to " + describe_claim(published) +
                  "; check LOCKSTEP_JOB_ID / LOCKSTEP_JOB_TOKEN and LOCKSTEP_STORE");
}

}  // namespace

std::uint64_t job_token_digest(const JobCredentials& credentials) {
  return seeded_digest(credentials, kProofSeed);
}

std::unique_ptr<Store> join_job(std::shared_ptr<Store> base, const JobCredentials& credentials,
                                int rank, std::chrono::milliseconds timeout) {
  if (base == nullptr) throw Error(ErrorCode::kInvalidArgument, "join_job: base store is null");
  if (rank < 0) throw Error(ErrorCode::kInvalidArgument, "join_job: rank " + std::to_string(rank) + " < 0");
  check_generation(credentials);  // before anything is published
  const std::string mine = credentials.job_id + kValueSeparator + hex16(job_token_digest(credentials));
  if (rank == 0) {
    // Refuse to overwrite another job's claim: a late wrong-token rank 0
    // must not break the job that is already running.
    if (base->check({kTokenKey})) {
      const Bytes published = base->get(kTokenKey, timeout);
      if (published != to_bytes(mine)) throw_mismatch(credentials, rank, mine, published, *base);
    } else {
      base->set(kTokenKey, to_bytes(mine));
    }
  } else {
    Bytes published;
    try {
      published = base->get(kTokenKey, timeout);
    } catch (const Error& error) {
      if (error.code() != ErrorCode::kTimeout) throw;
      throw Error(ErrorCode::kTimeout, "job '" + credentials.job_id + "': rank 0 did not publish the job token in " +
                                           base->describe() + " within " +
                                           std::to_string(timeout.count()) + " ms");
    }
    if (published != to_bytes(mine)) throw_mismatch(credentials, rank, mine, published, *base);
  }
  return generation_store(std::move(base), credentials);
}

std::unique_ptr<Store> job_level_store(std::shared_ptr<Store> base, const JobCredentials& credentials) {
  return make_prefix_store(std::move(base), job_prefix(credentials));
}

std::unique_ptr<Store> generation_store(std::shared_ptr<Store> base, const JobCredentials& credentials) {
  check_generation(credentials);
  return make_prefix_store(std::move(base), job_prefix(credentials) + "-g" + std::to_string(credentials.generation));
}

}  // namespace lockstep
