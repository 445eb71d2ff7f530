// dataset.hpp: reads Fashion-MNIST's gzip'd IDX files (Debian's dataset-fashion-mnist) into normalised float matrices.
#pragma once

#include <zlib.h>

#include <Eigen/Core>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace demo {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct split {
  matrix images;                 ///< [n, 784], pixels scaled to [0, 1] then standardised
  std::vector<std::int32_t> labels;
};

struct dataset {
  split train, test;
};

inline constexpr const char* k_default_data_dir = "/usr/share/datasets/fashion-mnist";

namespace detail {
inline std::vector<unsigned char> read_gz(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path.string());
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw std::runtime_error("corrupt gzip stream in " + path.string());
  return out;
}

inline std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

inline split read_split(const std::filesystem::path& dir, const std::string& prefix, std::size_t limit) {
  const auto images = read_gz(dir / (prefix + "-images-idx3-ubyte.gz"));
  const auto labels = read_gz(dir / (prefix + "-labels-idx1-ubyte.gz"));
  // IDX: magic 0x00000803 (ubyte, 3 dims) then big-endian dims; labels 0x00000801.
  if (images.size() < 16 || be32(images.data()) != 0x803 || labels.size() < 8 || be32(labels.data()) != 0x801)
    throw std::runtime_error("not an IDX file pair: " + (dir / prefix).string());
  const std::size_t n = be32(images.data() + 4), rows = be32(images.data() + 8), cols = be32(images.data() + 12);
  if (be32(labels.data() + 4) != n || images.size() != 16 + n * rows * cols || labels.size() != 8 + n)
    throw std::runtime_error("IDX sizes do not match in " + (dir / prefix).string());
  const std::size_t count = std::min(n, limit), pixels = rows * cols;
  split s{matrix(static_cast<Eigen::Index>(count), static_cast<Eigen::Index>(pixels)), {}};
  s.labels.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t p = 0; p < pixels; ++p)
      s.images(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(p)) = images[16 + i * pixels + p] / 255.0f;
    s.labels[i] = labels[8 + i];
    if (s.labels[i] > 9) throw std::runtime_error("label out of range in " + (dir / prefix).string());
  }
  return s;
}
}  // namespace detail

/// Loads train and test splits (at most `train_limit` / `test_limit` images each) and
/// standardises pixels with the training set's mean and deviation (Fashion-MNIST: 0.286, 0.353).
inline dataset load_fashion_mnist(const std::filesystem::path& dir, std::size_t train_limit, std::size_t test_limit) {
  if (!std::filesystem::exists(dir / "train-images-idx3-ubyte.gz"))
    throw std::runtime_error("Fashion-MNIST not found in " + dir.string() +
                             ".\nInstall it with:  sudo apt-get install -y dataset-fashion-mnist\n"
                             "or pass --data DIR pointing at the four *-ubyte.gz files.");
  dataset d{detail::read_split(dir, "train", train_limit), detail::read_split(dir, "t10k", test_limit)};
  const float mean = d.train.images.mean();
  const float stddev = std::sqrt((d.train.images.array() - mean).square().mean());
  d.train.images = (d.train.images.array() - mean) / stddev;
  d.test.images = (d.test.images.array() - mean) / stddev;
  return d;
}

}  // namespace demo
