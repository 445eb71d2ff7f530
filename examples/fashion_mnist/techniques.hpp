// techniques.hpp: each compression technique of the demo: how it trains (with shrink's hooks), compresses, and runs on shrink's kernels.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <shrink/shrink.hpp>
#include <thread>
#include <vector>

#include "dataset.hpp"
#include "hooks.hpp"
#include "inference.hpp"
#include "mlp.hpp"
#include "report.hpp"
#include "save.hpp"

namespace demo {

struct experiment_config {
  bool quick = false;
  std::uint64_t seed = 7;
  [[nodiscard]] int epochs(int full, int quick_epochs) const { return quick ? quick_epochs : full; }
};

/// A trained and compressed model: its row in the table, and how to run it on the test set
/// with shrink's kernels and as the equivalent dense fp32 network (timed after training).
struct outcome {
  result_row row;
  std::function<matrix(const matrix&)> run_shrink;
  std::function<matrix(const matrix&)> run_dense;
  std::shared_ptr<network> dense;  ///< the trained network with its effective weights, as fp32
};

inline std::size_t fp32_bytes(const network& n) {
  std::size_t b = 0;
  for (const auto& l : n.layers) b += static_cast<std::size_t>(l.w.size() + l.b.size()) * 4;
  return b;
}

inline std::size_t bias_bytes(const network& n) {
  std::size_t b = 0;
  for (const auto& l : n.layers) b += static_cast<std::size_t>(l.b.size()) * 4;
  return b;
}

/// The network with every hook's effective weights baked in, as plain dense fp32.
inline network dense_copy(const network& n) {
  network d;
  for (const auto& l : n.layers) {
    layer c;
    l.hook->forward(l.w, c.w);
    c.b = l.b;
    c.act = l.act;
    d.layers.push_back(std::move(c));
  }
  return d;
}

inline outcome finish(std::string name, const network& trained, std::size_t bytes, std::size_t fp32,
                      const dataset& data, std::function<matrix(const matrix&)> run_shrink, std::string kernel,
                      std::string note = "") {
  outcome o;
  o.row.technique = std::move(name);
  o.row.bytes = bytes;
  o.row.ratio = static_cast<double>(fp32) / static_cast<double>(bytes);
  o.row.kernel = std::move(kernel);
  o.row.note = std::move(note);
  o.row.accuracy = accuracy(run_shrink(data.test.images), data.test.labels);
  auto dense = std::make_shared<network>(dense_copy(trained));
  o.dense = dense;
  o.run_dense = [dense](const matrix& x) { return dense->predict(x); };
  o.run_shrink = std::move(run_shrink);
  std::printf("  %-34s %6.2f%%  %8zu bytes  (%s)\n", o.row.technique.c_str(), 100 * o.row.accuracy, bytes,
              o.row.kernel.c_str());
  std::fflush(stdout);
  return o;
}

// ---- 1. fp32 baseline -------------------------------------------------------------------
inline outcome baseline(network& net, const dataset& data, const experiment_config& cfg) {
  train(net, data.train, {cfg.epochs(12, 3), 128, 1e-3f, 2e-5f, cfg.seed});
  auto dense = std::make_shared<network>(net);
  return finish("fp32 baseline", net, fp32_bytes(net), fp32_bytes(net), data,
                [dense](const matrix& x) { return dense->predict(x); }, "Eigen fp32 GEMM");
}

// ---- 2, 3. post-training quantisation ---------------------------------------------------
inline outcome int8_ptq(const network& net, const dataset& data) {
  auto model = std::make_shared<int8_mlp>(net);
  return finish("int8 PTQ, per channel", net, model->bytes(), fp32_bytes(net), data,
                [model](const matrix& x) { return model->run(x); }, model->kernel_name());
}

inline outcome int4_ptq(const network& net, const dataset& data) {
  auto model = std::make_shared<int4_mlp>(net, 32);
  network deq = net;
  for (std::size_t i = 0; i < deq.layers.size(); ++i) deq.layers[i].w = model->dequantized(i);
  return finish("int4 PTQ, groups of 32", deq, model->bytes(), fp32_bytes(net), data,
                [model](const matrix& x) { return model->run(x); }, model->kernel_name(), int4_mlp::note());
}

// ---- 4. Deep Compression: prune + retrain, k-means sharing + centroid tuning, Huffman ------
inline outcome deep_compression(const network& base, const dataset& data, const experiment_config& cfg) {
  network net = base;
  // Per-layer final sparsity as the paper's LeNet-300-100 (8% of weights kept overall).
  const std::vector<double> final_sparsity{0.93, 0.86, 0.40};
  const std::vector<double> rounds{0.5, 0.75, 0.9, 1.0};  // iterative pruning: fraction of the final sparsity per round
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    for (std::size_t i = 0; i < net.layers.size(); ++i) {
      auto& l = net.layers[i];
      auto m = shrink::prune::magnitude(view(std::as_const(l.w)), shrink::prune::by_sparsity(final_sparsity[i] * rounds[r]));
      shrink::prune::apply(m, view(l.w));
      l.hook = std::make_shared<mask_hook>(std::move(m));
    }
    const bool last = r + 1 == rounds.size();
    train(net, data.train, {cfg.epochs(last ? 12 : (r == 0 ? 2 : 3), 1), 128, 5e-4f, 2e-5f, cfg.seed + 100 + r});
  }
  const double pruned_accuracy = accuracy(net.predict(data.test.images), data.test.labels);
  // Weight sharing: 4-bit codebook for fc1 (15 centroids + the exact zero), 5-bit for fc2 and
  // fc3, linear initialisation (the paper's default), then centroid fine-tuning.
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    auto& l = net.layers[i];
    shrink::codebook::cluster_options co;
    co.k = i == 0 ? 16 : 32;
    auto q = shrink::codebook::cluster(view(std::as_const(l.w)), co);
    l.hook = std::make_shared<codebook_hook>(std::move(q), 1e-4f);
  }
  const double shared_accuracy = accuracy(net.predict(data.test.images), data.test.labels);
  train(net, data.train, {cfg.epochs(2, 1), 128, 1e-4f, 1e-5f, cfg.seed + 200});
  auto model = std::make_shared<sparse_codebook_mlp>(net);
  char note[256];
  std::snprintf(note, sizeof note, "sparsity 93/86/40%%; accuracy after pruning %.2f%%, after sharing %.2f%%; 4/5/5-bit codebooks; ",
                100 * pruned_accuracy, 100 * shared_accuracy);
  return finish("Deep Compression (prune+share+Huffman)", net, model->bytes(), fp32_bytes(net), data,
                [model](const matrix& x) { return model->run(x); }, model->kernel_name(), note + model->note());
}

