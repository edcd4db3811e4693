// The comm layer across real processes (label multiproc): guarded collectives
// over Gloo with the file store, violations rejected before the backend, the
// group-table digest catching a different creation order (B3), the shm ring
// with a reader or writer killed, and the backend channel over Gloo.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <numeric>

#include "lockstep/backend_channel.h"
#include "lockstep/clock.h"
#include "lockstep/communicator.h"
#include "lockstep/gloo_backend.h"
#include "lockstep/job_token.h"
#include "lockstep/rank_env.h"
#include "lockstep/shm_ring.h"
#include "support/multiprocess.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
// Generous: healthy ranks must never time out on a loaded CI machine.
constexpr milliseconds kOpTimeout{15000};
constexpr milliseconds kJoinTimeout{20000};

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error("check failed: " + what);
}

ErrorCode code_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& error) {
    return error.code();
  }
  throw std::runtime_error("expected a lockstep::Error, nothing was thrown");
}

std::string unique_job_id(const char* test) {
  static std::atomic<int> counter{0};
  return std::string("comm-") + test + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Counts rejections, so a child can show a violation never became a call.
class RejectionCounter final : public CollectiveObserver {
 public:
  void on_collective(const CollectiveEvent& event) noexcept override {
    if (event.state == CollectiveState::kRejected) ++rejected;
    if (event.state == CollectiveState::kStarted) ++started;
  }
  int rejected = 0;
  int started = 0;
};

struct Joined {
  RankEnv env;
  std::unique_ptr<Store> store;
};

Joined join() {
  Joined joined{read_rank_env(), nullptr};
  joined.store = join_job(open_store(joined.env), {joined.env.job_id, joined.env.job_token},
                          joined.env.rank, kJoinTimeout);
  return joined;
}

std::unique_ptr<Communicator> connect(Joined& joined, GroupTable table, CollectiveObserver* observer) {
  GlooBackendFactory factory(gloo_options_from_environment());
  CommunicatorOptions options;
  options.global_rank = joined.env.rank;
  options.groups = std::move(table);
  options.initial_phase = Phase::kControl;
  options.connect_timeout = kJoinTimeout;
  return std::make_unique<Communicator>(std::move(options), factory, *joined.store, observer);
}

test::RanksResult run(int world_size, const char* name, const std::function<int(int)>& body) {
  test::RanksOptions options;
  options.world_size = world_size;
  options.job_id = unique_job_id(name);
  return test::run_ranks(options, body);
}

// Every member of `group` contributes its ledger digest; all must agree.
void require_ledgers_agree(Communicator& comm, std::string_view group) {
  const LedgerSnapshot before = comm.ledger_snapshot(group);
  const int size = static_cast<int>(comm.groups().find(group)->member_ranks.size());
  std::vector<std::int64_t> digests(static_cast<std::size_t>(size));
  const auto mine = static_cast<std::int64_t>(before.digest);
  comm.all_gather(group, &mine, digests.data(), 1, DType::kI64, kOpTimeout);
  for (std::int64_t digest : digests) require(digest == mine, "ledger digest of group " + std::string(group));
}

int guarded_pp1_rank(int rank) {
  Joined joined = join();
  RejectionCounter observer;
  auto comm = connect(joined, make_standard_group_table(Topology::kPp1, 4), &observer);
  std::vector<std::int64_t> value(3, rank == 0 ? 42 : -1);
  comm->broadcast("world", value.data(), 3, DType::kI64, 0, kOpTimeout);
  require(value == std::vector<std::int64_t>(3, 42), "world broadcast");
  std::array<float, 4> p2p{1, 2, 3, 4};
  if (rank == 0) comm->send("boundary", p2p.data(), 4, DType::kF32, 1, 7, kOpTimeout);
  if (rank == 1) {
    p2p.fill(0);
    comm->recv("boundary", p2p.data(), 4, DType::kF32, 0, 7, kOpTimeout);
    require(p2p == std::array<float, 4>{1, 2, 3, 4}, "boundary recv");
  }
  comm->set_phase(Phase::kGenerator);
  float x = static_cast<float>(rank);
  if (rank == 0) {  // B1: rank 0 never joins a mesh collective in pp1
    require(code_of([&] { comm->all_reduce("mesh", &x, 1, DType::kF32, ReduceOp::kSum, kOpTimeout); }) ==
                ErrorCode::kMembership, "B1 rejected");
  } else {  // B2: world is not allowed inside the generator phase
    require(code_of([&] { comm->barrier("world", kOpTimeout); }) == ErrorCode::kPhase, "B2 rejected");
    comm->all_reduce("mesh", &x, 1, DType::kF32, ReduceOp::kSum, kOpTimeout);
    require(x == 6.0f, "mesh all_reduce 1+2+3");
    std::array<std::int32_t, 3> gathered{};
    const std::int32_t mine = rank;
    comm->all_gather("mesh", &mine, gathered.data(), 1, DType::kI32, kOpTimeout);
    require(gathered == std::array<std::int32_t, 3>{1, 2, 3}, "mesh all_gather");
  }
  require(observer.rejected == 1, "exactly one rejection");
  comm->set_phase(Phase::kControl);
  for (std::string_view group : comm->member_groups()) require_ledgers_agree(*comm, group);
  return 0;
}

TEST(CommMultiproc, GuardedCollectivesOnPp1RejectViolationsBeforeTheBackend) {  // B1, B2
  const test::RanksResult result = run(4, "pp1", guarded_pp1_rank);
  EXPECT_FALSE(result.hung);
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

int table_digest_rank(int rank) {
  Joined joined = join();
  GroupTable table(3);
  // Rank 2 creates the same groups in another order (B3).
  if (rank == 2) table.add("mesh", {1, 2});
  table.add("world", {0, 1, 2});
  if (rank != 2) table.add("mesh", {1, 2});
  const std::uint64_t digest = table.digest();
  Bytes value(8);
  std::memcpy(value.data(), &digest, 8);
  joined.store->set("table-digest/" + std::to_string(rank), value);
  for (int peer = 0; peer < 3; ++peer) {
    const Bytes theirs = joined.store->get("table-digest/" + std::to_string(peer), kJoinTimeout);
    if (theirs != value) {
      throw Error(ErrorCode::kParity, "group table digest of rank " + std::to_string(peer) +
                                          " differs from rank " + std::to_string(rank) + "'s");
    }
  }
  return 0;
}

TEST(CommMultiproc, GroupOrderMismatchIsCaughtByTheTableDigest) {  // B3
  const test::RanksResult result = run(3, "b3", table_digest_rank);
  EXPECT_FALSE(result.hung);
  for (const test::RankOutcome& outcome : result.ranks) {
    EXPECT_FALSE(outcome.signaled) << result.describe();
    EXPECT_EQ(outcome.code, exit_code_for(ErrorCode::kParity)) << result.describe();
  }
}

int killed_peer_rank(int rank) {
  constexpr milliseconds kShortTimeout{3000};
  Joined joined = join();
  auto comm = connect(joined, make_standard_group_table(Topology::kTp, 3), nullptr);
  comm->barrier("mesh", kOpTimeout);
  if (rank == 2) ::raise(SIGKILL);
  float x = 1;
  const std::int64_t start_ns = steady_clock().now_ns();
  const ErrorCode code = code_of([&] { comm->all_reduce("mesh", &x, 1, DType::kF32, ReduceOp::kSum, kShortTimeout); });
  const std::int64_t waited_ms = (steady_clock().now_ns() - start_ns) / 1'000'000;
  require(code == ErrorCode::kTimeout || code == ErrorCode::kPeerFailure, "all_reduce with a dead peer fails");
  require(waited_ms < kShortTimeout.count() + 2000, "failed within the op timeout");
  require(comm->aborted(), "the communicator is aborted");
  require(code_of([&] { comm->barrier("world", kOpTimeout); }) == ErrorCode::kAborted, "no backend call after failure");
  return 0;
}

TEST(CommMultiproc, PeerKilledMidCollectiveFailsOthersWithinTimeout) {
  const test::RanksResult result = run(3, "kill", killed_peer_rank);
  EXPECT_FALSE(result.hung);
  EXPECT_TRUE(result.ranks[0].ok()) << result.describe();
  EXPECT_TRUE(result.ranks[1].ok()) << result.describe();
  EXPECT_TRUE(result.ranks[2].signaled && result.ranks[2].code == SIGKILL) << result.describe();
}

ShmRingOptions ring_options(const std::string& job_id, int readers) {
  ShmRingOptions options;
  options.job_id = job_id;
  options.channel_name = "ctl";
  options.readers = readers;
  options.slots = 2;
  options.slot_payload_bytes = 4096;
  return options;
}

// Receives until the channel fails; returns how many frames arrived.
std::uint64_t drain(Channel& reader, ErrorCode expected_end) {
  std::vector<std::uint8_t> buffer(reader.frame_bytes_max());
  std::uint64_t frames = 0;
  const ErrorCode end = code_of([&] {
    while (true) {
      const std::size_t size = reader.receive(buffer, kOpTimeout);
      require(size == 8 && std::memcmp(buffer.data(), &frames, 8) == 0, "frame contents in order");
      ++frames;
    }
  });
  require(end == expected_end, "channel ended with " + std::string(error_code_name(end)));
  return frames;
}

void publish_seq(Channel& writer, std::uint64_t n, milliseconds timeout) {
  std::array<std::uint8_t, 8> frame{};
  std::memcpy(frame.data(), &n, 8);
  writer.publish(frame, timeout);
}

int dead_reader_rank(int rank) {
  const RankEnv env = read_rank_env();
  const ShmRingOptions options = ring_options(env.job_id, 2);
  if (rank == 0) {
    ShmRing ring = ShmRing::create(options);
    auto writer = ring.writer();
    std::uint64_t published = 0;
    const std::int64_t start_ns = steady_clock().now_ns();
    const ErrorCode code = code_of([&] {
      for (; published < 100; ++published) publish_seq(*writer, published, kOpTimeout);
    });
    const std::int64_t waited_ms = (steady_clock().now_ns() - start_ns) / 1'000'000;
    require(code == ErrorCode::kPeerFailure, "writer sees the dead reader");
    require(waited_ms < 5000, "dead reader noticed well within the publish timeout");
    require(published == 1 + options.slots, "the ring stopped at its bound");
    return 0;
  }
  ShmRing ring = ShmRing::open(options, kJoinTimeout);
  auto reader = ring.reader(rank - 1);
  if (rank == 2) {
    std::vector<std::uint8_t> buffer(reader->frame_bytes_max());
    reader->receive(buffer, kOpTimeout);
    ::raise(SIGKILL);
  }
  require(drain(*reader, ErrorCode::kPeerFailure) == 1 + options.slots, "reader 0 got every frame");
  return 0;
}

TEST(CommMultiproc, ShmRingWriterEndsItsWaitWhenAReaderIsKilled) {
  const test::RanksResult result = run(3, "deadreader", dead_reader_rank);
  EXPECT_FALSE(result.hung);
  EXPECT_TRUE(result.ranks[0].ok()) << result.describe();
  EXPECT_TRUE(result.ranks[1].ok()) << result.describe();
  EXPECT_TRUE(result.ranks[2].signaled) << result.describe();
}

int dead_writer_rank(int rank) {
  const RankEnv env = read_rank_env();
  const ShmRingOptions options = ring_options(env.job_id, 1);
  if (rank == 0) {
    ShmRing ring = ShmRing::create(options);
    auto writer = ring.writer();
    // The third publish waits for the reader's first ack, so the reader is
    // attached before the writer dies.
    for (std::uint64_t n = 0; n < 3; ++n) publish_seq(*writer, n, kOpTimeout);
    ::raise(SIGKILL);
  }
  ShmRing ring = ShmRing::open(options, kJoinTimeout);
  auto reader = ring.reader(0);
  const std::int64_t start_ns = steady_clock().now_ns();
  require(drain(*reader, ErrorCode::kPeerFailure) == 3, "frames published before the kill arrive");
  require((steady_clock().now_ns() - start_ns) / 1'000'000 < 5000, "dead writer noticed promptly");
  return 0;
}

TEST(CommMultiproc, ShmRingReaderEndsItsWaitWhenTheWriterIsKilled) {
  test::RanksOptions options;
  options.world_size = 2;
  options.job_id = unique_job_id("deadwriter");
  const test::RanksResult result = test::run_ranks(options, dead_writer_rank);
  // The killed creator could not unlink its segment.
  ::shm_unlink(shm_ring_segment_name(ring_options(options.job_id, 1)).c_str());
  EXPECT_FALSE(result.hung);
  EXPECT_TRUE(result.ranks[0].signaled) << result.describe();
  EXPECT_TRUE(result.ranks[1].ok()) << result.describe();
}

int backend_channel_rank(int rank) {
  constexpr std::uint64_t kFrames = 20;
  Joined joined = join();
  BackendGroupSpec spec{"ctl", {0, 1, 2}, rank, kJoinTimeout};
  auto backend = GlooBackendFactory(gloo_options_from_environment()).connect(*joined.store, spec);
  BackendChannel channel(*backend, BackendChannelOptions{"ctl", 0, 11, 4096});
  if (rank == 0) {
    for (std::uint64_t n = 0; n < kFrames; ++n) publish_seq(channel, n, kOpTimeout);
    backend->barrier(kOpTimeout);
    return 0;
  }
  std::vector<std::uint8_t> buffer(channel.frame_bytes_max());
  for (std::uint64_t n = 0; n < kFrames; ++n) {
    const std::size_t size = channel.receive(buffer, kOpTimeout);
    require(size == 8 && std::memcmp(buffer.data(), &n, 8) == 0, "frame " + std::to_string(n));
  }
  backend->barrier(kOpTimeout);
  return 0;
}

TEST(CommMultiproc, BackendChannelFansOutOverGloo) {
  const test::RanksResult result = run(3, "bchan", backend_channel_rank);
  EXPECT_FALSE(result.hung);
  EXPECT_TRUE(result.all_ok()) << result.describe();
}

}  // namespace
}  // namespace lockstep
