// shrink.hpp: umbrella header; includes every module header.
#pragma once

#include "core.hpp"
#include "binary.hpp"
#include "codebook.hpp"
#include "compress.hpp"
#include "distill.hpp"
#include "encode.hpp"
#include "io.hpp"
#include "kernels.hpp"
#include "lowrank.hpp"
#include "metrics.hpp"
#include "prune.hpp"
#include "quant.hpp"
#include "sparse.hpp"
