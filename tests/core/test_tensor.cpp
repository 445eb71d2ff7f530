// test_tensor.cpp: tensor_view / tensor semantics, checked access, sub-views, Eigen interop both ways, and their errors.
#include <catch2/catch.hpp>
#include <numeric>
#include <shrink/core.hpp>
#include <vector>
#include <support/errors.hpp>

using shrink::testing::code_of;

using shrink::errc;
using shrink::index_t;

TEST_CASE("tensor_view: row-major indexing, rows, slices and const conversion") {
  std::vector<float> buf(12);
  std::iota(buf.begin(), buf.end(), 0.0f);
  shrink::tensor_view<float, 2> v(buf.data(), {3, 4});
  CHECK(v.size() == 12);
  CHECK(v.stride(0) == 4);
  CHECK(v.stride(1) == 1);
  CHECK(v(2, 1) == 9.0f);
  CHECK(v.is_contiguous());

  auto r = v.row(1);
  STATIC_REQUIRE(decltype(r)::rank() == 1);
  CHECK(r(3) == 7.0f);

  auto cols = v.slice(1, 1, 3);  // columns 1..2: strided
  CHECK(cols.shape() == shrink::shape<2>{3, 2});
  CHECK(cols(2, 0) == 9.0f);
  CHECK_FALSE(cols.is_contiguous());
  CHECK(code_of([&] { (void)cols.span(); }) == errc::invalid_argument);

  shrink::tensor_view<const float, 2> c = v;  // T -> const T
  v(0, 0) = 42.0f;
  CHECK(c(0, 0) == 42.0f);

  std::size_t rows = 3, cols_n = 4;  // unsigned extents are accepted
  shrink::tensor_view<const float, 2> w(buf.data(), {rows, cols_n});
  CHECK(w.extent(1) == 4);
}

TEST_CASE("tensor_view: bad shapes, strides and indices are errors") {
  std::vector<float> buf(6);
  CHECK(code_of([&] { shrink::tensor_view<float, 2>(std::span<float>(buf), {3, 4}); }) == errc::out_of_range);
  CHECK(code_of([&] { shrink::tensor_view<float, 2>(std::span<float>(buf), {2, 3}, {4, 1}); }) == errc::out_of_range);
  CHECK(code_of([&] { shrink::tensor_view<float, 2>(nullptr, {2, 3}); }) == errc::invalid_argument);
  CHECK(code_of([&] { shrink::tensor_view<float, 2>(buf.data(), {-1, 3}); }) == errc::invalid_argument);
  CHECK(code_of([&] { shrink::tensor_view<float, 2>(buf.data(), {2, 3}, {-3, 1}); }) == errc::invalid_argument);
  shrink::tensor_view<float, 2> v(std::span<float>(buf), {2, 3});
  CHECK(code_of([&] { (void)v.at(2, 0); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)v.at(0, -1); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)v.row(5); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)v.slice(1, 2, 4); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)v.slice(2, 0, 1); }) == errc::out_of_range);
  CHECK(code_of([&] { (void)shrink::shape<2>{index_t{1} << 40, index_t{1} << 40}.size(); }) == errc::overflow);
  // Empty views are fine, with a null pointer too.
  shrink::tensor_view<float, 2> empty(nullptr, {0, 5});
  CHECK(empty.empty());
  CHECK(empty.required_extent() == 0);
}

TEST_CASE("tensor: owning, aligned, zeroed, deep copy, movable") {
  shrink::tensor<float, 3> t({2, 3, 5});
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % shrink::k_alignment == 0);
  CHECK(std::all_of(t.span().begin(), t.span().end(), [](float x) { return x == 0.0f; }));
  t(1, 2, 4) = 7.0f;
  CHECK(t.view()(1, 2, 4) == 7.0f);
  shrink::tensor<float, 3> copy = t;
  copy(1, 2, 4) = 1.0f;
  CHECK(t(1, 2, 4) == 7.0f);
  const float* p = t.data();
  shrink::tensor<float, 3> moved = std::move(t);
  CHECK(moved.data() == p);
  CHECK(code_of([&] { (void)moved.at(2, 0, 0); }) == errc::out_of_range);

  // A tensor from a strided view copies element by element.
  std::vector<int> buf{0, 1, 2, 3, 4, 5, 6, 7, 8};
  shrink::tensor_view<const int, 2> v(buf.data(), {3, 3});
  shrink::tensor<int, 2> column(v.slice(1, 1, 2));
  CHECK(column.shape() == shrink::shape<2>{3, 1});
  CHECK(column(2, 0) == 7);
}

