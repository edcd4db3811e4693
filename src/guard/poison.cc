#include "lockstep/poison.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace lockstep {

namespace {
// The key exists when we read it; this only bounds a store that misbehaves.
constexpr std::chrono::milliseconds kPoisonReadTimeout{200};
}  // namespace

std::string poison_key(int rank) { return "poison/" + std::to_string(rank); }

void raise_poison(Store& store, const PoisonMark& mark) {
  const nlohmann::json value = {{"rank", mark.rank},
                                {"code", mark.code},
                                {"message", mark.message.substr(0, kPoisonMessageBytesMax)}};
  const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  store.set(poison_key(mark.rank), Bytes(text.begin(), text.end()));
}

std::optional<PoisonMark> find_poisoned_peer(Store& store, int self_rank, int world_size) {
  for (int peer = 0; peer < world_size; ++peer) {
    if (peer == self_rank) continue;
    const std::string key = poison_key(peer);
    if (!store.check({key})) continue;
    PoisonMark mark;
    mark.rank = peer;
    const Bytes raw = store.get(key, kPoisonReadTimeout);
    const auto value = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
    if (value.is_object() && value.value("code", nlohmann::json()).is_string() &&
        value.value("message", nlohmann::json()).is_string()) {
      mark.code = value["code"].get<std::string>();
      mark.message = value["message"].get<std::string>();
    } else {
      mark.code = "unknown";
      mark.message = "undecodable poison mark (" + std::to_string(raw.size()) + " bytes)";
    }
    return mark;
  }
  return std::nullopt;
}

}  // namespace lockstep
