#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include <signal.h>

#include <algorithm>
#include <cstdlib>

#include "backends/gloo/errors.h"
#include "backends/gloo/gloo_backend_impl.h"
#include "backends/gloo/store_adapter.h"
#include "lockstep/assert.h"
#include "lockstep/error.h"
#include "lockstep/gloo_backend.h"

namespace lockstep {
namespace {

using SteadyTime = std::chrono::steady_clock;

// Gloo waits up to 5x its context timeout for each pair's initial TCP
// connect; the context timeout during connect is the remaining budget divided
// by this, so one pair's wait never outlasts the connect deadline.
constexpr int kGlooInitialConnectFactor = 5;
constexpr std::chrono::milliseconds kGlooConnectStepMin{1};
constexpr const char* kArrivedPrefix = "arrived";
constexpr const char* kGlooPrefix = "gloo";

std::string where(const BackendGroupSpec& spec, int group_rank) {
  return "gloo group '" + spec.group_name + "' rank " + std::to_string(group_rank) + "/" +
         std::to_string(spec.member_ranks.size()) + " (global " + std::to_string(spec.global_rank) +
         ") connect";
}

// The group rank of spec.global_rank; throws Error{kInvalidArgument}.
int check_spec(const BackendGroupSpec& spec) {
  const std::string what = "gloo group '" + spec.group_name + "' connect: ";
  const auto& members = spec.member_ranks;
  if (members.empty() || !std::is_sorted(members.begin(), members.end()) ||
      std::adjacent_find(members.begin(), members.end()) != members.end() || members.front() < 0) {
    throw Error(ErrorCode::kInvalidArgument, what + "member_ranks must be non-empty, ascending, unique, >= 0");
  }
  const auto self = std::find(members.begin(), members.end(), spec.global_rank);
  if (self == members.end()) {
    throw Error(ErrorCode::kInvalidArgument,
                what + "global rank " + std::to_string(spec.global_rank) + " is not a member");
  }
  if (spec.connect_timeout.count() <= 0) {
    throw Error(ErrorCode::kInvalidArgument, what + "connect_timeout must be > 0 ms");
  }
  return static_cast<int>(self - members.begin());
}

std::chrono::milliseconds remaining(SteadyTime::time_point deadline) {
  return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyTime::now()),
                  std::chrono::milliseconds::zero());
}

// Every member announces itself, then waits for all others, so a rank that
// never shows up is named (by global rank) instead of surfacing as an
// anonymous Gloo key timeout.
void announce_and_wait(Store& group_store, const BackendGroupSpec& spec, int group_rank,
                       SteadyTime::time_point deadline) {
  const std::string self = std::to_string(spec.global_rank);
  group_store.set(std::string(kArrivedPrefix) + "/" + std::to_string(group_rank), Bytes(self.begin(), self.end()));
  std::string missing;
  for (std::size_t member = 0; member < spec.member_ranks.size(); ++member) {
    const std::string key = std::string(kArrivedPrefix) + "/" + std::to_string(member);
    if (group_store.check({key})) continue;
    try {
      group_store.get(key, remaining(deadline));
    } catch (const Error& error) {
      if (error.code() != ErrorCode::kTimeout) throw;
      missing += (missing.empty() ? "" : ", ") + std::to_string(spec.member_ranks[member]);
    }
  }
  if (!missing.empty()) {
    throw Error(ErrorCode::kTimeout, where(spec, group_rank) + ": timed out after " +
                                         std::to_string(spec.connect_timeout.count()) +
                                         " ms; global ranks never arrived: [" + missing + "]");
  }
}

// Gloo 2022 writes to its sockets without MSG_NOSIGNAL, so a write to a peer
// that just died raises SIGPIPE, whose default action kills this process
// before Gloo can report "Connection closed by peer". A handler someone else
// installed is left alone.
void ignore_sigpipe_if_default() {
  struct sigaction current {};
  LOCKSTEP_ASSERT(sigaction(SIGPIPE, nullptr, &current) == 0);
  if (current.sa_handler != SIG_DFL) return;
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  LOCKSTEP_ASSERT(sigaction(SIGPIPE, &ignore, nullptr) == 0);
}

}  // namespace

GlooOptions gloo_options_from_environment() {
  GlooOptions options;
  if (const char* iface = std::getenv("LOCKSTEP_GLOO_IFACE")) options.iface = iface;
  if (const char* hostname = std::getenv("LOCKSTEP_GLOO_HOSTNAME")) options.hostname = hostname;
  return options;
}

GlooBackendFactory::GlooBackendFactory(GlooOptions options) : options_(std::move(options)) {}

std::unique_ptr<Backend> GlooBackendFactory::connect(Store& store, const BackendGroupSpec& spec) {
  const int group_rank = check_spec(spec);
  ignore_sigpipe_if_default();
  const auto deadline = SteadyTime::now() + spec.connect_timeout;
  // The caller keeps `store` alive for the whole call; nothing here outlives it.
  const std::shared_ptr<Store> borrowed(std::shared_ptr<Store>(), &store);
  const std::shared_ptr<Store> group_store = make_prefix_store(borrowed, spec.group_name);
  announce_and_wait(*group_store, spec, group_rank, deadline);
  const int size = static_cast<int>(spec.member_ranks.size());
  auto context = std::make_shared<gloo::rendezvous::Context>(group_rank, size);
  try {
    gloo::transport::tcp::attr attr;
    if (options_.iface.empty()) attr.hostname = options_.hostname;
    else attr.iface = options_.iface;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    context->setTimeout(std::max(remaining(deadline) / kGlooInitialConnectFactor, kGlooConnectStepMin));
    const std::unique_ptr<Store> gloo_store = make_prefix_store(group_store, kGlooPrefix);
    gloo_detail::StoreAdapter adapter(*gloo_store, deadline);
    context->connectFullMesh(adapter, device);
  } catch (...) {
    throw gloo_detail::map_gloo_failure(std::current_exception(), where(spec, group_rank));
  }
  return std::make_unique<gloo_detail::GlooBackend>(spec.group_name, std::move(context));
}

}  // namespace lockstep