// ---- 5. 2:4 structured sparsity with retraining -------------------------------------------
inline outcome nm_sparsity(const network& base, const dataset& data, const experiment_config& cfg) {
  network net = base;
  for (auto& l : net.layers) {
    auto m = shrink::prune::n_m(view(std::as_const(l.w)), 2, 4);
    shrink::prune::apply(m, view(l.w));
    l.hook = std::make_shared<mask_hook>(std::move(m));
  }
  train(net, data.train, {cfg.epochs(3, 1), 128, 3e-4f, 2e-5f, cfg.seed + 300});
  auto model = std::make_shared<nm_mlp>(net);
  return finish("2:4 sparsity + retraining", net, model->bytes(), fp32_bytes(net), data,
                [model](const matrix& x) { return model->run(x); }, model->kernel_name());
}

// ---- 6. XNOR: binary hidden layer (weights and activations), 8-bit first and last ---------
inline outcome xnor(const dataset& data, const experiment_config& cfg, const loss_gradient& loss = {},
                    const std::string& label = "XNOR hidden layer (8-bit ends)") {
  network net = network::make({784, 300, 100, 10}, cfg.seed + 400, activation::sign_ste);
  net.layers[1].act = activation::sign_ste;
  // Scale the first layer so its pre-activations start inside the STE's |x| <= 1 window.
  net.layers[0].w *= 0.25f;
  net.layers[0].hook = std::make_shared<fake_quant_hook>(shrink::quant::k_qint8_symmetric);
  net.layers[1].hook = std::make_shared<binary_hook>();
  net.layers[1].w = net.layers[1].w.cwiseMax(-1.0f).cwiseMin(1.0f);
  net.layers[2].hook = std::make_shared<fake_quant_hook>(shrink::quant::k_qint8_symmetric);
  train(net, data.train, {cfg.epochs(9, 3), 128, 2e-3f, 5e-5f, cfg.seed + 401}, loss);
  auto model = std::make_shared<xnor_mlp>(net);
  return finish(label, net, model->bytes(), fp32_bytes(net), data,
                [model](const matrix& x) { return model->run(x); }, model->kernel_name());
}

