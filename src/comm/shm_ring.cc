#include "lockstep/shm_ring.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <string>
#include <thread>

#include "comm/shm_ring_layout.h"
#include "comm/shm_wait.h"
#include "lockstep/assert.h"
#include "lockstep/clock.h"
#include "lockstep/error.h"
#include "lockstep/single_owner.h"

namespace lockstep {

using comm_detail::FutexPair;
using comm_detail::SegmentView;

namespace {

// Where POSIX shared memory lives on Linux; statvfs'd before creating.
constexpr const char* kShmMountPath = "/dev/shm";
// open() polls for the creator's segment at this period (no futex exists
// before the segment is mapped).
constexpr std::chrono::milliseconds kOpenPollPeriod{1};

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

void check_name_field(const char* field, const std::string& value) {
  if (value.empty() || value.size() > kShmRingNameBytesMax ||
      !std::all_of(value.begin(), value.end(), is_name_char)) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("shm ring ") + field + " '" + value + "' must be 1.." +
                    std::to_string(kShmRingNameBytesMax) + " characters of [A-Za-z0-9_.-]");
  }
}

void check_options(const ShmRingOptions& options) {
  check_name_field("job_id", options.job_id);
  check_name_field("channel_name", options.channel_name);
  const auto fail = [&](const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, "shm ring '" + options.channel_name + "': " + what);
  };
  if (options.readers < 1 || options.readers > kShmRingReadersMax) {
    fail("readers " + std::to_string(options.readers) + " outside [1, " +
         std::to_string(kShmRingReadersMax) + "]");
  }
  if (options.slots < 1 || options.slots > kShmRingSlotsMax) {
    fail("slots " + std::to_string(options.slots) + " outside [1, " + std::to_string(kShmRingSlotsMax) + "]");
  }
  if (options.slot_payload_bytes < 1 || options.slot_payload_bytes > kShmRingSlotPayloadBytesMax) {
    fail("slot_payload_bytes " + std::to_string(options.slot_payload_bytes) + " outside [1, " +
         std::to_string(kShmRingSlotPayloadBytesMax) + "]");
  }
  if (options.spin < std::chrono::microseconds(0) || options.spin > kShmRingSpinMax) {
    fail("spin " + std::to_string(options.spin.count()) + " us outside [0, " +
         std::to_string(kShmRingSpinMax.count()) + "] us");
  }
}

std::string errno_text(const char* call, const std::string& name) {
  return std::string(call) + "(" + name + ") failed: " + std::strerror(errno);
}

void check_free_space(const std::string& name, std::size_t bytes_needed) {
  struct statvfs stats {};
  if (::statvfs(kShmMountPath, &stats) != 0) {
    throw Error(ErrorCode::kResource, errno_text("statvfs", kShmMountPath));
  }
  const std::uint64_t bytes_free = std::uint64_t{stats.f_bavail} * stats.f_frsize;
  if (bytes_free < bytes_needed) {
    throw Error(ErrorCode::kResource,
                "shm ring " + name + " needs " + std::to_string(bytes_needed) + " bytes but " +
                    kShmMountPath + " has " + std::to_string(bytes_free) +
                    " free (raise the tmpfs size, e.g. docker --shm-size, or use fewer/smaller slots)");
  }
}

std::int64_t deadline_after(std::chrono::milliseconds timeout) {
  return steady_clock().now_ns() + std::chrono::nanoseconds(timeout).count();
}

}  // namespace

std::string shm_ring_segment_name(const ShmRingOptions& options) {
  check_name_field("job_id", options.job_id);
  check_name_field("channel_name", options.channel_name);
  return "/lockstep-" + options.job_id + "-g" + std::to_string(options.generation) + "-" + options.channel_name;
}

std::size_t shm_ring_segment_bytes(const ShmRingOptions& options) {
  check_options(options);
  return comm_detail::slots_offset(static_cast<std::size_t>(options.readers)) +
         std::size_t{options.slots} * comm_detail::slot_stride_bytes(options.slot_payload_bytes);
}

// One mapping of the segment, shared by the ShmRing and its endpoints.
struct ShmRing::Mapping {
  std::string name;
  std::uint8_t* base = nullptr;
  std::size_t bytes = 0;
  bool creator = false;
  std::int64_t spin_ns = 0;

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (base != nullptr) ::munmap(base, bytes);
    if (creator) ::shm_unlink(name.c_str());
  }
  SegmentView view() const { return SegmentView{base}; }
};

