// sparse.hpp: the sparse module (CSR fp32/int8/codebook, BSR fp32/int8, N:M and bitmask formats; see docs/sparse.md).
#pragma once

#include "core.hpp"
#include "sparse/bitmask.hpp"
#include "sparse/bsr.hpp"
#include "sparse/bsr_int8.hpp"
#include "sparse/common.hpp"
#include "sparse/csr.hpp"
#include "sparse/nm.hpp"
