// codebook.hpp: the codebook module (1-D k-means weight sharing, packed indices, centroid fine-tuning, product quantization).
#pragma once

#include "codebook/finetune.hpp"
#include "codebook/indexed.hpp"
#include "codebook/kmeans1d.hpp"
#include "codebook/pq.hpp"
