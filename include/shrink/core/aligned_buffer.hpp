// aligned_buffer.hpp: aligned_buffer<T>, a 64-byte aligned, zero-initialised, movable array (the storage of every format).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

#include "config.hpp"
#include "error.hpp"
#include "huge_pages.hpp"

namespace shrink {

/// Alignment of every owned buffer: one cache line, and one AVX-512 register.
inline constexpr std::size_t k_alignment = 64;

/// Tag for buffers whose every element the caller writes before reading: skips the zero
/// fill (a whole extra write pass over a large format).
struct uninitialized_t {
  explicit uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

/// Tag for large buffers that kernels stream from memory on every call (packed weights):
/// the buffer asks the OS for 2 MiB pages (prefer_huge_pages) before it is zero-filled, so
/// the fill's first touch maps huge pages. Zero-initialised like the default.
struct huge_pages_t {
  explicit huge_pages_t() = default;
};
inline constexpr huge_pages_t huge_pages{};

/// A contiguous array of trivially copyable `T`, aligned to k_alignment and
/// zero-initialised; copyable (deep copy) and movable. Formats own their bytes through it.
template <class T>
class aligned_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "aligned_buffer: T must be trivially copyable");

 public:
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t count) : data_(allocate(count, true)), size_(count) {}
  /// Elements left uninitialised: the caller must write each one before it is read.
  aligned_buffer(std::size_t count, uninitialized_t) : data_(allocate(count, false)), size_(count) {}
  /// Zero-initialised, in 2 MiB pages where the OS grants them (see huge_pages_t).
  aligned_buffer(std::size_t count, huge_pages_t) : data_(allocate(count, true, true)), size_(count) {}
  aligned_buffer(std::span<const T> values) : aligned_buffer(values.size(), uninitialized) {  // NOLINT
    if (!values.empty()) std::memcpy(data_.get(), values.data(), values.size_bytes());
  }
  aligned_buffer(const aligned_buffer& other) : aligned_buffer(other.span()) {}
  aligned_buffer& operator=(const aligned_buffer& other) {
    if (this != &other) *this = aligned_buffer(other);
    return *this;
  }
  aligned_buffer(aligned_buffer&&) noexcept = default;
  aligned_buffer& operator=(aligned_buffer&&) noexcept = default;

  [[nodiscard]] T* data() noexcept { return data_.get(); }
  [[nodiscard]] const T* data() const noexcept { return data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::span<T> span() noexcept { return {data_.get(), size_}; }
  [[nodiscard]] std::span<const T> span() const noexcept { return {data_.get(), size_}; }
  T& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_.get()[i]; }
  T* begin() noexcept { return data(); }
  T* end() noexcept { return data() + size_; }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + size_; }

 private:
  struct deleter {
    void operator()(T* p) const noexcept { ::operator delete(p, std::align_val_t{k_alignment}); }
  };

  static T* allocate(std::size_t count, bool zero, bool huge = false) {
    if (count == 0) return nullptr;
    SHRINK_REQUIRE(count <= std::numeric_limits<std::size_t>::max() / sizeof(T), errc::overflow,
                   "aligned_buffer: ", count, " elements of ", sizeof(T), " bytes overflow size_t");
    const std::size_t bytes = (count * sizeof(T) + k_alignment - 1) / k_alignment * k_alignment;
    void* p = ::operator new(bytes, std::align_val_t{k_alignment});
    if (huge) prefer_huge_pages(p, bytes);  // before any byte is touched
    // The padding up to the next 64 bytes is always zero, so vector code that reads whole
    // cache lines past the last element sees zeros.
    if (zero)
      std::memset(p, 0, bytes);
    else
      std::memset(static_cast<char*>(p) + count * sizeof(T), 0, bytes - count * sizeof(T));
    return static_cast<T*>(p);
  }

  std::unique_ptr<T, deleter> data_;
  std::size_t size_ = 0;
};

}  // namespace shrink