namespace {

// Maps `bytes` of fd read-write. Closes fd either way.
std::uint8_t* map_segment(int fd, std::size_t bytes, const std::string& name) {
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int saved_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    errno = saved_errno;
    throw Error(ErrorCode::kResource, errno_text("mmap", name));
  }
  return static_cast<std::uint8_t*>(base);
}

void initialise_segment(SegmentView view, const ShmRingOptions& options) {
  // The memory is fresh from tmpfs (all zero); construct the atomics in place.
  auto* header = new (view.base) comm_detail::SegmentHeader{};
  new (&view.writer()) comm_detail::WriterLine{};
  new (&view.space()) comm_detail::SpaceLine{};
  for (int i = 0; i < options.readers; ++i) new (&view.reader(i)) comm_detail::ReaderLine{};
  header->magic = comm_detail::kShmRingMagic;
  header->layout_version = comm_detail::kShmRingLayoutVersion;
  header->readers = static_cast<std::uint32_t>(options.readers);
  header->slots = options.slots;
  header->slot_stride_bytes =
      static_cast<std::uint32_t>(comm_detail::slot_stride_bytes(options.slot_payload_bytes));
  header->slot_payload_bytes = options.slot_payload_bytes;
  header->creator_pid.store(static_cast<std::int32_t>(::getpid()), std::memory_order_relaxed);
  // Publishes every plain field above to an opener that acquire-loads ready.
  header->ready.store(1, std::memory_order_release);
}

}  // namespace

namespace {

bool pid_alive(std::int32_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// True when `name` is an initialised lockstep ring whose creator and every
// claimed endpoint are dead processes. Anything unreadable, foreign, or still
// being created counts as alive: the sweep only removes what it can prove
// abandoned.
bool ring_abandoned(const std::string& name) {
  const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  struct stat stats {};
  const std::size_t size = ::fstat(fd, &stats) == 0 ? static_cast<std::size_t>(stats.st_size) : 0;
  // The header and the reader lines at most: the slots are never read.
  const std::size_t mapped = std::min(size, comm_detail::slots_offset(kShmRingReadersMax));
  void* base = mapped >= comm_detail::slots_offset(1)
                   ? ::mmap(nullptr, mapped, PROT_READ, MAP_SHARED, fd, 0)
                   : MAP_FAILED;
  ::close(fd);
  if (base == MAP_FAILED) return false;
  const SegmentView view{static_cast<std::uint8_t*>(base)};
  const comm_detail::SegmentHeader& h = view.header();
  bool abandoned = h.magic == comm_detail::kShmRingMagic && h.layout_version == comm_detail::kShmRingLayoutVersion &&
                   h.ready.load(std::memory_order_acquire) == 1 && h.readers <= kShmRingReadersMax &&
                   comm_detail::slots_offset(h.readers) <= mapped && !pid_alive(h.creator_pid.load()) &&
                   !pid_alive(h.writer_pid.load());
  for (std::uint32_t i = 0; abandoned && i < h.readers; ++i) abandoned = !pid_alive(view.reader(i).pid.load());
  ::munmap(base, mapped);
  return abandoned;
}

}  // namespace

std::size_t sweep_dead_shm_rings() {
  std::size_t removed = 0;
  std::size_t examined = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(kShmMountPath, error)) {
    if (++examined > kShmSweepEntriesMax) break;
    const std::string file = entry.path().filename().string();
    if (!file.starts_with("lockstep-")) continue;
    const std::string name = "/" + file;
    if (ring_abandoned(name) && ::shm_unlink(name.c_str()) == 0) ++removed;
  }
  return removed;
}

