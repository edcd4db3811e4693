#include "launch/nodes.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "lockstep/error.h"
#include "lockstep/job_token.h"
#include "lockstep/rank_env.h"

namespace lockstep::launch_detail {
namespace {

constexpr const char* kMasterKey = "launch/master";
constexpr const char* kFailedKey = "launch/failed";
constexpr const char* kLoopback = "127.0.0.1";
// A failure summary longer than this is cut in the store (launch.json has it whole).
constexpr std::size_t kFailureBytesMax = 2048;

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) {
    throw Error(ErrorCode::kResource, std::string("launch: gethostname: ") + std::strerror(errno));
  }
  return name;
}

std::string text_of(const Bytes& bytes) { return std::string(bytes.begin(), bytes.end()); }
Bytes bytes_of(const std::string& text) { return Bytes(text.begin(), text.end()); }

}  // namespace

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(ErrorCode::kResource, std::string("launch: socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) throw Error(ErrorCode::kResource, std::string("launch: no free TCP port: ") + std::strerror(saved));
  return ntohs(address.sin_port);
}

NodeGroup::NodeGroup(const LaunchOptions& options, JobSetup& job) : node_rank_(options.node_rank) {
  if (options.nnodes == 1) {
    job.master_addr = options.master_addr.empty() ? kLoopback : options.master_addr;
    job.master_port = options.master_port != 0 ? options.master_port : free_tcp_port();
    return;
  }
  RankEnv env;
  env.store_url = job.store;
  env.job_id = job.job_id;
  const std::chrono::milliseconds wait(options.rendezvous_ms);
  store_ = join_job(open_store(env), {job.job_id, job.job_token, options.generation}, options.node_rank, wait);
  if (options.node_rank == 0) {
    job.master_addr = options.master_addr.empty() ? host_name() : options.master_addr;
    job.master_port = options.master_port != 0 ? options.master_port : free_tcp_port();
    store_->set(kMasterKey, bytes_of(job.master_addr + ":" + std::to_string(job.master_port)));
    return;
  }
  std::string master;
  try {
    master = text_of(store_->get(kMasterKey, wait));
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kTimeout) throw;
    throw Error(ErrorCode::kTimeout, "launch: node " + std::to_string(options.node_rank) + " waited " +
                                         std::to_string(options.rendezvous_ms) + " ms for node 0 to publish '" +
                                         kMasterKey + "' in " + job.store);
  }
  const std::size_t colon = master.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw Error(ErrorCode::kStore, std::string("launch: '") + kMasterKey + "' holds '" + master + "'");
  }
  job.master_addr = master.substr(0, colon);
  job.master_port = std::stoi(master.substr(colon + 1));
}

std::optional<std::string> NodeGroup::peer_failure() {
  if (store_ == nullptr || published_) return std::nullopt;
  try {
    if (!store_->check({kFailedKey})) return std::nullopt;
    return text_of(store_->get(kFailedKey, std::chrono::milliseconds(1000)));
  } catch (const std::exception& error) {
    return std::string("the job's store failed: ") + error.what();
  }
}

void NodeGroup::publish_failure(const std::string& summary) noexcept {
  if (store_ == nullptr || published_) return;
  published_ = true;
  try {
    store_->set(kFailedKey, bytes_of("node " + std::to_string(node_rank_) + ": " + summary.substr(0, kFailureBytesMax)));
  } catch (const std::exception&) {
    // The other machines still stop: their ranks' watchdogs see the poison
    // marks and dead peers; this launcher's own stop goes on regardless.
  }
}

}  // namespace lockstep::launch_detail
