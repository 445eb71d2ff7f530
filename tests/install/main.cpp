// main.cpp: the install consumer: uses shrink through its umbrella header and checks a result.
#include <shrink/shrink.hpp>
#include <vector>

int main() {
  std::vector<float> a{1, 2, 3}, b{4, 5, 6};
  shrink::tensor_view<const float, 1> va(a.data(), {a.size()});
  const float d = shrink::kernels::dot(va.span(), std::span<const float>(b));
  return d == 32.0f ? 0 : 1;
}
