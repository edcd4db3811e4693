#include "lockstep/file_store.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "lockstep/error.h"
#include "store/keys.h"

namespace lockstep {
namespace {

// Every key component is percent-encoded outside [A-Za-z0-9._-] and a value
// file ends in this suffix. Because '%' itself is always encoded, a value file
// can never share a name with a directory made for a longer key ("a" beside
// "a/b") or with a temporary file.
constexpr const char* kValueSuffix = "%v";
constexpr const char* kTempPattern = "%t.XXXXXX";
// Longest file name most Linux filesystems accept.
constexpr std::size_t kFileNameBytesMax = 255;

bool plain_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

std::string encode_component(const std::string& component, const std::string& key,
                             const std::string& where) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (component.empty() || component == "." || component == "..") {
    throw Error(ErrorCode::kInvalidArgument,
                "store " + where + ": key '" + key + "' has an empty, '.' or '..' component");
  }
  std::string encoded;
  for (const char c : component) {
    if (plain_byte(c)) {
      encoded += c;
    } else {
      encoded += '%';
      encoded += kHex[static_cast<unsigned char>(c) >> 4];
      encoded += kHex[static_cast<unsigned char>(c) & 0xF];
    }
  }
  if (encoded.size() + std::strlen(kValueSuffix) > kFileNameBytesMax) {
    throw Error(ErrorCode::kLimit, "store " + where + ": a component of key '" + key +
                                       "' is too long for a file name");
  }
  return encoded;
}

// The value file of `key`: <dir>/<c1>/<c2>/.../<cn>%v.
std::filesystem::path key_path(const std::string& dir, const std::string& key,
                               const std::string& where) {
  store_detail::check_key(key, where);
  std::filesystem::path path(dir);
  std::size_t begin = 0;
  for (;;) {
    const std::size_t slash = key.find('/', begin);
    const std::string component = key.substr(begin, slash - begin);
    if (slash == std::string::npos) return path / (encode_component(component, key, where) + kValueSuffix);
    path /= encode_component(component, key, where);
    begin = slash + 1;
  }
}

[[noreturn]] void throw_io(const std::string& where, const std::string& what,
                           const std::string& path, int error_number) {
  throw Error(ErrorCode::kStore, "store " + where + ": cannot " + what + " '" + path + "': " +
                                     std::strerror(error_number));
}

void write_all(int fd, const Bytes& value, const std::string& where, const std::string& path) {
  std::size_t written = 0;
  while (written < value.size()) {
    const ssize_t n = ::write(fd, value.data() + written, value.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_io(where, "write", path, errno);
    written += static_cast<std::size_t>(n);
  }
}

// nullopt when the file does not exist (yet).
std::optional<Bytes> read_file(const std::filesystem::path& path, const std::string& where) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return std::nullopt;
  if (fd < 0) throw_io(where, "open", path, errno);
  Bytes value;
  std::uint8_t chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error_number = errno;
      ::close(fd);
      throw_io(where, "read", path, error_number);
    }
    if (n == 0) break;
    value.insert(value.end(), chunk, chunk + n);
    if (value.size() > kStoreValueBytesMax) {
      ::close(fd);
      throw Error(ErrorCode::kLimit, "store " + where + ": file '" + path.string() +
                                         "' exceeds the store value limit");
    }
  }
  ::close(fd);
  return value;
}

}  // namespace

FileStore::FileStore(std::string dir) : dir_(std::move(dir)) {
  if (dir_.empty()) throw Error(ErrorCode::kInvalidArgument, "FileStore: directory is empty");
  std::error_code error;
  std::filesystem::create_directories(dir_, error);
  if (error || !std::filesystem::is_directory(dir_)) {
    throw Error(ErrorCode::kStore, "store file:" + dir_ + ": cannot create directory: " +
                                       (error ? error.message() : "not a directory"));
  }
}

void FileStore::set(const std::string& key, const Bytes& value) {
  const std::string where = describe();
  const std::filesystem::path path = key_path(dir_, key, where);
  store_detail::check_value(key, value, where);
  std::error_code error;
  std::filesystem::create_directories(path.parent_path(), error);
  if (error) throw_io(where, "create directory", path.parent_path(), error.value());
  // Write aside, then rename over the key: readers see no value or all of it.
  std::string temp = (path.parent_path() / kTempPattern).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) throw_io(where, "create", temp, errno);
  try {
    write_all(fd, value, where, temp);
  } catch (const Error&) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  ::close(fd);
  // Over an existing key the two files swap places and the old one goes:
  // ext4 flushes a file renamed over another (auto_da_alloc), and that flush
  // queued behind other writes for up to 3 s — the emit fence rewrites the
  // stream position every chunk. Readers see the old value or the new one.
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) {
    ::unlink(temp.c_str());
    return;
  }
  // ENOENT: a new key; EINVAL: a file system without the exchange.
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int error_number = errno;
    ::unlink(temp.c_str());
    throw_io(where, "rename into", path, error_number);
  }
}

Bytes FileStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  const std::string where = describe();
  const std::filesystem::path path = key_path(dir_, key, where);
  return store_detail::poll_for_key(key, timeout, kFileStorePollMax, where,
                                    [&] { return read_file(path, where); });
}

bool FileStore::check(const std::vector<std::string>& keys) {
  const std::string where = describe();
  // Every key is validated before any is looked up, so a bad key is refused
  // whatever the others' state.
  std::vector<std::filesystem::path> paths;
  for (const std::string& key : keys) paths.push_back(key_path(dir_, key, where));
  for (const std::filesystem::path& path : paths) {
    if (::access(path.c_str(), F_OK) == 0) continue;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw_io(where, "access", path, errno);
  }
  return true;
}

std::string FileStore::describe() const { return "file:" + dir_; }

}  // namespace lockstep
