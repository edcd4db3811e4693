// FileStore across real processes: concurrent writers replacing one key never
// let a reader see a torn value (write-aside + rename), and a key published by
// one process is seen by a waiting other.
#include <gtest/gtest.h>

#include <algorithm>

#include "lockstep/file_store.h"
#include "lockstep/rank_env.h"
#include "support/multiprocess.h"

namespace lockstep::test {
namespace {

constexpr int kWriters = 4;
constexpr int kRounds = 100;
constexpr std::size_t kValueBytes = 64 * 1024;  // many write() calls per value
constexpr std::chrono::milliseconds kWait{20000};

int write_and_read(int rank) {
  const RankEnv env = read_rank_env();
  FileStore store(env.job_dir + "/store");
  const Bytes mine(kValueBytes, static_cast<std::uint8_t>(rank + 1));
  for (int round = 0; round < kRounds; ++round) {
    store.set("shared", mine);
    const Bytes seen = store.get("shared", kWait);
    const bool whole = seen.size() == kValueBytes &&
                       std::all_of(seen.begin(), seen.end(), [&](std::uint8_t b) { return b == seen.front(); });
    if (!whole || seen.front() < 1 || seen.front() > kWriters) return 3;  // torn or foreign value
  }
  store.set("done/" + std::to_string(rank), Bytes{1});
  for (int peer = 0; peer < kWriters; ++peer) store.get("done/" + std::to_string(peer), kWait);
  return 0;
}

TEST(FileStoreMultiproc, ConcurrentReplacementsAreNeverTorn) {
  RanksOptions options;
  options.world_size = kWriters;
  options.wall_timeout = std::chrono::milliseconds(60000);
  const RanksResult result = run_ranks(options, write_and_read);
  EXPECT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

}  // namespace
}  // namespace lockstep::test
