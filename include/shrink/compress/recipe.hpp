// recipe.hpp: recipes (presets or JSON) with per-tensor overrides by name glob, resolved to one scheme per tensor.
#pragma once

#include <fnmatch.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "schemes.hpp"

namespace shrink::compress {

/// An override: tensors whose name matches `pattern` (fnmatch glob, e.g. "*.bias",
/// "layers.0.*"; or the words "@first" / "@last": the first / last tensor of rank >= 2 in
/// file order) use `options`. Later rules win.
struct rule {
  std::string pattern;
  scheme_options options;
};

struct recipe {
  std::string name = "int8";
  scheme_options base;          ///< scheme of every tensor no rule matches
  std::vector<rule> rules;
  bool keep_1d = true;          ///< keep rank <= 1 tensors (biases, norms) in their original dtype
};

namespace recipe_impl {

inline scheme_options parse_scheme(std::string_view text) {
  scheme_options o;
  if (text == "float" || text == "none") {
    o.scheme = "float";
    return o;
  }
  if (text == "int8") {
    o.scheme = "int8";
    return o;
  }
  // int<b>-g<G>, e.g. int4-g32; int<b> alone means group 128.
  if (text.rfind("int", 0) == 0) {
    int bits = 0;
    long long group = 128;
    const std::string s(text);
    int consumed = 0;
    if (std::sscanf(s.c_str(), "int%d-g%lld%n", &bits, &group, &consumed) == 2 && consumed == static_cast<int>(s.size())) {
    } else if (std::sscanf(s.c_str(), "int%d%n", &bits, &consumed) == 1 && consumed == static_cast<int>(s.size())) {
      group = 128;
    } else {
      bits = 0;
    }
    SHRINK_REQUIRE(bits >= 2 && bits <= 8 && group >= 1, errc::invalid_argument, "recipe: '", text,
                   "' is not int<bits 2..8>[-g<group >= 1>]");
    o.scheme = "int";
    o.bits = bits;
    o.group = group;
    return o;
  }
  if (text == "codebook4" || text == "codebook") {
    o.scheme = "codebook";
    o.k = 16;
    return o;
  }
  if (text == "2:4") {
    o.scheme = "nm";
    o.n = 2;
    o.m = 4;
    return o;
  }
  if (text == "deep-compression") {
    o.scheme = "deep";
    o.k = 32;
    o.sparsity = 0.9;
    return o;
  }
  if (text == "xnor") {
    o.scheme = "xnor";
    return o;
  }
  // lowrank:energy=E with E in (0, 1]; "lowrank" alone means 0.9.
  if (text.rfind("lowrank", 0) == 0) {
    const std::string s(text);
    double e = 0.9;
    int consumed = 0;
    const bool ok = s == "lowrank" ||
                    (std::sscanf(s.c_str(), "lowrank:energy=%lf%n", &e, &consumed) == 1 && consumed == static_cast<int>(s.size()));
    SHRINK_REQUIRE(ok && e > 0.0 && e <= 1.0, errc::invalid_argument, "recipe: '", text,
                   "' is not lowrank:energy=E with E in (0, 1]");
    o.scheme = "lowrank";
    o.energy = e;
    return o;
  }
  detail::raise(errc::invalid_argument, "recipe: unknown preset '", text,
                "'; expected int8, int<b>-g<G> (e.g. int4-g32, int4-g128), codebook4, 2:4, deep-compression, xnor, "
                "lowrank:energy=E, float, or a JSON recipe file");
}

inline scheme_options options_from_json(const nlohmann::json& j, const std::string& who) {
  SHRINK_REQUIRE(j.is_object(), errc::invalid_argument, who, ": expected an object");
  scheme_options o;
  if (auto p = j.find("preset"); p != j.end()) {
    SHRINK_REQUIRE(p->is_string(), errc::invalid_argument, who, ": \"preset\" must be a string");
    o = parse_scheme(p->get<std::string>());
  }
  if (auto s = j.find("scheme"); s != j.end()) {
    SHRINK_REQUIRE(s->is_string(), errc::invalid_argument, who, ": \"scheme\" must be a string");
    const auto name = s->get<std::string>();
    SHRINK_REQUIRE(name == "int8" || name == "int" || name == "float", errc::invalid_argument, who,
                   ": \"scheme\" must be int8, int or float (use \"preset\" for the others), got '", name, "'");
    o.scheme = name;
  }
  if (auto b = j.find("bits"); b != j.end()) {
    SHRINK_REQUIRE(b->is_number_integer() && *b >= 2 && *b <= 8, errc::invalid_argument, who, ": \"bits\" must be in [2, 8]");
    o.bits = b->get<int>();
  }
  if (auto g = j.find("group"); g != j.end()) {
    SHRINK_REQUIRE(g->is_number_integer() && *g >= 1, errc::invalid_argument, who, ": \"group\" must be >= 1");
    o.group = g->get<std::int64_t>();
  }
  if (o.scheme == "int8") o.bits = 8;
  return o;
}

}  // namespace recipe_impl

/// A recipe from a preset name ("int8", "int4-g32", "int4-g128", "float", ...).
inline recipe preset(std::string_view text) {
  recipe r;
  r.name = std::string(text);
  r.base = recipe_impl::parse_scheme(text);
  return r;
}

/// A recipe from JSON text: {"preset": "int4-g32"} or {"scheme": "int", "bits": 4, "group": 32},
/// plus "keep_1d": bool and "overrides": [{"pattern": "...", "preset"|"scheme"...: ...}, ...].
inline recipe parse_recipe_json(std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    detail::raise(errc::invalid_argument, "recipe: invalid JSON: ", e.what());
  }
  recipe r;
  r.name = "json";
  r.base = recipe_impl::options_from_json(j, "recipe");
  if (auto k = j.find("keep_1d"); k != j.end()) {
    SHRINK_REQUIRE(k->is_boolean(), errc::invalid_argument, "recipe: \"keep_1d\" must be true or false");
    r.keep_1d = k->get<bool>();
  }
  if (auto o = j.find("overrides"); o != j.end()) {
    SHRINK_REQUIRE(o->is_array(), errc::invalid_argument, "recipe: \"overrides\" must be an array");
    for (const auto& item : *o) {
      const auto p = item.find("pattern");
      SHRINK_REQUIRE(item.is_object() && p != item.end() && p->is_string(), errc::invalid_argument,
                     "recipe: each override needs a string \"pattern\"");
      r.rules.push_back({p->get<std::string>(), recipe_impl::options_from_json(item, "recipe override")});
    }
  }
  return r;
}

/// A preset name, or a path to a JSON recipe file (anything ending in .json).
inline recipe load_recipe(const std::string& spec) {
  if (spec.size() > 5 && spec.substr(spec.size() - 5) == ".json") {
    std::ifstream in(spec);
    SHRINK_REQUIRE(in.good(), errc::io, "recipe: cannot open '", spec, "'");
    std::stringstream ss;
    ss << in.rdbuf();
    recipe r = parse_recipe_json(ss.str());
    r.name = spec;
    return r;
  }
  return preset(spec);
}

/// The options for one tensor. `first` / `last` say whether it is the first / last tensor
/// of rank >= 2 in file order (for the @first / @last patterns).
inline scheme_options resolve(const recipe& r, const std::string& name, std::size_t rank, bool first, bool last) {
  scheme_options o = r.base;
  if (rank <= 1 && r.keep_1d) o.scheme = "float";
  for (const auto& rule : r.rules) {
    const bool hit = rule.pattern == "@first" ? first
                     : rule.pattern == "@last" ? last
                                               : ::fnmatch(rule.pattern.c_str(), name.c_str(), 0) == 0;
    if (hit) o = rule.options;
  }
  return o;
}

}  // namespace shrink::compress
