// The embedded default rendezvous store: one directory per job on a local
// filesystem, one file per key. Every rank of a job on this host opens the same
// directory (normally <job_dir>/store).
//
// set() writes a temporary file and renames it over the key, so a reader sees
// either no value or a whole value, never a torn one. get() polls with a short
// bounded backoff until the key exists or its timeout expires.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "lockstep/store.h"

namespace lockstep {

// get() polls no less often than this once its backoff has grown, so a key
// published by a peer is seen within about this much time.
inline constexpr std::chrono::milliseconds kFileStorePollMax{20};

class FileStore final : public Store {
 public:
  // Creates `dir` (and its parents) when absent. Blocking (filesystem I/O).
  // Throws Error{kStore} naming the directory when it cannot be created or is
  // not a directory, Error{kInvalidArgument} when dir is empty.
  explicit FileStore(std::string dir);

  FileStore(const FileStore&) = delete;
  FileStore& operator=(const FileStore&) = delete;

  // Store contract (store.h). Keys may contain '/' inside (prefix stores):
  // each '/' becomes a subdirectory. Thread- and process-safe.
  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override;  // "file:<dir>"

 private:
  std::string dir_;
};

}  // namespace lockstep
