// The job token (SPEC §4C): every rank proves it belongs to the same job
// before it touches any job key, so a stale rank of an earlier job, or a rank
// started with another job's settings, is refused and cannot disturb the job.
//
// Generations: a job whose ranks are restarted runs under a new generation
// (LOCKSTEP_GENERATION; the launcher bumps it). The generation is part of the
// key-space prefix, of every ring name and so of every poison key: a
// straggler of an old generation reads and writes keys nobody of the new one
// ever looks at.
//
// Protocol: rank 0 publishes "<job_id>\n<digest as 16 hex digits>" under the
// key "job_token" (digest: XXH3-64 of job id and secret); every other rank
// waits for it and compares, so a wrong secret and a wrong job id are both
// refused. All other keys of the job live under the prefix
// "job-<16 hex digits>-g<generation>", the digits derived from id and secret
// with a different seed, so a process with the wrong token reads and writes a
// disjoint key space.
//
// Threat model: mistakes, not attackers. Anyone who can read the store can
// read the digest and the prefix; the secret itself never reaches the store.
// A wrong-token process that claims rank 0 *before* the real rank 0 publishes
// makes the real ranks fail with kJobToken (nothing is joined, nothing hangs);
// one that arrives after it is refused itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "lockstep/store.h"

namespace lockstep {

// Job ids are short printable names used in store keys.
inline constexpr std::size_t kJobIdBytesMax = 128;
// A secret shorter than this is refused: it would not tell jobs apart.
inline constexpr std::size_t kJobTokenBytesMin = 8;
inline constexpr std::size_t kJobTokenBytesMax = 1024;
// Restarts of one job are bounded far below this.
inline constexpr std::uint32_t kJobGenerationMax = 1'000'000;

struct JobCredentials {
  std::string job_id;  // 1..kJobIdBytesMax bytes of [A-Za-z0-9._-]
  std::string token;   // kJobTokenBytesMin..kJobTokenBytesMax bytes, any value
  std::uint32_t generation = 0;  // 0..kJobGenerationMax; not part of the proof
};

// XXH3-64 digest of (job_id, token). Pure; thread-safe. Throws
// Error{kInvalidArgument} naming the field for an id or token out of bounds.
std::uint64_t job_token_digest(const JobCredentials& credentials);

// Proves `credentials` at rendezvous and returns the job's key space (a prefix
// store over `base`). Blocking: a rank other than 0 waits at most `timeout`
// for rank 0's digest. Call once per process, from any one thread.
// Throws:
//  - Error{kJobToken} "job token mismatch: ..." naming the job id, this rank
//    and both digests when the published digest differs (or, on rank 0, when
//    a different digest is already published);
//  - Error{kTimeout} naming the job id and key when rank 0 never publishes;
//  - Error{kInvalidArgument} for bad credentials or rank < 0;
//  - Error{kStore} from the base store.
std::unique_ptr<Store> join_job(std::shared_ptr<Store> base, const JobCredentials& credentials,
                                int rank, std::chrono::milliseconds timeout);

// The key space of credentials.generation ("job-<hex>-g<generation>", what
// join_job returns) and the job-level one shared by every generation
// ("job-<hex>": recovery.h's current generation and stream position),
// without the rendezvous proof: for the launcher, which made the
// credentials, and for a rank that already joined. Throws as join_job for
// bad credentials.
std::unique_ptr<Store> generation_store(std::shared_ptr<Store> base, const JobCredentials& credentials);
std::unique_ptr<Store> job_level_store(std::shared_ptr<Store> base, const JobCredentials& credentials);

}  // namespace lockstep
