// file.hpp: a read-only memory-mapped file whose pages can be released, and an output file that appears only when complete (temporary + rename).
#pragma once

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace shrink::io {

/// A whole file mapped read-only (POSIX mmap). Movable, not copyable. `bytes()` is valid for
/// the object's lifetime; `release` tells the kernel a range is no longer needed, so a
/// streaming pass over a file larger than memory keeps its resident set small.
class mapped_file {
 public:
  mapped_file() = default;
  explicit mapped_file(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    SHRINK_REQUIRE(fd >= 0, errc::io, "mapped_file: cannot open '", path.string(), "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      detail::raise(errc::io, "mapped_file: '", path.string(), "' is not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        detail::raise(errc::io, "mapped_file: cannot map '", path.string(), "': ", std::strerror(err));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
  }
  mapped_file(mapped_file&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() { unmap(); }

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  /// Drops the pages wholly inside [offset, offset + length) from this process's resident
  /// set (madvise MADV_DONTNEED; they are re-read from the file if touched again).
  void release(std::size_t offset, std::size_t length) const noexcept {
    if (data_ == nullptr || offset >= size_) return;
    length = std::min(length, size_ - offset);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t begin = (offset + page - 1) / page * page;
    const std::size_t end = (offset + length) / page * page;
    if (end > begin) ::madvise(const_cast<std::byte*>(data_) + begin, end - begin, MADV_DONTNEED);
  }

 private:
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Temporary outputs that a SIGINT / SIGTERM must remove (install_signal_cleanup). A fixed
/// table of slots so the handler only reads plain memory and calls unlink (async-signal-safe):
/// a slot is free (0), being filled or emptied (1), or holds a live path (2).
namespace file_impl {
inline constexpr int k_cleanup_slots = 16;
inline constexpr std::size_t k_cleanup_path = 4096;
struct cleanup_slot {
  std::atomic<int> state{0};
  char path[k_cleanup_path] = {};
};
inline cleanup_slot g_cleanup[k_cleanup_slots];

inline int register_temporary(const std::string& path) {
  if (path.size() >= k_cleanup_path) return -1;
  for (int i = 0; i < k_cleanup_slots; ++i) {
    int free = 0;
    if (g_cleanup[i].state.compare_exchange_strong(free, 1)) {
      std::memcpy(g_cleanup[i].path, path.c_str(), path.size() + 1);
      g_cleanup[i].state.store(2);
      return i;
    }
  }
  return -1;  // table full: that output is still removed on errors, just not on signals
}
inline void unregister_temporary(int slot) {
  if (slot >= 0) g_cleanup[slot].state.store(0);
}
extern "C" inline void cleanup_on_signal(int sig) {
  for (auto& s : g_cleanup)
    if (s.state.load() == 2) ::unlink(s.path);
  ::signal(sig, SIG_DFL);  // then die of the signal, so the exit status says which
  ::raise(sig);
}
}  // namespace file_impl

/// Makes SIGINT and SIGTERM remove every atomic_output's temporary file before the process
/// ends (the tool calls this once at start-up). Without it, an error still removes the
/// temporary (the destructor) but a signal would leave it behind.
inline void install_signal_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = file_impl::cleanup_on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

/// An output file written under a temporary name in the destination's directory and renamed
/// onto the destination by `commit()`. Destroyed without commit (an error on the way), it
/// removes the temporary, so a failed run never leaves a partial output.
class atomic_output {
 public:
  explicit atomic_output(std::filesystem::path destination) : destination_(std::move(destination)) {
    std::string tmpl = (destination_.has_parent_path() ? destination_.parent_path() / "" : std::filesystem::path())
                           .string() +
                       "." + destination_.filename().string() + ".tmp.XXXXXX";
    fd_ = ::mkstemp(tmpl.data());
    SHRINK_REQUIRE(fd_ >= 0, errc::io, "atomic_output: cannot create a temporary file next to '",
                   destination_.string(), "': ", std::strerror(errno));
    temporary_ = tmpl;
    slot_ = file_impl::register_temporary(tmpl);
  }
  atomic_output(const atomic_output&) = delete;
  atomic_output& operator=(const atomic_output&) = delete;
  ~atomic_output() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temporary_.c_str());
    file_impl::unregister_temporary(slot_);
  }

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const std::filesystem::path& temporary() const noexcept { return temporary_; }

  /// Writes all of `bytes` at the current position.
  void write(std::span<const std::byte> bytes) {
    const std::byte* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, std::min<std::size_t>(left, std::size_t{1} << 30));
      if (n < 0 && errno == EINTR) continue;
      SHRINK_REQUIRE(n > 0, errc::io, "atomic_output: write to '", temporary_.string(), "' failed: ",
                     std::strerror(errno));
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  void write(std::string_view text) { write(std::as_bytes(std::span<const char>(text.data(), text.size()))); }

  /// Closes and renames the temporary onto the destination (atomic on POSIX).
  void commit() {
    // No fsync: the guarantee is about failed runs (never a partial OUT), not power loss.
    SHRINK_REQUIRE(::fchmod(fd_, 0644) == 0, errc::io, "atomic_output: cannot set permissions of '",
                   temporary_.string(), "': ", std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    SHRINK_REQUIRE(rc == 0, errc::io, "atomic_output: closing '", temporary_.string(), "' failed");
    SHRINK_REQUIRE(::rename(temporary_.c_str(), destination_.c_str()) == 0, errc::io, "atomic_output: cannot rename '",
                   temporary_.string(), "' to '", destination_.string(), "': ", std::strerror(errno));
    committed_ = true;
    file_impl::unregister_temporary(slot_);
    slot_ = -1;
  }

 private:
  std::filesystem::path destination_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  int slot_ = -1;
  bool committed_ = false;
};

}  // namespace shrink::io
