#include "backends/nccl/unique_id.h"

#include <cstdint>
#include <cstring>

#include "backends/nccl/cuda_check.h"
#include "lockstep/error.h"

namespace lockstep::cuda_detail {

ncclUniqueId exchange_unique_id(Store& store, const std::string& key, bool publish,
                                std::chrono::milliseconds timeout, const std::string& who,
                                const std::string& publisher) {
  ncclUniqueId id{};
  if (publish) {
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(&id);
    store.set(key, Bytes(bytes, bytes + sizeof(id)));
    return id;
  }
  Bytes value;
  try {
    value = store.get(key, timeout);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kTimeout) throw;
    throw Error(ErrorCode::kTimeout, who + ": " + publisher + " never published the unique id: " + error.what());
  }
  if (value.size() != sizeof(id)) {
    throw Error(ErrorCode::kBackend, who + ": key " + key + " holds " + std::to_string(value.size()) +
                                         " bytes, expected " + std::to_string(sizeof(id)));
  }
  std::memcpy(&id, value.data(), sizeof(id));
  return id;
}

}  // namespace lockstep::cuda_detail
