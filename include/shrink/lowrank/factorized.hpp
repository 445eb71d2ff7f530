// factorized.hpp: lowrank::factorized, a matrix W ≈ A·B held as two dense factors, with expand, apply and costs.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/tensor_view.hpp"

namespace shrink::lowrank {

/// W (m×n) ≈ A·B with A (m×r) and B (r×n), so y = W·x is computed as y = A·(B·x) in
/// r·(m+n) multiply-adds instead of m·n. The factorizers split each singular value as
/// √σ into both factors (A = U_r·√Σ_r, B = √Σ_r·V_rᵀ): both factors then have the same
/// scale per rank component, which keeps later quantization of either factor balanced
/// (docs/lowrank.md). `singular_values` holds the r kept σ (descending), for reports.
struct factorized {
  tensor<float, 2> a;                   ///< m × r, row-major
  tensor<float, 2> b;                   ///< r × n, row-major
  std::vector<float> singular_values;  ///< the r kept singular values, descending

  [[nodiscard]] index_t rows() const noexcept { return a.extent(0); }
  [[nodiscard]] index_t cols() const noexcept { return b.extent(1); }
  [[nodiscard]] index_t rank() const noexcept { return a.extent(1); }

  /// Stored parameters r·(m + n).
  [[nodiscard]] std::size_t params() const noexcept {
    return static_cast<std::size_t>(rank()) * static_cast<std::size_t>(rows() + cols());
  }
  /// Bytes of the two fp32 factors (the singular values are a report, not needed to run).
  [[nodiscard]] std::size_t bytes() const noexcept { return params() * sizeof(float); }
  /// Multiply-adds of one y = A(Bx): r·n for B·x plus m·r for A·(Bx).
  [[nodiscard]] std::size_t macs() const noexcept { return params(); }

  /// The dense m × n product A·B.
  [[nodiscard]] tensor<float, 2> expand() const {
    tensor<float, 2> w(shape<2>{rows(), cols()});
    using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<row_matrix> out(w.data(), rows(), cols());
    Eigen::Map<const row_matrix> ma(a.data(), rows(), rank()), mb(b.data(), rank(), cols());
    out.noalias() = ma * mb;
    return w;
  }

  /// y = A·(B·x). `x` has n elements, `y` has m; `scratch`, when given, has r elements and
  /// makes the call allocation-free.
  void apply(std::span<const float> x, std::span<float> y, std::span<float> scratch = {}) const {
    SHRINK_REQUIRE(static_cast<index_t>(x.size()) == cols(), errc::shape_mismatch,
                   "factorized::apply: x has ", x.size(), " elements, expected ", cols());
    SHRINK_REQUIRE(static_cast<index_t>(y.size()) == rows(), errc::shape_mismatch,
                   "factorized::apply: y has ", y.size(), " elements, expected ", rows());
    std::vector<float> own;
    if (scratch.empty()) {
      own.resize(static_cast<std::size_t>(rank()));
      scratch = own;
    }
    SHRINK_REQUIRE(static_cast<index_t>(scratch.size()) >= rank(), errc::shape_mismatch,
                   "factorized::apply: scratch has ", scratch.size(), " elements, expected at least ", rank());
    using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const row_matrix> ma(a.data(), rows(), rank()), mb(b.data(), rank(), cols());
    Eigen::Map<const Eigen::VectorXf> vx(x.data(), cols());
    Eigen::Map<Eigen::VectorXf> t(scratch.data(), rank()), vy(y.data(), rows());
    t.noalias() = mb * vx;
    vy.noalias() = ma * t;
  }

  /// Convenience: y = A·(B·x) into a new vector.
  [[nodiscard]] std::vector<float> apply(std::span<const float> x) const {
    std::vector<float> y(static_cast<std::size_t>(rows()));
    apply(x, y);
    return y;
  }
};

}  // namespace shrink::lowrank
