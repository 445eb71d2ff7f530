// metrics.hpp: the metrics module (sizes, reconstruction errors, sparsity, op counts).
#pragma once

#include "metrics/errors.hpp"
#include "metrics/ops.hpp"
#include "metrics/sizes.hpp"
#include "metrics/sparsity.hpp"
