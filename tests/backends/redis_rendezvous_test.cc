// Multi-"host" rendezvous through a real redis-server on 127.0.0.1: three
// rank processes join the job, connect Gloo through the Redis store and
// all-reduce. Fails (does not skip) when redis-server is missing: CI installs
// it.
#include <gtest/gtest.h>
#include <unistd.h>

#include "backends/rank_job.h"
#include "lockstep/redis_store.h"
#include "support/multiprocess.h"
#include "support/redis_server.h"


namespace lockstep::test {
namespace {

constexpr std::chrono::milliseconds kOpTimeout{15000};
constexpr int kRanks = 3;

TEST(RedisRendezvous, ThreeRanksJoinConnectAndAllReduce) {
  ASSERT_EQ(access(kRedisServer, X_OK), 0)
      << kRedisServer << " is not installed: apt-get install redis-server (CI installs it)";
  const int port = pick_free_tcp_port();
  RedisServer server(port);
  ASSERT_TRUE(server.started()) << "cannot spawn " << kRedisServer;
  ASSERT_TRUE(server.wait_ready()) << "redis-server on port " << port << " did not accept connections";

  RanksOptions options;
  options.world_size = kRanks;
  options.wall_timeout = std::chrono::milliseconds(60000);
  options.store_url = "redis:127.0.0.1:" + std::to_string(port);
  const RanksResult result = run_ranks(options, [](int rank) {
    RankJob job = join_world();
    require(job.store->describe().find("redis:127.0.0.1:") == 0, "the job runs on the Redis store");
    std::vector<float> data(100, static_cast<float>(rank + 1));
    job.world->all_reduce(data.data(), data.size(), DType::kF32, ReduceOp::kSum, kOpTimeout);
    for (const float value : data) require(value == kRanks * (kRanks + 1) / 2, "all-reduce over redis rendezvous");
    job.world->barrier(kOpTimeout);
    return 0;
  });
  EXPECT_FALSE(result.hung) << result.describe();
  EXPECT_TRUE(result.all_ok()) << result.describe();

  // The job's keys really went through the server, under its namespace.
  RedisStore inspect({"127.0.0.1", port, "test-job", std::chrono::milliseconds(2000)});
  EXPECT_TRUE(inspect.check({"job_token"}));
}

// The Store contract on a live server: namespaces, overwrite, check, timed
// get, limits; and a server that goes away turns into kStore, not a hang.
TEST(RedisRendezvous, StoreContractOnALiveServer) {
  ASSERT_EQ(access(kRedisServer, X_OK), 0) << kRedisServer << " is not installed";
  const int port = pick_free_tcp_port();
  auto server = std::make_unique<RedisServer>(port);
  ASSERT_TRUE(server->started() && server->wait_ready());
  const auto bytes = [](const std::string& text) { return Bytes(text.begin(), text.end()); };
  RedisStore a({"127.0.0.1", port, "job-a", std::chrono::milliseconds(2000)});
  RedisStore b({"127.0.0.1", port, "job-b", std::chrono::milliseconds(2000)});
  a.set("k", bytes("one"));
  a.set("k", bytes("two"));
  a.set("bin", Bytes{0, 255, 0, 10});
  EXPECT_EQ(a.get("k", std::chrono::milliseconds(100)), bytes("two"));
  EXPECT_EQ(a.get("bin", std::chrono::milliseconds(100)), (Bytes{0, 255, 0, 10}));
  EXPECT_TRUE(a.check({"k", "bin", "k"}));
  EXPECT_FALSE(b.check({"k"})) << "namespaces are disjoint";
  EXPECT_EQ(a.describe(), "redis:127.0.0.1:" + std::to_string(port) + "/job-a");
  const auto start = std::chrono::steady_clock::now();
  try {
    b.get("k", std::chrono::milliseconds(150));
    FAIL() << "get returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("'k'"), std::string::npos) << error.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150) + 10 * kRedisPollMax);
  EXPECT_THROW(a.set("big", Bytes(kStoreValueBytesMax + 1)), Error);
  EXPECT_THROW(a.set("/bad", {}), Error);
  server.reset();  // stopped: the next command fails, bounded by io_timeout
  try {
    a.set("k", bytes("three"));
    FAIL() << "set on a stopped server returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kStore);
    EXPECT_NE(std::string(error.what()).find(std::to_string(port)), std::string::npos) << error.what();
  }
}

TEST(RedisRendezvous, UnreachableServerIsAStoreError) {
  const int port = pick_free_tcp_port();  // nothing listens there
  try {
    RedisStore store({"127.0.0.1", port, "", std::chrono::milliseconds(500)});
    FAIL() << "connected to a closed port";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kStore);
    EXPECT_NE(std::string(error.what()).find(std::to_string(port)), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace lockstep::test
