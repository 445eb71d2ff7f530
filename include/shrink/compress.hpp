// compress.hpp: the compress module (compressed-file format, storage schemes, recipes, mixed-precision allocation, whole-file pipeline).
#pragma once

#include "io.hpp"
#include "compress/allocator.hpp"
#include "compress/format.hpp"
#include "compress/pipeline.hpp"
#include "compress/recipe.hpp"
#include "compress/schemes.hpp"
