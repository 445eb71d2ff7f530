// binary.hpp: the binarization module (sign / stochastic / XNOR-Net scales / ternary weights, bit-packed formats); kernels in kernels.hpp.
#pragma once

#include "core.hpp"
#include "binary/binarize.hpp"
#include "binary/bit_matrix.hpp"
#include "binary/conv_filter.hpp"
#include "binary/ternary.hpp"
