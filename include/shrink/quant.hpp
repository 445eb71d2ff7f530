// quant.hpp: the quantization module (schemes, granularity, rounding, observers, fake quant, packing, fp16/bf16, BN folding).
#pragma once

#include "quant/float16.hpp"
#include "quant/quantize.hpp"
#include "quant/quantized.hpp"
#include "quant/scheme.hpp"
