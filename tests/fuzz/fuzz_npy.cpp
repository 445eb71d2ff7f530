// fuzz_npy.cpp: libFuzzer target: the .npy parser on arbitrary bytes (all versions, orders, byte orders).
#include <shrink/io/npy.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto a = shrink::io::parse_npy({reinterpret_cast<const std::byte*>(data), size});
    if (a.count() <= (1u << 20)) (void)a.to_float();
  } catch (const shrink::error&) {
  }
  return 0;
}
