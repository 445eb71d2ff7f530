// encode.hpp: the encode module (length-limited canonical Huffman streams, relative sparse-index gaps).
#pragma once

#include "encode/huffman.hpp"
#include "encode/relative_index.hpp"
