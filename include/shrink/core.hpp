// core.hpp: the core module (views, owning tensors, shapes, errors, bits, threads, Eigen interop).
#pragma once

#include "core/aligned_buffer.hpp"
#include "core/bits.hpp"
#include "core/config.hpp"
#include "core/eigen.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "core/tensor_view.hpp"