ShmRing ShmRing::create(const ShmRingOptions& options) {
  sweep_dead_shm_rings();
  auto mapping = std::make_shared<Mapping>();
  mapping->name = shm_ring_segment_name(options);
  mapping->bytes = shm_ring_segment_bytes(options);
  mapping->spin_ns = std::chrono::nanoseconds(options.spin).count();
  check_free_space(mapping->name, mapping->bytes);
  const int fd = ::shm_open(mapping->name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    const bool exists = errno == EEXIST;
    throw Error(ErrorCode::kResource,
                errno_text("shm_open", mapping->name) +
                    (exists ? " (left over by a crashed job? remove /dev/shm" + mapping->name + ")" : ""));
  }
  mapping->creator = true;  // from here on the destructor unlinks the name
  // posix_fallocate reserves the tmpfs pages now, so running out of space is
  // an error here instead of a SIGBUS on first touch.
  const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(mapping->bytes));
  if (rc != 0) {
    ::close(fd);
    throw Error(ErrorCode::kResource, "posix_fallocate(" + mapping->name + ", " +
                                          std::to_string(mapping->bytes) + " bytes) failed: " +
                                          std::strerror(rc));
  }
  mapping->base = map_segment(fd, mapping->bytes, mapping->name);
  initialise_segment(mapping->view(), options);
  return ShmRing(std::move(mapping));
}

namespace {

// An fd of the segment once it exists at its final size, -1 while it does
// not exist yet or the creator is still sizing it.
int try_open_segment(const std::string& name, std::size_t bytes) {
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    throw Error(ErrorCode::kResource, errno_text("shm_open", name));
  }
  struct stat stats {};
  if (::fstat(fd, &stats) != 0) {
    ::close(fd);
    throw Error(ErrorCode::kResource, errno_text("fstat", name));
  }
  const auto size = static_cast<std::size_t>(stats.st_size);
  if (size == bytes) return fd;
  ::close(fd);
  if (size == 0) return -1;
  throw Error(ErrorCode::kInvalidArgument, "shm ring " + name + " is " + std::to_string(size) +
                                               " bytes but these options imply " +
                                               std::to_string(bytes) + " (readers/slots/slot size differ)");
}

void wait_or_timeout(std::int64_t deadline_ns, const std::string& name, const char* what,
                     std::chrono::milliseconds timeout) {
  if (steady_clock().now_ns() >= deadline_ns) {
    throw Error(ErrorCode::kTimeout, "shm ring " + name + " " + what + " within " +
                                         std::to_string(timeout.count()) + " ms");
  }
  std::this_thread::sleep_for(kOpenPollPeriod);
}

void check_geometry(SegmentView view, const ShmRingOptions& options, const std::string& name) {
  const comm_detail::SegmentHeader& h = view.header();
  if (h.magic != comm_detail::kShmRingMagic || h.layout_version != comm_detail::kShmRingLayoutVersion ||
      h.readers != static_cast<std::uint32_t>(options.readers) || h.slots != options.slots ||
      h.slot_payload_bytes != options.slot_payload_bytes) {
    throw Error(ErrorCode::kInvalidArgument,
                "shm ring " + name + " has layout v" + std::to_string(h.layout_version) + ", readers " +
                    std::to_string(h.readers) + ", slots " + std::to_string(h.slots) +
                    ", slot_payload_bytes " + std::to_string(h.slot_payload_bytes) +
                    "; expected v" + std::to_string(comm_detail::kShmRingLayoutVersion) + ", " +
                    std::to_string(options.readers) + ", " + std::to_string(options.slots) + ", " +
                    std::to_string(options.slot_payload_bytes));
  }
}

}  // namespace

ShmRing ShmRing::open(const ShmRingOptions& options, std::chrono::milliseconds timeout) {
  auto mapping = std::make_shared<Mapping>();
  mapping->name = shm_ring_segment_name(options);
  mapping->bytes = shm_ring_segment_bytes(options);
  mapping->spin_ns = std::chrono::nanoseconds(options.spin).count();
  const std::int64_t deadline_ns = deadline_after(timeout);
  int fd = -1;
  while ((fd = try_open_segment(mapping->name, mapping->bytes)) < 0) {
    wait_or_timeout(deadline_ns, mapping->name, "did not appear", timeout);
  }
  mapping->base = map_segment(fd, mapping->bytes, mapping->name);
  while (mapping->view().header().ready.load(std::memory_order_acquire) != 1) {
    wait_or_timeout(deadline_ns, mapping->name, "was not initialised", timeout);
  }
  check_geometry(mapping->view(), options, mapping->name);
  return ShmRing(std::move(mapping));
}

