// io.hpp: the io module (safetensors and .npy files, fp16/bf16 conversion, memory-mapped input, atomic output).
#pragma once

#include "core.hpp"
#include "io/dtype.hpp"
#include "io/file.hpp"
#include "io/half.hpp"
#include "io/npy.hpp"
#include "io/safetensors.hpp"