// ---- 7. low-rank fc1 (rank by kept energy) + fine-tuning ------------------------------------
inline outcome low_rank(const network& base, const dataset& data, const experiment_config& cfg) {
  const auto f = shrink::lowrank::factorize(view(base.layers[0].w), shrink::lowrank::kept_energy{0.6});
  const Eigen::Index r = f.rank();
  network net;
  layer b_layer, a_layer;
  b_layer.w = Eigen::Map<const matrix>(f.b.data(), r, base.layers[0].w.cols());  // r × 784
  b_layer.b = vector::Zero(r);
  b_layer.act = activation::none;
  a_layer.w = Eigen::Map<const matrix>(f.a.data(), base.layers[0].w.rows(), r);  // 300 × r
  a_layer.b = base.layers[0].b;
  a_layer.act = activation::relu;
  net.layers = {b_layer, a_layer, base.layers[1], base.layers[2]};
  train(net, data.train, {cfg.epochs(4, 1), 128, 5e-4f, 2e-5f, cfg.seed + 500});
  auto dense = std::make_shared<network>(net);
  return finish("low-rank fc1 (energy 0.6, r=" + std::to_string(r) + ")", net, fp32_bytes(net), fp32_bytes(base),
                data, [dense](const matrix& x) { return dense->predict(x); }, "Eigen fp32 GEMM (A·(B·x))");
}

// ---- 8. distillation ---------------------------------------------------------------------
inline std::vector<outcome> distillation(const dataset& data, const experiment_config& cfg) {
  network teacher = network::make({784, 800, 400, 10}, cfg.seed + 600);
  train(teacher, data.train, {cfg.epochs(4, 2), 128, 1e-3f, 2e-5f, cfg.seed + 601});
  const matrix soft = teacher.predict(data.train.images);

  network plain = network::make({784, 100, 10}, cfg.seed + 602);
  network student = plain;
  train(plain, data.train, {cfg.epochs(10, 3), 128, 1e-3f, 2e-5f, cfg.seed + 603});
  const shrink::distill::hinton_options ho{3.0, 0.5};
  // The loop's loss: Hinton's soft-target loss against the teacher's logits for the batch rows.
  auto distilled_loss = [&soft, ho](const matrix& logits, const std::vector<std::int32_t>& labels,
                                    const std::vector<Eigen::Index>& rows) {
    matrix t_batch(logits.rows(), logits.cols());
    for (std::size_t i = 0; i < rows.size(); ++i) t_batch.row(static_cast<Eigen::Index>(i)) = soft.row(rows[i]);
    auto lg = shrink::distill::hinton_loss(view(logits), view(t_batch), labels, ho);
    return matrix(Eigen::Map<const matrix>(lg.gradient.data(), logits.rows(), logits.cols()));
  };
  train(student, data.train, {cfg.epochs(10, 3), 128, 1e-3f, 2e-5f, cfg.seed + 603}, distilled_loss);
  std::vector<outcome> out;
  auto t = std::make_shared<network>(teacher);
  out.push_back(finish("teacher 784-800-400-10", teacher, fp32_bytes(teacher), fp32_bytes(network::make({784, 300, 100, 10}, 0)),
                       data, [t](const matrix& x) { return t->predict(x); }, "Eigen fp32 GEMM"));
  auto p = std::make_shared<network>(plain);
  out.push_back(finish("student 784-100-10, no distillation", plain, fp32_bytes(plain),
                       fp32_bytes(network::make({784, 300, 100, 10}, 0)), data,
                       [p](const matrix& x) { return p->predict(x); }, "Eigen fp32 GEMM"));
  auto s = std::make_shared<network>(student);
  out.push_back(finish("student 784-100-10, distilled (T=3, α=0.5)", student, fp32_bytes(student),
                       fp32_bytes(network::make({784, 300, 100, 10}, 0)), data,
                       [s](const matrix& x) { return s->predict(x); }, "Eigen fp32 GEMM"));
  out.push_back(xnor(data, cfg, distilled_loss, "XNOR net, distilled from the teacher"));
  return out;
}

