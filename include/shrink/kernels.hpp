// kernels.hpp: the kernels module (run-time ISA dispatch and the kernels that run each compressed format).
#pragma once

#include "core.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/dot.hpp"
#include "kernels/int8_gemm.hpp"
#include "kernels/int8_pack.hpp"
#include "kernels/output_stage.hpp"
#include "kernels/x86_reduce.hpp"
#include "kernels/binary_conv.hpp"
#include "kernels/bit_pack.hpp"
#include "kernels/ternary_gemm.hpp"
#include "kernels/xnor_gemm.hpp"
#include "kernels/xnor_gemv.hpp"
