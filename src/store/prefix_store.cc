#include <utility>

#include "lockstep/error.h"
#include "lockstep/store.h"
#include "store/keys.h"

namespace lockstep {
namespace {

class PrefixStore final : public Store {
 public:
  PrefixStore(std::shared_ptr<Store> base, std::string prefix)
      : base_(std::move(base)), prefix_(std::move(prefix)) {}

  void set(const std::string& key, const Bytes& value) override { base_->set(full(key), value); }

  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override {
    return base_->get(full(key), timeout);
  }

  bool check(const std::vector<std::string>& keys) override {
    std::vector<std::string> full_keys;
    full_keys.reserve(keys.size());
    for (const std::string& key : keys) full_keys.push_back(full(key));
    return base_->check(full_keys);
  }

  std::string describe() const override { return base_->describe() + "/" + prefix_; }

 private:
  // The key is checked on its own too, so a key that is only valid once
  // prefixed ("/x") is still refused.
  std::string full(const std::string& key) const {
    store_detail::check_key(key, describe());
    return prefix_ + "/" + key;
  }

  std::shared_ptr<Store> base_;
  std::string prefix_;
};

}  // namespace

std::unique_ptr<Store> make_prefix_store(std::shared_ptr<Store> base, std::string prefix) {
  if (base == nullptr) throw Error(ErrorCode::kInvalidArgument, "make_prefix_store: base store is null");
  store_detail::check_key(prefix, base->describe() + " (prefix)");
  return std::make_unique<PrefixStore>(std::move(base), std::move(prefix));
}

}  // namespace lockstep
