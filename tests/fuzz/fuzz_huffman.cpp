// fuzz_huffman.cpp: libFuzzer target: the Huffman stream decoder (encode/huffman.hpp) on arbitrary bytes.
#include <shrink/encode/huffman.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)shrink::encode::huffman_decode(std::span<const std::uint8_t>(data, size));
  } catch (const shrink::error&) {
  }
  return 0;
}