TEST_CASE("eigen interop: views of Eigen matrices and maps of views, zero copy, both layouts") {
  Eigen::MatrixXf col_major(3, 4);  // Eigen's default: column-major
  col_major.setRandom();
  auto v = shrink::as_view(col_major);
  CHECK(v.data() == col_major.data());
  CHECK(v.stride(0) == 1);
  CHECK(v.stride(1) == 3);
  CHECK(v(2, 3) == col_major(2, 3));

  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> row_major(3, 4);
  row_major.setRandom();
  auto rv = shrink::as_view(row_major);
  CHECK(rv.is_contiguous());
  CHECK(rv(1, 2) == row_major(1, 2));

  auto m = shrink::as_eigen(v);
  m(1, 1) = 5.0f;  // writes through to the Eigen matrix
  CHECK(col_major(1, 1) == 5.0f);
  CHECK((m - col_major).cwiseAbs().maxCoeff() == 0.0f);

  const Eigen::MatrixXf& cref = col_major;
  auto cv = shrink::as_view(cref);
  STATIC_REQUIRE(std::is_same_v<decltype(cv), shrink::tensor_view<const float, 2>>);

  Eigen::Map<Eigen::MatrixXf> map(col_major.data(), 3, 4);
  auto mv = shrink::as_view(map);
  CHECK(mv(0, 3) == col_major(0, 3));

  Eigen::VectorXf vec = Eigen::VectorXf::LinSpaced(5, 0, 4);
  auto vv = shrink::as_vector_view(vec);
  CHECK(vv.extent(0) == 5);
  CHECK(vv(4) == 4.0f);
  CHECK(shrink::as_eigen(vv).sum() == 10.0f);

  // Rank mismatch: a matrix is not a vector.
  CHECK(code_of([&] { (void)shrink::as_vector_view(col_major); }) == errc::shape_mismatch);
  CHECK(code_of([&] { (void)shrink::as_eigen_vector(v); }) == errc::shape_mismatch);
  CHECK(shrink::as_eigen_vector(v.slice(0, 1, 2)).size() == 4);
}

TEST_CASE("error: code, stable names and message text") {
  try {
    SHRINK_REQUIRE(false, errc::invalid_argument, "quantize: bits must be in [2, 8], got ", 9);
    FAIL("no throw");
  } catch (const std::runtime_error& e) {  // derives from std::runtime_error
    CHECK(std::string(e.what()) == "quantize: bits must be in [2, 8], got 9");
    CHECK(dynamic_cast<const shrink::error&>(e).code() == errc::invalid_argument);
  }
  CHECK(shrink::to_string(errc::shape_mismatch) == "shape_mismatch");
  CHECK(shrink::to_string(errc::format) == "format");
}

TEST_CASE("aligned_buffer: zero-filled by default, uninitialised on request, deep copies") {
  shrink::aligned_buffer<int> zeroed(100);
  CHECK(std::all_of(zeroed.begin(), zeroed.end(), [](int v) { return v == 0; }));
  shrink::aligned_buffer<int> raw(100, shrink::uninitialized);
  CHECK(raw.size() == 100);
  CHECK(reinterpret_cast<std::uintptr_t>(raw.data()) % shrink::k_alignment == 0);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<int>(i);
  shrink::aligned_buffer<int> copy = raw;
  CHECK(copy[99] == 99);
  CHECK(copy.data() != raw.data());
  shrink::aligned_buffer<int> empty(0, shrink::uninitialized);
  CHECK(empty.empty());
}

TEST_CASE("aligned_buffer: the huge-page request is zero-filled and aligned like the default") {
  // 5 MiB: spans at least one whole 2 MiB extent, so the hint is really issued (whether the
  // OS grants huge pages is not observable portably; the contents and alignment are).
  const std::size_t n = (std::size_t{5} << 20) / sizeof(float) + 3;
  shrink::aligned_buffer<float> big(n, shrink::huge_pages);
  REQUIRE(big.size() == n);
  CHECK(reinterpret_cast<std::uintptr_t>(big.data()) % shrink::k_alignment == 0);
  CHECK(std::all_of(big.begin(), big.end(), [](float v) { return v == 0.0f; }));
  shrink::aligned_buffer<float> none(0, shrink::huge_pages);
  CHECK(none.empty());
  shrink::aligned_buffer<std::uint8_t> small(10, shrink::huge_pages);  // below 2 MiB: no hint
  CHECK(std::all_of(small.begin(), small.end(), [](std::uint8_t v) { return v == 0; }));
}
