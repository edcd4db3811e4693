// Pieces of the Gloo backend that need no peers: error mapping, bf16
// rounding, the store adapter's deadline, and connect()'s spec checks.
#include <gloo/common/error.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "backends/gloo/errors.h"
#include "backends/gloo/reduce.h"
#include "backends/gloo/store_adapter.h"
#include "lockstep/error.h"
#include "lockstep/file_store.h"
#include "lockstep/gloo_backend.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

Error mapped(std::exception_ptr failure) { return gloo_detail::map_gloo_failure(failure, "gloo group 'g' rank 1/2 op"); }

TEST(GlooErrors, IoTextsMapToTimeoutPeerFailureOrBackend) {
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::IoException("[pair.cc:1] Read timeout [::1]:5"))).code(),
            ErrorCode::kTimeout);
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::IoException("Timed out waiting 1000ms for recv operation to complete"))).code(),
            ErrorCode::kTimeout);
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::IoException("Connection closed by peer [127.0.0.1]:1"))).code(),
            ErrorCode::kPeerFailure);
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::IoException("writev: Connection reset by peer"))).code(),
            ErrorCode::kPeerFailure);
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::IoException("bind: Address family not supported"))).code(),
            ErrorCode::kBackend);
  EXPECT_EQ(mapped(std::make_exception_ptr(gloo::EnforceNotMet("f", 1, "cond", "msg"))).code(), ErrorCode::kBackend);
  EXPECT_EQ(mapped(std::make_exception_ptr(Error(ErrorCode::kStore, "disk"))).code(), ErrorCode::kStore);
  const Error error = mapped(std::make_exception_ptr(gloo::IoException("Socket closed")));
  EXPECT_EQ(std::string(error.what()), "peer_failure: gloo group 'g' rank 1/2 op: Socket closed");
  const Error wrapped = mapped(std::make_exception_ptr(Error(ErrorCode::kTimeout, "key 'k'")));
  EXPECT_EQ(std::string(wrapped.what()), "timeout: gloo group 'g' rank 1/2 op: key 'k'");
}

TEST(GlooReduce, Bf16RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(gloo_detail::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(gloo_detail::bf16_to_float(0x3F80), 1.0f);
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one.
  EXPECT_EQ(gloo_detail::float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(gloo_detail::float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(gloo_detail::bf16_to_float(gloo_detail::float_to_bf16(std::nanf("")))));
  EXPECT_EQ(gloo_detail::bf16_to_float(gloo_detail::float_to_bf16(-3.5f)), -3.5f);
  EXPECT_TRUE(std::isinf(gloo_detail::bf16_to_float(gloo_detail::float_to_bf16(std::numeric_limits<float>::infinity()))));
}

class StoreAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = std::filesystem::temp_directory_path().string() + "/lockstep-adapter-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StoreAdapterTest, WaitsEndAtTheEarlierOfTimeoutAndDeadline) {
  FileStore store(dir_);
  const auto now = std::chrono::steady_clock::now();
  gloo_detail::StoreAdapter adapter(store, now + milliseconds(300));
  adapter.set("k", {'v'});
  adapter.wait({"k"}, milliseconds(10));
  EXPECT_EQ(adapter.get("k"), std::vector<char>{'v'});
  // Gloo's own, shorter timeout wins.
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(adapter.wait({"missing"}, milliseconds(50)), Error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(250));
  // With no timeout of Gloo's (kNoTimeout = 0), the connect deadline still ends the wait.
  try {
    adapter.wait({"missing"}, gloo::kNoTimeout);
    FAIL() << "wait returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("missing"), std::string::npos);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - now, milliseconds(300) + 10 * kFileStorePollMax);
  EXPECT_THROW(adapter.get("missing"), Error);
}

TEST_F(StoreAdapterTest, ConnectRefusesABadSpec) {
  FileStore store(dir_);
  GlooBackendFactory factory;
  const auto code_for = [&](BackendGroupSpec spec) {
    try {
      factory.connect(store, spec);
    } catch (const Error& error) {
      return error.code();
    }
    return ErrorCode::kInternal;
  };
  EXPECT_EQ(code_for({"g", {}, 0, milliseconds(100)}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_for({"g", {1, 0}, 0, milliseconds(100)}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_for({"g", {0, 0}, 0, milliseconds(100)}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_for({"g", {0, 1}, 2, milliseconds(100)}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_for({"g", {0, 1}, 0, milliseconds(0)}), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_for({"/g", {0, 1}, 0, milliseconds(100)}), ErrorCode::kInvalidArgument);
}

TEST_F(StoreAdapterTest, OptionsComeFromTheEnvironment) {
  unsetenv("LOCKSTEP_GLOO_IFACE");
  unsetenv("LOCKSTEP_GLOO_HOSTNAME");
  EXPECT_EQ(gloo_options_from_environment().hostname, "127.0.0.1");
  EXPECT_EQ(gloo_options_from_environment().iface, "");
  setenv("LOCKSTEP_GLOO_IFACE", "lo", 1);
  setenv("LOCKSTEP_GLOO_HOSTNAME", "localhost", 1);
  EXPECT_EQ(gloo_options_from_environment().iface, "lo");
  EXPECT_EQ(gloo_options_from_environment().hostname, "localhost");
}

TEST_F(StoreAdapterTest, SingleRankGroupConnectsAndRunsEveryOp) {
  FileStore store(dir_);
  auto backend = GlooBackendFactory().connect(store, {"solo", {4}, 4, milliseconds(5000)});
  EXPECT_EQ(backend->rank(), 0);
  EXPECT_EQ(backend->size(), 1);
  float value = 2.5f;
  backend->all_reduce(&value, 1, DType::kF32, ReduceOp::kSum, milliseconds(1000));
  EXPECT_EQ(value, 2.5f);
  backend->broadcast(&value, 1, DType::kF32, 0, milliseconds(1000));
  float gathered = 0;
  backend->all_gather(&value, &gathered, 1, DType::kF32, milliseconds(1000));
  EXPECT_EQ(gathered, 2.5f);
  backend->barrier(milliseconds(1000));
}

}  // namespace
}  // namespace lockstep
