// lowrank.hpp: the low-rank module (truncated and randomized SVD, rank selection, Tucker-2 for conv kernels).
#pragma once

#include "lowrank/factorized.hpp"
#include "lowrank/randomized.hpp"
#include "lowrank/rank.hpp"
#include "lowrank/svd.hpp"
#include "lowrank/tucker.hpp"
