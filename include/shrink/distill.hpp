// distill.hpp: the distillation module (softened softmax, Hinton loss and gradient, feature hint loss).
#pragma once

#include "distill/loss.hpp"
#include "distill/softmax.hpp"
