// quant.hpp: the quantization module (schemes, granularity, rounding, observers, fake quant, packing, fp16/bf16, BN folding).
#pragma once

#include "quant/batch_norm.hpp"
#include "quant/fake_quant.hpp"
#include "quant/float16.hpp"
#include "quant/observers.hpp"
#include "quant/power_of_two.hpp"
#include "quant/quantize.hpp"
#include "quant/quantized.hpp"
#include "quant/requantize.hpp"
#include "quant/scheme.hpp"