ShmRing::ShmRing(std::shared_ptr<Mapping> mapping) : mapping_(std::move(mapping)) {}
ShmRing::ShmRing(ShmRing&&) noexcept = default;
ShmRing& ShmRing::operator=(ShmRing&&) noexcept = default;
ShmRing::~ShmRing() = default;

const std::string& ShmRing::segment_name() const { return mapping_->name; }
std::size_t ShmRing::segment_bytes() const { return mapping_->bytes; }

namespace {

// State shared by both endpoint kinds: the mapping, the owner rule, cancel.
class ShmEndpoint : public Channel {
 public:
  ShmEndpoint(std::shared_ptr<void> keep_alive, SegmentView view, std::string name,
              std::int64_t spin_ns, std::string role)
      : keep_alive_(std::move(keep_alive)),
        view_(view),
        name_(std::move(name)),
        role_(std::move(role)),
        spin_ns_(spin_ns),
        owner_("shm ring " + name_ + " " + role_) {}

  void cancel() noexcept override {
    comm_detail::SegmentHeader& header = view_.header();
    header.cancelled_by_pid.store(::getpid(), std::memory_order_relaxed);
    header.cancelled.store(1, std::memory_order_seq_cst);
    // Wake every sleeper on both sides unconditionally: cancel is rare.
    view_.writer().data_futex.fetch_add(1, std::memory_order_seq_cst);
    comm_detail::futex_wake_all(view_.writer().data_futex);
    view_.space().space_futex.fetch_add(1, std::memory_order_seq_cst);
    comm_detail::futex_wake_all(view_.space().space_futex);
  }
  std::size_t frame_bytes_max() const override { return view_.header().slot_payload_bytes; }
  std::string describe() const override { return "shm:" + name_ + " " + role_; }

 protected:
  void check_not_cancelled() const {
    const comm_detail::SegmentHeader& header = view_.header();
    if (header.cancelled.load(std::memory_order_acquire) == 0) return;
    throw Error(ErrorCode::kAborted,
                describe() + ": channel cancelled by pid " +
                    std::to_string(header.cancelled_by_pid.load(std::memory_order_relaxed)));
  }
  [[noreturn]] void throw_wrong_role(const char* call) const {
    throw Error(ErrorCode::kInvalidArgument, describe() + ": " + call + "() is not allowed on this endpoint");
  }

  std::shared_ptr<void> keep_alive_;  // the Mapping; unmapped after the last endpoint
  SegmentView view_;
  const std::string name_;
  const std::string role_;
  const std::int64_t spin_ns_;
  SingleOwner owner_;
};

class ShmWriter final : public ShmEndpoint {
 public:
  ShmWriter(std::shared_ptr<void> keep_alive, SegmentView view, std::string name, std::int64_t spin_ns)
      : ShmEndpoint(std::move(keep_alive), view, std::move(name), spin_ns, "writer"),
        next_seq_(view.writer().published.load(std::memory_order_acquire)) {}

  ~ShmWriter() override {
    // Readers drain what was published, then see the writer gone.
    view_.header().writer_pid.store(comm_detail::kPidDetached, std::memory_order_seq_cst);
    view_.writer().data_futex.fetch_add(1, std::memory_order_seq_cst);
    comm_detail::futex_wake_all(view_.writer().data_futex);
  }

