// fuzz_safetensors.cpp: libFuzzer target: the safetensors header parser on arbitrary bytes, then every tensor read as float.
#include <shrink/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto h = shrink::io::parse_safetensors(file);
    for (const auto& t : h.tensors) {
      if (t.count() > (1u << 20)) continue;
      std::vector<float> out(static_cast<std::size_t>(t.count()));
      shrink::io::to_float(t.type, file.data() + h.data_start + t.begin, out.size(), out.data());
    }
  } catch (const shrink::error&) {
  }
  return 0;
}
