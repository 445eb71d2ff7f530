// prune.hpp: the prune module (masks, magnitude/Taylor/global criteria, channel/N:M/block masks, schedules, structured thinning).
#pragma once

#include "prune/mask.hpp"
#include "prune/schedule.hpp"
#include "prune/select.hpp"
#include "prune/structured.hpp"
#include "prune/thinning.hpp"
#include "prune/unstructured.hpp"