  void publish(std::span<const std::uint8_t> frame, std::chrono::milliseconds timeout) override {
    owner_.check();
    check_not_cancelled();
    if (frame.size() > frame_bytes_max()) {
      throw Error(ErrorCode::kLimit, describe() + ": frame of " + std::to_string(frame.size()) +
                                         " bytes exceeds the slot payload of " +
                                         std::to_string(frame_bytes_max()) + " bytes");
    }
    const std::uint64_t slots = view_.header().slots;
    // The readers' ack lines are written by other cores: read them only when
    // the space seen last time is used up (most publishes touch none).
    const auto has_space = [&] {
      if (next_seq_ < space_until_) return true;
      space_until_ = slowest_reader().acked + slots;
      return next_seq_ < space_until_;
    };
    const auto recheck = [&] {
      check_not_cancelled();
      check_blocking_readers_alive();
    };
    if (!has_space() &&
        !comm_detail::wait_until(FutexPair{view_.space().space_futex, view_.space().space_sleepers},
                                 spin_ns_, deadline_after(timeout), steady_clock(), has_space, recheck)) {
      const SlowestReader slowest = slowest_reader();
      throw Error(ErrorCode::kTimeout,
                  describe() + ": frame " + std::to_string(next_seq_) + " not accepted within " +
                      std::to_string(timeout.count()) + " ms: ring full (" + std::to_string(slots) +
                      " slots), slowest reader " + std::to_string(slowest.index) + " acked " +
                      std::to_string(slowest.acked) +
                      (slowest.pid == comm_detail::kPidUnclaimed ? " (never attached)"
                                                                 : " (pid " + std::to_string(slowest.pid) + ")"));
    }
    std::uint8_t* slot = view_.slot(next_seq_);
    const comm_detail::SlotHeader slot_header{frame.size()};
    std::memcpy(slot, &slot_header, sizeof slot_header);
    if (!frame.empty()) std::memcpy(slot + sizeof slot_header, frame.data(), frame.size());
    ++next_seq_;
    view_.writer().published.store(next_seq_, std::memory_order_seq_cst);
    comm_detail::notify_progress(FutexPair{view_.writer().data_futex, view_.writer().data_sleepers});
  }

  std::size_t receive(std::span<std::uint8_t>, std::chrono::milliseconds) override {
    throw_wrong_role("receive");
  }

 private:
  struct SlowestReader {
    int index;
    std::uint64_t acked;
    std::int32_t pid;
  };

  SlowestReader slowest_reader() const {
    SlowestReader slowest{0, UINT64_MAX, 0};
    const int readers = static_cast<int>(view_.header().readers);
    for (int i = 0; i < readers; ++i) {
      const std::uint64_t acked = view_.reader(i).acked.load(std::memory_order_acquire);
      if (acked < slowest.acked) {
        slowest = {i, acked, view_.reader(i).pid.load(std::memory_order_relaxed)};
      }
    }
    return slowest;
  }

  // Only readers that hold the writer back matter: one that left after
  // reading everything it will ever need is no failure until it blocks us.
  void check_blocking_readers_alive() const {
    const std::uint64_t slots = view_.header().slots;
    const int readers = static_cast<int>(view_.header().readers);
    for (int i = 0; i < readers; ++i) {
      if (view_.reader(i).acked.load(std::memory_order_acquire) + slots > next_seq_) continue;
      const std::int32_t pid = view_.reader(i).pid.load(std::memory_order_acquire);
      const bool detached = pid == comm_detail::kPidDetached;
      if (detached || (pid > 0 && !comm_detail::process_alive(pid))) {
        throw Error(ErrorCode::kPeerFailure,
                    describe() + ": reader " + std::to_string(i) +
                        (detached ? " detached" : " (pid " + std::to_string(pid) + ") died") +
                        " with the ring full; frame " + std::to_string(next_seq_) + " cannot be published");
      }
    }
  }

  std::uint64_t next_seq_;  // frames published by this writer
  std::uint64_t space_until_ = 0;  // frames below this had a free slot at the last look at the acks
};

class ShmReader final : public ShmEndpoint {
 public:
  ShmReader(std::shared_ptr<void> keep_alive, SegmentView view, std::string name, std::int64_t spin_ns,
            int index)
      : ShmEndpoint(std::move(keep_alive), view, std::move(name), spin_ns,
                    "reader " + std::to_string(index)),
        index_(index),
        next_seq_(view.reader(index).acked.load(std::memory_order_acquire)) {}

  ~ShmReader() override {
    view_.reader(index_).pid.store(comm_detail::kPidDetached, std::memory_order_seq_cst);
    view_.space().space_futex.fetch_add(1, std::memory_order_seq_cst);
    comm_detail::futex_wake_all(view_.space().space_futex);
  }

  void publish(std::span<const std::uint8_t>, std::chrono::milliseconds) override {
    throw_wrong_role("publish");
  }

  bool frame_waiting() override {
    owner_.check();
    return view_.writer().published.load(std::memory_order_acquire) > next_seq_;
  }

