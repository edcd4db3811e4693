// The multi-process test support itself: exit statuses, the rank
// environment, error-to-exit-code mapping, and the hang bound.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "lockstep/error.h"
#include "support/multiprocess.h"

namespace lockstep::test {
namespace {

std::string env_or_empty(const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? value : "";
}

TEST(Multiprocess, EachRankGetsItsEnvironmentAndExitStatus) {
  RanksOptions options;
  options.world_size = 4;
  options.env = {{"EXTRA_VARIABLE", "x"}};
  const RanksResult result = run_ranks(options, [&](int rank) {
    const std::string dir = env_or_empty("LOCKSTEP_JOB_DIR");
    const bool env_ok = env_or_empty("RANK") == std::to_string(rank) && env_or_empty("WORLD_SIZE") == "4" &&
                        env_or_empty("LOCAL_RANK") == std::to_string(rank) &&
                        env_or_empty("LOCAL_WORLD_SIZE") == "4" && !dir.empty() &&
                        env_or_empty("LOCKSTEP_STORE") == "file:" + dir + "/store" &&
                        env_or_empty("LOCKSTEP_JOB_ID") == options.job_id &&
                        env_or_empty("LOCKSTEP_JOB_TOKEN") == options.job_token &&
                        env_or_empty("EXTRA_VARIABLE") == "x";
    if (!env_ok) return 99;
    if (rank == 1) return 7;
    if (rank == 2) throw Error(ErrorCode::kJobToken, "refused");
    if (rank == 3) raise(SIGKILL);
    return 0;
  });
  ASSERT_FALSE(result.hung) << result.describe();
  ASSERT_EQ(result.ranks.size(), 4u);
  EXPECT_TRUE(result.ranks[0].ok()) << result.describe();
  EXPECT_EQ(result.ranks[1].code, 7);
  EXPECT_EQ(result.ranks[2].code, exit_code_for(ErrorCode::kJobToken));
  EXPECT_TRUE(result.ranks[3].signaled);
  EXPECT_EQ(result.ranks[3].code, SIGKILL);
  EXPECT_FALSE(result.all_ok());
  EXPECT_EQ(access(result.job_dir.c_str(), W_OK), 0) << "a fresh job directory";
}

TEST(Multiprocess, AHangIsKilledAtTheWallBoundAndReported) {
  RanksOptions options;
  options.world_size = 2;
  options.wall_timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  const RanksResult result = run_ranks(options, [](int rank) {
    if (rank == 0) return 0;
    for (;;) pause();
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(result.hung);
  EXPECT_FALSE(result.all_ok());
  EXPECT_TRUE(result.ranks[0].ok()) << result.describe();
  EXPECT_TRUE(result.ranks[1].signaled && result.ranks[1].code == SIGKILL) << result.describe();
  EXPECT_LT(elapsed, std::chrono::milliseconds(300 + 2000));
  EXPECT_NE(result.describe().find("HUNG"), std::string::npos);
}

TEST(Multiprocess, FreePortCanBeBound) {
  const int port = pick_free_tcp_port();
  ASSERT_GT(port, 0);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  close(fd);
}

}  // namespace
}  // namespace lockstep::test
