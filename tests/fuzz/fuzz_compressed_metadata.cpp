// fuzz_compressed_metadata.cpp: libFuzzer target: a whole compressed safetensors file: header, shrink records, and decoding every record.
#include <shrink/compress/format.hpp>
#include <shrink/compress/schemes.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto h = shrink::io::parse_safetensors(file);
    const auto recs = shrink::compress::read_records(h);
    for (const auto& r : recs) {
      if (shrink::io::checked_count(r.shape, "fuzz") > (1u << 20)) continue;
      shrink::compress::entry_bytes bytes;
      for (const auto& [role, name] : r.entries)
        for (const auto& t : h.tensors)
          if (t.name == name)
            bytes[role] = file.subspan(static_cast<std::size_t>(h.data_start + t.begin), static_cast<std::size_t>(t.nbytes()));
      (void)shrink::compress::decode(r, bytes);
    }
  } catch (const shrink::error&) {
  }
  return 0;
}
