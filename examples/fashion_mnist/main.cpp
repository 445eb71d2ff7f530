// main.cpp: the Fashion-MNIST demo: trains LeNet-300-100, compresses it with every shrink technique, runs each on its kernel.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "dataset.hpp"
#include "mlp.hpp"
#include "report.hpp"
#include "techniques.hpp"

namespace {

struct options {
  std::filesystem::path data = demo::k_default_data_dir;
  std::filesystem::path out = "fashion_mnist_out";
  bool quick = false;
  std::uint64_t seed = 7;
};

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") o.data = value();
    else if (a == "--out") o.out = value();
    else if (a == "--quick") o.quick = true;
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--help" || a == "-h") {
      std::puts("usage: fashion_mnist [--data DIR] [--out DIR] [--quick] [--seed N]\n"
                "  --data DIR  folder with the four Fashion-MNIST *-ubyte.gz files\n"
                "              (default /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)\n"
                "  --out DIR   where results.md and accuracy_vs_size.svg go (default ./fashion_mnist_out)\n"
                "  --quick     a subset and fewer epochs; checks accuracy thresholds (used by the tests)\n"
                "  --seed N    seed for initialisation, shuffling and stochastic steps (default 7)");
      std::exit(0);
    } else {
      throw std::runtime_error("unknown argument " + a + " (see --help)");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const options opt = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  const demo::dataset data =
      demo::load_fashion_mnist(opt.data, opt.quick ? 12000 : 60000, opt.quick ? 2000 : 10000);
  std::printf("Fashion-MNIST: %td training and %td test images (%s)\n", data.train.images.rows(),
              data.test.images.rows(), opt.quick ? "quick mode" : "full");
  demo::experiment_config cfg{opt.quick, opt.seed};
  const std::vector<demo::result_row> rows = demo::run_all(data, cfg, opt.out);

  const double base = rows.front().accuracy;
  const std::string table = demo::markdown_table(rows, base);
  std::filesystem::create_directories(opt.out);
  demo::write_text(opt.out / "results.md", table);
  demo::write_text(opt.out / "accuracy_vs_size.svg", demo::svg_plot(rows));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%s\nTotal time %.1f s. Wrote %s and %s\n"
              "Compressed models: %s/lenet_*.safetensors (try: shrink inspect FILE --against lenet_fp32.safetensors)\n",
              table.c_str(), seconds,
              std::filesystem::absolute(opt.out / "results.md").c_str(),
              std::filesystem::absolute(opt.out / "accuracy_vs_size.svg").c_str(),
              std::filesystem::absolute(opt.out).c_str());
  const bool met = demo::check_thresholds(rows, cfg);
  return met || !opt.quick ? 0 : 1;  // only the quick run (a test) fails on a missed threshold
} catch (const std::exception& e) {
  std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
  return 2;
}
