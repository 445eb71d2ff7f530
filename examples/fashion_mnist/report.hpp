// report.hpp: the demo's result table (Markdown) and its plot (SVG: accuracy against compressed size).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace demo {

struct result_row {
  std::string technique;
  double accuracy = 0.0;        ///< on the test images, in [0, 1]
  std::size_t bytes = 0;        ///< weight bytes as stored (all side data included)
  double ratio = 0.0;           ///< fp32 bytes / bytes
  double ms_shrink = 0.0;       ///< inference time for the test set with shrink's kernels
  double ms_dense = 0.0;        ///< the same network as dense fp32 (Eigen)
  std::string kernel;           ///< which shrink kernel ran it
  std::string note;
};

inline std::string markdown_table(const std::vector<result_row>& rows, double baseline_accuracy) {
  std::ostringstream out;
  out << "| technique | test accuracy | Δ vs fp32 | weight bytes | vs fp32 | time, shrink kernels | time, dense fp32 | "
         "kernel | note |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n";
  char buf[512];
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "| %s | %.2f%% | %+.2f | %zu | %.1f× | %.1f ms | %.1f ms | %s | %s |\n",
                  r.technique.c_str(), 100.0 * r.accuracy, 100.0 * (r.accuracy - baseline_accuracy), r.bytes, r.ratio,
                  r.ms_shrink, r.ms_dense, r.kernel.c_str(), r.note.c_str());
    out << buf;
  }
  return out.str();
}

/// Scatter plot, x = compressed weight bytes (log scale), y = accuracy, one labelled point per row.
inline std::string svg_plot(const std::vector<result_row>& rows) {
  const double w = 940, h = 460, left = 70, right = 400, top = 30, bottom = 60;
  double xmin = 1e300, xmax = 0, ymin = 1, ymax = 0;
  for (const auto& r : rows) {
    xmin = std::min(xmin, static_cast<double>(r.bytes));
    xmax = std::max(xmax, static_cast<double>(r.bytes));
    ymin = std::min(ymin, r.accuracy);
    ymax = std::max(ymax, r.accuracy);
  }
  xmin = std::pow(10.0, std::floor(std::log10(xmin)));
  xmax = std::pow(10.0, std::ceil(std::log10(xmax)));
  ymin = std::floor(ymin * 100.0 - 1.0) / 100.0;
  ymax = std::ceil(ymax * 100.0 + 0.5) / 100.0;
  auto px = [&](double b) { return left + (w - left - right) * (std::log10(b) - std::log10(xmin)) / (std::log10(xmax) - std::log10(xmin)); };
  auto py = [&](double a) { return h - bottom - (h - top - bottom) * (a - ymin) / (ymax - ymin); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
  s << "<text x='" << w / 2 - 120 << "' y='18' font-size='14'>LeNet-300-100 on Fashion-MNIST: accuracy vs size</text>\n";
  for (double d = xmin; d <= xmax * 1.001; d *= 10) {
    s << "<line x1='" << px(d) << "' y1='" << top << "' x2='" << px(d) << "' y2='" << h - bottom
      << "' stroke='#ddd'/><text x='" << px(d) - 20 << "' y='" << h - bottom + 18 << "'>" << d / 1000 << " KB</text>\n";
  }
  for (double a = ymin; a <= ymax + 1e-9; a += 0.01) {
    s << "<line x1='" << left << "' y1='" << py(a) << "' x2='" << w - right << "' y2='" << py(a)
      << "' stroke='#eee'/><text x='" << 20 << "' y='" << py(a) + 4 << "'>" << std::lround(a * 100) << "%</text>\n";
  }
  s << "<text x='" << (w - right) / 2 << "' y='" << h - 15 << "'>weight bytes (log scale)</text>\n";
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"};
  int i = 0;
  for (const auto& r : rows) {
    const char* c = colors[i % 12];
    s << "<circle cx='" << px(static_cast<double>(r.bytes)) << "' cy='" << py(r.accuracy) << "' r='5' fill='" << c << "'/>\n";
    s << "<rect x='" << w - right + 15 << "' y='" << top + 18 * i << "' width='10' height='10' fill='" << c << "'/>";
    s << "<text x='" << w - right + 30 << "' y='" << top + 18 * i + 10 << "'>" << r.technique << "</text>\n";
    ++i;
  }
  s << "</svg>\n";
  return s.str();
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace demo
