#include "lockstep/rank_env.h"

#include <charconv>
#include <cstdlib>

#include "lockstep/error.h"
#include "lockstep/file_store.h"
#include "lockstep/job_token.h"
#include "lockstep/redis_store.h"

namespace lockstep {
namespace {

constexpr const char* kFileScheme = "file:";
constexpr const char* kRedisScheme = "redis:";

[[noreturn]] void throw_env(const std::string& name, const std::string& problem) {
  throw Error(ErrorCode::kInvalidArgument, "environment variable " + name + " " + problem);
}

int parse_int(const std::string& name, const std::string& text, int min, int max) {
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    throw_env(name, "= '" + text + "' is not a whole number");
  }
  if (value < min || value > max) {
    throw_env(name, "= " + text + " is outside " + std::to_string(min) + ".." + std::to_string(max));
  }
  return value;
}

struct Named {
  std::string name;
  std::optional<std::string> value;
};

// The torchrun name when set, else the SLURM name (which may be unset too).
Named pick(const EnvLookup& lookup, const std::string& torchrun, const std::string& slurm) {
  if (auto value = lookup(torchrun)) return {torchrun, value};
  return {slurm, lookup(slurm)};
}

std::string required(const EnvLookup& lookup, const std::string& name) {
  std::optional<std::string> value = lookup(name);
  if (!value || value->empty()) throw_env(name, "is not set (the launcher sets it)");
  return *value;
}

// One entry of SLURM_TASKS_PER_NODE ("2(x3),1": nodes 0-2 run 2 tasks, node 3
// runs 1) for node `node_id`.
int tasks_on_node(const std::string& spec, int node_id) {
  const std::string name = "SLURM_TASKS_PER_NODE";
  int node = 0;
  std::size_t begin = 0;
  while (begin <= spec.size()) {
    const std::size_t comma = spec.find(',', begin);
    const std::string entry = spec.substr(begin, comma - begin);
    const std::size_t paren = entry.find("(x");
    const int tasks = parse_int(name, entry.substr(0, paren), 1, kWorldSizeMax);
    int repeat = 1;
    if (paren != std::string::npos) {
      if (entry.back() != ')') throw_env(name, "= '" + spec + "' is malformed");
      repeat = parse_int(name, entry.substr(paren + 2, entry.size() - paren - 3), 1, kWorldSizeMax);
    }
    if (node_id < node + repeat) return tasks;
    node += repeat;
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  throw_env(name, "= '" + spec + "' has no entry for SLURM_NODEID " + std::to_string(node_id));
}

Named local_world(const EnvLookup& lookup) {
  if (auto value = lookup("LOCAL_WORLD_SIZE")) return {"LOCAL_WORLD_SIZE", value};
  if (auto value = lookup("SLURM_NTASKS_PER_NODE")) return {"SLURM_NTASKS_PER_NODE", value};
  const std::optional<std::string> spec = lookup("SLURM_TASKS_PER_NODE");
  if (!spec) return {"LOCAL_WORLD_SIZE", std::nullopt};
  const std::optional<std::string> node = lookup("SLURM_NODEID");
  const int node_id = node ? parse_int("SLURM_NODEID", *node, 0, kWorldSizeMax) : 0;
  return {"SLURM_TASKS_PER_NODE", std::to_string(tasks_on_node(*spec, node_id))};
}

void parse_local(const EnvLookup& lookup, RankEnv& env) {
  const Named local_rank = pick(lookup, "LOCAL_RANK", "SLURM_LOCALID");
  const Named local_size = local_world(lookup);
  if (!local_rank.value && !local_size.value) {
    env.local_rank = env.rank;
    env.local_world_size = env.world_size;
    return;
  }
  if (!local_rank.value || !local_size.value) {
    throw_env(local_rank.value ? local_size.name : local_rank.name,
              "is not set, but " + (local_rank.value ? local_rank.name : local_size.name) +
                  " is; set both or neither");
  }
  env.local_world_size = parse_int(local_size.name, *local_size.value, 1, env.world_size);
  env.local_rank = parse_int(local_rank.name, *local_rank.value, 0, kWorldSizeMax);
  if (env.local_rank >= env.local_world_size) {
    throw_env(local_rank.name, "= " + std::to_string(env.local_rank) + " is not below " +
                                   local_size.name + " = " + std::to_string(env.local_world_size));
  }
}

void check_store_url(const std::string& url) {
  if (url.rfind(kFileScheme, 0) == 0 && url.size() > std::string(kFileScheme).size()) return;
  const std::size_t host_begin = std::string(kRedisScheme).size();
  const std::size_t colon = url.rfind(':');
  if (url.rfind(kRedisScheme, 0) == 0 && colon > host_begin && colon + 1 < url.size()) return;
  throw_env("LOCKSTEP_STORE", "= '" + url + "' is neither 'file:<dir>' nor 'redis:<host>:<port>'");
}

}  // namespace

RankEnv parse_rank_env(const EnvLookup& lookup) {
  RankEnv env;
  const Named rank = pick(lookup, "RANK", "SLURM_PROCID");
  const Named world = pick(lookup, "WORLD_SIZE", "SLURM_NTASKS");
  if (!rank.value) throw_env("RANK", "is not set (nor SLURM_PROCID)");
  if (!world.value) throw_env("WORLD_SIZE", "is not set (nor SLURM_NTASKS)");
  env.world_size = parse_int(world.name, *world.value, 1, kWorldSizeMax);
  env.rank = parse_int(rank.name, *rank.value, 0, kWorldSizeMax);
  if (env.rank >= env.world_size) {
    throw_env(rank.name, "= " + std::to_string(env.rank) + " is not below " + world.name + " = " +
                             std::to_string(env.world_size));
  }
  parse_local(lookup, env);
  env.job_dir = required(lookup, "LOCKSTEP_JOB_DIR");
  env.store_url = lookup("LOCKSTEP_STORE").value_or(kFileScheme + env.job_dir + "/store");
  check_store_url(env.store_url);
  env.job_id = required(lookup, "LOCKSTEP_JOB_ID");
  env.job_token = required(lookup, "LOCKSTEP_JOB_TOKEN");
  if (const auto generation = lookup("LOCKSTEP_GENERATION")) {
    env.generation = static_cast<std::uint32_t>(
        parse_int("LOCKSTEP_GENERATION", *generation, 0, static_cast<int>(kJobGenerationMax)));
  }
  return env;
}

RankEnv read_rank_env() {
  return parse_rank_env([](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

std::shared_ptr<Store> open_store(const RankEnv& env) { return open_store(env.store_url, env.job_id); }

std::shared_ptr<Store> open_store(const std::string& store_url, const std::string& job_id) {
  check_store_url(store_url);
  const std::size_t file_prefix = std::string(kFileScheme).size();
  if (store_url.rfind(kFileScheme, 0) == 0) {
    return std::make_shared<FileStore>(store_url.substr(file_prefix));
  }
  const std::string address = store_url.substr(std::string(kRedisScheme).size());
  const std::size_t colon = address.rfind(':');
  RedisStoreOptions options;
  options.host = address.substr(0, colon);
  options.port = parse_int("LOCKSTEP_STORE (port)", address.substr(colon + 1), 1, 65535);
  options.key_namespace = job_id;
  return std::make_shared<RedisStore>(std::move(options));
}

}  // namespace lockstep
