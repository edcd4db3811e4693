// FileStore, the prefix store and the job token, in one process.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/file_store.h"
#include "lockstep/job_token.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

Bytes bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = std::filesystem::temp_directory_path().string() + "/lockstep-store-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

ErrorCode code_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.code();
  }
  ADD_FAILURE() << "no lockstep::Error thrown";
  return ErrorCode::kInternal;
}

TEST_F(FileStoreTest, SetGetCheckAndOverwrite) {
  FileStore store(dir_ + "/nested/store");
  EXPECT_FALSE(store.check({"a"}));
  store.set("a", bytes("one"));
  store.set("a/b", bytes("child"));  // a key may extend another key
  store.set("odd:key%v!", Bytes{});  // bytes that need encoding; empty value
  EXPECT_EQ(store.get("a", milliseconds(10)), bytes("one"));
  EXPECT_EQ(store.get("a/b", milliseconds(10)), bytes("child"));
  EXPECT_EQ(store.get("odd:key%v!", milliseconds(10)), Bytes{});
  store.set("a", bytes("two"));
  EXPECT_EQ(store.get("a", milliseconds(10)), bytes("two"));
  EXPECT_TRUE(store.check({"a", "a/b"}));
  EXPECT_FALSE(store.check({"a", "missing"}));
  EXPECT_EQ(store.describe(), "file:" + dir_ + "/nested/store");
}

TEST_F(FileStoreTest, RewritingAKeyLeavesOnlyItsLatestValueBehind) {
  // A rewrite swaps the new file into the key's place and removes the old
  // one (a rename over the key is what ext4 flushes): nothing accumulates.
  FileStore store(dir_);
  for (int i = 0; i < 50; ++i) store.set("stream_position", bytes(std::to_string(i) + " 1"));
  EXPECT_EQ(store.get("stream_position", milliseconds(10)), bytes("49 1"));
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) names.push_back(entry.path().filename());
  ASSERT_EQ(names.size(), 1u) << "left behind: " << ::testing::PrintToString(names);
}

TEST_F(FileStoreTest, GetTimesOutNamingTheKeyWithinItsTimeout) {
  FileStore store(dir_);
  const auto start = std::chrono::steady_clock::now();
  try {
    store.get("never/there", milliseconds(100));
    FAIL() << "get returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("never/there"), std::string::npos) << error.what();
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(100));
  EXPECT_LT(elapsed, milliseconds(100) + 10 * kFileStorePollMax);
}

TEST_F(FileStoreTest, GetSeesAValueSetWhileItWaits) {
  FileStore store(dir_);
  std::thread writer([&] { store.set("late", bytes("value")); });
  EXPECT_EQ(store.get("late", milliseconds(5000)), bytes("value"));
  writer.join();
}

TEST_F(FileStoreTest, BadKeysAndValuesAreRefused) {
  FileStore store(dir_);
  EXPECT_EQ(code_of([&] { store.set("", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set("/lead", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set("trail/", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set("a/../b", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set("a//b", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set("tab\there", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { store.set(std::string(kStoreKeyBytesMax + 1, 'k'), {}); }), ErrorCode::kLimit);
  EXPECT_EQ(code_of([&] { store.set("big", Bytes(kStoreValueBytesMax + 1)); }), ErrorCode::kLimit);
  EXPECT_EQ(code_of([&] { store.check({"ok", "/bad"}); }), ErrorCode::kInvalidArgument);
  store.set("max", Bytes(kStoreValueBytesMax, 7));
  EXPECT_EQ(store.get("max", milliseconds(10)).size(), kStoreValueBytesMax);
}

TEST_F(FileStoreTest, ADirectoryThatIsAFileIsAStoreError) {
  FileStore(dir_).set("plain", {});
  EXPECT_EQ(code_of([&] { FileStore store(dir_ + "/plain%v"); }), ErrorCode::kStore);
  EXPECT_EQ(code_of([] { FileStore store(""); }), ErrorCode::kInvalidArgument);
}

TEST_F(FileStoreTest, PrefixStoresAreDisjointViewsOfTheBase) {
  auto base = std::make_shared<FileStore>(dir_);
  auto left = make_prefix_store(base, "left");
  auto right = make_prefix_store(base, "right");
  left->set("k", bytes("L"));
  right->set("k", bytes("R"));
  EXPECT_EQ(left->get("k", milliseconds(10)), bytes("L"));
  EXPECT_EQ(right->get("k", milliseconds(10)), bytes("R"));
  EXPECT_EQ(base->get("left/k", milliseconds(10)), bytes("L"));
  EXPECT_TRUE(left->check({"k"}));
  EXPECT_FALSE(left->check({"k", "other"}));
  auto nested = make_prefix_store(std::shared_ptr<Store>(std::move(left)), "inner");
  nested->set("x", bytes("N"));
  EXPECT_TRUE(base->check({"left/inner/x"}));
  EXPECT_EQ(nested->describe(), "file:" + dir_ + "/left/inner");
  EXPECT_EQ(code_of([&] { right->get("/x", milliseconds(1)); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { make_prefix_store(base, "bad/"); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { make_prefix_store(nullptr, "p"); }), ErrorCode::kInvalidArgument);
}

TEST_F(FileStoreTest, JobTokenSeparatesJobsAndRefusesMismatches) {
  auto base = std::make_shared<FileStore>(dir_);
  const JobCredentials good{"job-1", "secret-0123456789"};
  const JobCredentials bad{"job-1", "secret-9876543210"};
  EXPECT_EQ(job_token_digest(good), job_token_digest(good));
  EXPECT_NE(job_token_digest(good), job_token_digest(bad));
  auto rank0 = join_job(base, good, 0, milliseconds(100));
  auto rank1 = join_job(base, good, 1, milliseconds(100));
  rank0->set("shared", bytes("x"));
  EXPECT_EQ(rank1->get("shared", milliseconds(10)), bytes("x"));
  EXPECT_EQ(code_of([&] { join_job(base, bad, 1, milliseconds(100)); }), ErrorCode::kJobToken);
  EXPECT_EQ(code_of([&] { join_job(base, bad, 0, milliseconds(100)); }), ErrorCode::kJobToken);
  // The refused rank 0 did not replace the job's claim.
  EXPECT_NO_THROW(join_job(base, good, 2, milliseconds(100)));
  EXPECT_NO_THROW(join_job(base, good, 0, milliseconds(100)));  // a restarted rank 0
  // A new generation of the same job proves the same token but reads and
  // writes its own key space: an old-generation straggler never meets it.
  JobCredentials next = good;
  next.generation = 1;
  auto reborn = join_job(base, next, 0, milliseconds(100));
  rank0->set("only-in-generation-0", bytes("x"));
  EXPECT_FALSE(reborn->check({"only-in-generation-0"}));
  next.generation = kJobGenerationMax + 1;
  EXPECT_EQ(code_of([&] { join_job(base, next, 0, milliseconds(1)); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { join_job(base, {"job 1", good.token}, 0, milliseconds(1)); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { join_job(base, {"job-1", "short"}, 0, milliseconds(1)); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { join_job(base, good, -1, milliseconds(1)); }), ErrorCode::kInvalidArgument);
}

TEST_F(FileStoreTest, JoinTimesOutWhenRankZeroNeverPublishes) {
  auto base = std::make_shared<FileStore>(dir_);
  try {
    join_job(base, {"lonely", "secret-0123456789"}, 3, milliseconds(50));
    FAIL() << "join_job returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("'lonely'"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace lockstep