/// Milliseconds for fn() (best of three, so a one-off page fault does not count).
template <class Fn>
double time_ms(Fn&& fn) {
  double best = 1e300;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

/// Runs every experiment (two independent groups on two threads: results do not depend on
/// it, every experiment has its own seed), then times each model on the test set, one at a time.
inline std::vector<result_row> run_all(const dataset& data, const experiment_config& cfg,
                                       const std::filesystem::path& out_dir) {
  std::vector<outcome> a, b;
  std::thread second([&] {
    b.push_back(xnor(data, cfg));
    for (auto& o : distillation(data, cfg)) b.push_back(std::move(o));
  });
  network net = network::make({784, 300, 100, 10}, cfg.seed);
  a.push_back(baseline(net, data, cfg));
  a.push_back(int8_ptq(net, data));
  a.push_back(int4_ptq(net, data));
  a.push_back(deep_compression(net, data, cfg));
  a.push_back(nm_sparsity(net, data, cfg));
  // The trained models in shrink's file format (the tool's recipes applied to the trained
  // weights: pruned models keep their zeros, so the recipe's masks keep the trained ones).
  std::filesystem::create_directories(out_dir);
  save_compressed(*a[0].dense, out_dir, "lenet", "int8");
  save_compressed(*a[0].dense, out_dir, "lenet", "int4-g32");
  save_compressed(*a[3].dense, out_dir, "lenet_pruned", "deep-compression");
  save_compressed(*a[4].dense, out_dir, "lenet_2of4", "2:4");
  a.push_back(low_rank(net, data, cfg));
  second.join();
  for (auto& o : b) a.push_back(std::move(o));
  std::vector<result_row> rows;
  std::printf("timing each model on the %td test images...\n", data.test.images.rows());
  for (auto& o : a) {
    o.row.ms_shrink = time_ms([&] { (void)o.run_shrink(data.test.images); });
    o.row.ms_dense = time_ms([&] { (void)o.run_dense(data.test.images); });
    rows.push_back(o.row);
  }
  return rows;
}

/// The targets of the full run (printed as a checklist) or, with --quick, looser thresholds
/// that hold with margin on the subset (a failure makes the quick run, a test, fail).
inline bool check_thresholds(const std::vector<result_row>& rows, const experiment_config& cfg) {
  bool ok = true;
  auto need = [&](bool cond, const std::string& what) {
    if (cfg.quick) {
      if (!cond) std::fprintf(stderr, "threshold not met: %s\n", what.c_str());
    } else {
      std::printf("  [%s] %s\n", cond ? "met" : "MISSED", what.c_str());
    }
    ok = ok && cond;
  };
  if (!cfg.quick) std::printf("\nTargets:\n");
  auto find = [&](const std::string& prefix) -> const result_row& {
    for (const auto& r : rows)
      if (r.technique.rfind(prefix, 0) == 0) return r;
    throw std::runtime_error("no row " + prefix);
  };
  const double base = find("fp32").accuracy;
  if (cfg.quick) {
    need(base >= 0.80, "quick fp32 baseline >= 80%");
    need(find("int8").accuracy >= base - 0.01, "quick int8 drop <= 1 point");
    need(find("int4").accuracy >= base - 0.03, "quick int4 drop <= 3 points");
    need(find("Deep").accuracy >= base - 0.06 && find("Deep").ratio >= 30, "quick Deep Compression: drop <= 6, >= 30x");
    need(find("2:4").accuracy >= base - 0.03, "quick 2:4 drop <= 3 points");
    need(find("XNOR").accuracy >= 0.70, "quick XNOR >= 70%");
  } else {
    need(base >= 0.885, "fp32 baseline >= 88.5%");
    need(find("int8").accuracy >= base - 0.003, "int8 drop <= 0.3 points");
    need(find("int4").accuracy >= base - 0.010, "int4 drop <= 1.0 point");
    need(find("Deep").accuracy >= base - 0.005, "Deep Compression drop <= 0.5 points");
    need(find("Deep").ratio >= 40.0, "Deep Compression >= 40x smaller");
  }
  return ok;
}

}  // namespace demo