  std::size_t receive(std::span<std::uint8_t> buffer, std::chrono::milliseconds timeout) override {
    owner_.check();
    if (buffer.size() < frame_bytes_max()) {
      throw Error(ErrorCode::kInvalidArgument,
                  describe() + ": receive buffer of " + std::to_string(buffer.size()) +
                      " bytes is smaller than frame_bytes_max " + std::to_string(frame_bytes_max()));
    }
    check_not_cancelled();
    const auto has_frame = [&] {
      return view_.writer().published.load(std::memory_order_acquire) > next_seq_;
    };
    const auto recheck = [&] {
      check_not_cancelled();
      check_writer_alive();
    };
    if (!has_frame() &&
        !comm_detail::wait_until(FutexPair{view_.writer().data_futex, view_.writer().data_sleepers},
                                 spin_ns_, deadline_after(timeout), steady_clock(), has_frame, recheck)) {
      throw Error(ErrorCode::kTimeout, describe() + ": no frame " + std::to_string(next_seq_) +
                                           " within " + std::to_string(timeout.count()) +
                                           " ms (writer pid " + std::to_string(writer_pid()) + ")");
    }
    const std::size_t frame_bytes = copy_out(buffer);
    ++next_seq_;
    view_.reader(index_).acked.store(next_seq_, std::memory_order_seq_cst);
    comm_detail::notify_progress(FutexPair{view_.space().space_futex, view_.space().space_sleepers});
    return frame_bytes;
  }

 private:
  std::int32_t writer_pid() const { return view_.header().writer_pid.load(std::memory_order_acquire); }

  std::size_t copy_out(std::span<std::uint8_t> buffer) const {
    const std::uint8_t* slot = view_.slot(next_seq_);
    comm_detail::SlotHeader slot_header{};
    std::memcpy(&slot_header, slot, sizeof slot_header);
    // The segment is writable by other processes: never trust a size from it.
    if (slot_header.frame_bytes > frame_bytes_max()) {
      throw Error(ErrorCode::kInternal, describe() + ": slot of frame " + std::to_string(next_seq_) +
                                            " claims " + std::to_string(slot_header.frame_bytes) +
                                            " bytes (segment corrupted)");
    }
    if (slot_header.frame_bytes > 0) {
      std::memcpy(buffer.data(), slot + sizeof slot_header, slot_header.frame_bytes);
    }
    return slot_header.frame_bytes;
  }

  void check_writer_alive() const {
    const std::int32_t pid = writer_pid();
    if (pid == comm_detail::kPidDetached) {
      throw Error(ErrorCode::kPeerFailure,
                  describe() + ": writer detached after " + std::to_string(next_seq_) + " frames");
    }
    if (pid > 0 && !comm_detail::process_alive(pid)) {
      throw Error(ErrorCode::kPeerFailure, describe() + ": writer (pid " + std::to_string(pid) +
                                               ") died after " + std::to_string(next_seq_) + " frames");
    }
  }

  const int index_;
  std::uint64_t next_seq_;  // frames this reader has received
};

// Records this process as the endpoint's owner in the segment (one claim per
// endpoint across all processes).
void claim(std::atomic<std::int32_t>& pid_word, const std::string& what) {
  std::int32_t expected = comm_detail::kPidUnclaimed;
  if (!pid_word.compare_exchange_strong(expected, ::getpid(), std::memory_order_acq_rel)) {
    throw Error(ErrorCode::kInvalidArgument,
                what + " already claimed (pid word " + std::to_string(expected) + ")");
  }
}

}  // namespace

std::unique_ptr<Channel> ShmRing::writer() {
  claim(mapping_->view().header().writer_pid, "shm ring " + mapping_->name + " writer");
  return std::make_unique<ShmWriter>(mapping_, mapping_->view(), mapping_->name, mapping_->spin_ns);
}

std::unique_ptr<Channel> ShmRing::reader(int reader_index) {
  const int readers = static_cast<int>(mapping_->view().header().readers);
  if (reader_index < 0 || reader_index >= readers) {
    throw Error(ErrorCode::kInvalidArgument, "shm ring " + mapping_->name + ": reader index " +
                                                 std::to_string(reader_index) + " outside [0, " +
                                                 std::to_string(readers) + ")");
  }
  const std::string what = "shm ring " + mapping_->name + " reader " + std::to_string(reader_index);
  claim(mapping_->view().reader(reader_index).pid, what);
  return std::make_unique<ShmReader>(mapping_, mapping_->view(), mapping_->name, mapping_->spin_ns,
                                     reader_index);
}

}  // namespace lockstep
