#include "lockstep/redis_store.h"

#include <hiredis/hiredis.h>

#include <optional>

#include "lockstep/error.h"
#include "store/keys.h"

namespace lockstep {

namespace {

timeval to_timeval(std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  return tv;
}

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

struct RedisStore::Connection {
  redisContext* context = nullptr;
  // Set when a command failed at the connection level: hiredis leaves such a
  // context unusable, so the next command opens a new one.
  bool broken = false;

  ~Connection() { redisFree(context); }

  static std::unique_ptr<Connection> open(const RedisStoreOptions& options,
                                          const std::string& where) {
    const timeval tv = to_timeval(options.io_timeout);
    auto connection = std::make_unique<Connection>();
    connection->context = redisConnectWithTimeout(options.host.c_str(), options.port, tv);
    if (connection->context == nullptr || connection->context->err != 0) {
      throw Error(ErrorCode::kStore,
                  "store " + where + ": cannot connect: " +
                      (connection->context != nullptr ? connection->context->errstr : "out of memory"));
    }
    if (redisSetTimeout(connection->context, tv) != REDIS_OK) {
      throw Error(ErrorCode::kStore, "store " + where + ": cannot set the I/O timeout");
    }
    return connection;
  }

  Reply command(const std::vector<const char*>& argv, const std::vector<std::size_t>& argv_bytes,
                const std::string& key, const std::string& where) {
    // Debian's hiredis declares argv non-const but only reads it.
    void* raw = redisCommandArgv(context, static_cast<int>(argv.size()),
                                 const_cast<const char**>(argv.data()), argv_bytes.data());
    if (raw == nullptr) {
      broken = true;
      throw Error(ErrorCode::kStore, "store " + where + ": " + argv.front() + " of key '" + key +
                                         "' failed: " + context->errstr);
    }
    Reply reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      throw Error(ErrorCode::kStore, "store " + where + ": server refused " + argv.front() +
                                         " of key '" + key + "': " + std::string(reply->str, reply->len));
    }
    return reply;
  }
};

RedisStore::RedisStore(RedisStoreOptions options) : options_(std::move(options)) {
  if (options_.port < 1 || options_.port > 65535) {
    throw Error(ErrorCode::kInvalidArgument, "RedisStore: port " + std::to_string(options_.port) +
                                                 " is outside 1..65535");
  }
  if (options_.io_timeout.count() <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "RedisStore: io_timeout must be > 0 ms");
  }
  if (!options_.key_namespace.empty()) store_detail::check_key(options_.key_namespace, describe());
  std::lock_guard lock(mutex_);
  connection_locked();
}

RedisStore::~RedisStore() = default;

RedisStore::Connection& RedisStore::connection_locked() {
  if (connection_ == nullptr || connection_->broken) connection_ = Connection::open(options_, describe());
  return *connection_;
}

std::string RedisStore::full_key(const std::string& key) const {
  store_detail::check_key(key, describe());
  return options_.key_namespace.empty() ? key : options_.key_namespace + "/" + key;
}

void RedisStore::set(const std::string& key, const Bytes& value) {
  const std::string full = full_key(key);
  store_detail::check_value(key, value, describe());
  const std::vector<const char*> argv{"SET", full.c_str(), reinterpret_cast<const char*>(value.data())};
  const std::vector<std::size_t> argv_bytes{3, full.size(), value.size()};
  std::lock_guard lock(mutex_);
  connection_locked().command(argv, argv_bytes, key, describe());
}

Bytes RedisStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  const std::string full = full_key(key);
  const auto try_get = [&]() -> std::optional<Bytes> {
    const std::vector<const char*> argv{"GET", full.c_str()};
    const std::vector<std::size_t> argv_bytes{3, full.size()};
    std::lock_guard lock(mutex_);
    const Reply reply = connection_locked().command(argv, argv_bytes, key, describe());
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    if (reply->type != REDIS_REPLY_STRING) {
      throw Error(ErrorCode::kStore, "store " + describe() + ": GET of key '" + key +
                                         "' returned a non-string reply");
    }
    const auto* data = reinterpret_cast<const std::uint8_t*>(reply->str);
    return Bytes(data, data + reply->len);
  };
  return store_detail::poll_for_key(key, timeout, kRedisPollMax, describe(), try_get);
}

bool RedisStore::check(const std::vector<std::string>& keys) {
  if (keys.empty()) return true;
  std::vector<std::string> full_keys;
  for (const std::string& key : keys) full_keys.push_back(full_key(key));
  std::vector<const char*> argv{"EXISTS"};
  std::vector<std::size_t> argv_bytes{6};
  for (const std::string& full : full_keys) {
    argv.push_back(full.c_str());
    argv_bytes.push_back(full.size());
  }
  std::lock_guard lock(mutex_);
  const Reply reply = connection_locked().command(argv, argv_bytes, keys.front(), describe());
  if (reply->type != REDIS_REPLY_INTEGER) {
    throw Error(ErrorCode::kStore, "store " + describe() + ": EXISTS returned a non-integer reply");
  }
  // EXISTS counts a key once per mention, so duplicates in `keys` still add up.
  return reply->integer == static_cast<long long>(keys.size());
}

std::string RedisStore::describe() const {
  return "redis:" + options_.host + ":" + std::to_string(options_.port) + "/" + options_.key_namespace;
}

}  // namespace lockstep
