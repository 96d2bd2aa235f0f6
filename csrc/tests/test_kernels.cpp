// C++ kernel tests: every compiled SIMD target the CPU can run is compared against the
// scalar reference table, and the scalar table against a float64 re-implementation written
// here from the documented formulas (csrc/kernels.hpp and the comments in csrc/kernels/).
//
// Standalone: no Python, no test framework.  Built by CMake with -DMEDIMG_BUILD_TESTS=ON
// (target test_kernels) and run natively, under ASan+UBSan and, cross-compiled, under
// qemu-aarch64 by scripts/test_cpp.sh.  The last line printed is "N passed, M failed";
// the exit status is non-zero when M > 0.
//
// Every call gets its scratch memory and its output filled with NaN and is then repeated
// with the scratch and output filled with random garbage: the two outputs must be
// bit-identical (so no kernel reads scratch it did not write, or leaves an output pixel
// unwritten) and finite.  Buffers are sized exactly (srad_scratch / local_scratch), so
// AddressSanitizer catches any access past them.
//
// Usage: test_kernels [-v] [--require TARGET]...
//   -v                 print every check, not only failures
//   --require TARGET   fail unless TARGET is compiled in and this CPU can run it

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../dispatch.hpp"
#include "../kernels.hpp"

namespace {

using medimg::KernelTable;

// ---- bookkeeping ------------------------------------------------------------------------

int g_passed = 0;
int g_failed = 0;
bool g_verbose = false;

// Worst observed error / tolerance per check family, printed at the end so that the
// margin of every tolerance is visible in the log.
std::map<std::string, double> g_worst;

void record(bool ok, const std::string& what, const std::string& detail = "") {
  if (ok) {
    ++g_passed;
    if (g_verbose) std::printf("ok   %s\n", what.c_str());
  } else {
    ++g_failed;
    std::printf("FAIL %s%s%s\n", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  }
}

void note_margin(const std::string& family, double ratio) {
  double& w = g_worst[family];
  if (ratio > w || std::isnan(ratio)) w = ratio;
}

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c, d);
  return buf;
}

// ---- images -----------------------------------------------------------------------------

struct Image {
  std::string name;
  ptrdiff_t rows = 0, cols = 0;
  std::vector<float> px;
  bool constant = false;
  float value = 0.0f;  // the constant, when constant
  size_t size() const { return px.size(); }
};

std::string dims(const Image& im) {
  return std::to_string(im.rows) + "x" + std::to_string(im.cols);
}

Image make_uniform(ptrdiff_t rows, ptrdiff_t cols, int max_value, double zero_fraction,
                   uint32_t seed, const std::string& name) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> value(0, max_value);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Image im;
  im.name = name;
  im.rows = rows;
  im.cols = cols;
  im.px.resize(static_cast<size_t>(rows * cols));
  for (float& p : im.px) p = u(rng) < zero_fraction ? 0.0f : static_cast<float>(value(rng));
  return im;
}

Image make_real(ptrdiff_t rows, ptrdiff_t cols, double max_value, uint32_t seed,
                const std::string& name) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, max_value);
  Image im;
  im.name = name;
  im.rows = rows;
  im.cols = cols;
  im.px.resize(static_cast<size_t>(rows * cols));
  for (float& p : im.px) p = static_cast<float>(u(rng));
  return im;
}

Image make_constant(ptrdiff_t rows, ptrdiff_t cols, float v, const std::string& name) {
  Image im;
  im.name = name;
  im.rows = rows;
  im.cols = cols;
  im.px.assign(static_cast<size_t>(rows * cols), v);
  im.constant = true;
  im.value = v;
  return im;
}

// ---- buffers ----------------------------------------------------------------------------

void fill_nan(std::vector<float>& v) {
  std::fill(v.begin(), v.end(), std::numeric_limits<float>::quiet_NaN());
}

// Garbage of every magnitude and sign (finite), different on every call.
void fill_garbage(std::vector<float>& v) {
  static std::mt19937 rng(12345);
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-30, 30);
  for (float& x : v) x = std::ldexp(mant(rng), expo(rng));
}

bool all_finite(const std::vector<float>& v, size_t* bad) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) {
      *bad = i;
      return false;
    }
  return true;
}

// A kernel call with float output: out has out_size floats, scratch has scratch_size.
using FloatCall = std::function<void(const KernelTable&, float* out, float* scratch)>;

// Runs `call` twice (NaN-filled, then garbage-filled scratch and output), checks that the
// results are identical and finite, and returns the first.
std::vector<float> run_checked(const KernelTable& t, const FloatCall& call, size_t out_size,
                               size_t scratch_size, const std::string& label) {
  std::vector<float> out(out_size), scratch(scratch_size);
  fill_nan(out);
  fill_nan(scratch);
  call(t, out.data(), scratch.empty() ? nullptr : scratch.data());
  std::vector<float> out2(out_size);
  fill_garbage(out2);
  fill_garbage(scratch);
  call(t, out2.data(), scratch.empty() ? nullptr : scratch.data());

  size_t bad = 0;
  const bool finite = all_finite(out, &bad);
  record(finite, label + " finite",
         finite ? "" : "non-finite output at index " + std::to_string(bad));
  const bool same = std::memcmp(out.data(), out2.data(), out_size * sizeof(float)) == 0;
  std::string detail;
  if (!same) {
    for (size_t i = 0; i < out_size; ++i)
      if (std::memcmp(&out[i], &out2[i], sizeof(float)) != 0) {
        detail = "output depends on prior scratch/output contents, first at index " +
                 std::to_string(i) + fmt(" (%.9g vs %.9g)", out[i], out2[i]);
        break;
      }
  }
  record(same, label + " independent of scratch contents", detail);
  return out;
}

// max |got - ref| <= rel * (1 + max |ref|)
template <typename T>
bool close(const std::vector<float>& got, const std::vector<T>& ref, double rel,
           const std::string& family, const Image* im, std::string* detail) {
  double max_ref = 0.0, max_err = 0.0;
  size_t where = 0;
  for (size_t i = 0; i < ref.size(); ++i) max_ref = std::max(max_ref, std::fabs(double(ref[i])));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs(double(got[i]) - double(ref[i]));
    if (!(e <= max_err)) {  // also catches NaN
      max_err = e;
      where = i;
      if (std::isnan(e)) break;
    }
  }
  const double tol = rel * (1.0 + max_ref);
  note_margin(family, max_err / tol);
  if (max_err <= tol) return true;
  std::string at = "index " + std::to_string(where);
  if (im != nullptr && im->cols > 0)
    at = "(row " + std::to_string(where / static_cast<size_t>(im->cols)) + ", col " +
         std::to_string(where % static_cast<size_t>(im->cols)) + ")";
  *detail = "max |err| " + fmt("%.6g", max_err) + " > tol " + fmt("%.6g", tol) + " at " + at +
            fmt(": got %.9g, reference %.9g", got[where], double(ref[where]));
  return false;
}

// ---- float64 references (independent re-implementations of the documented formulas) ----

ptrdiff_t reflect101(ptrdiff_t i, ptrdiff_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
  }
  return i;
}

double at(const Image& im, ptrdiff_t y, ptrdiff_t x) {
  return im.px[static_cast<size_t>(y * im.cols + x)];
}

// Mean and population variance of the window x window reflect-101 neighbourhood.
void window_moments(const Image& im, ptrdiff_t y, ptrdiff_t x, int window, double* mean,
                    double* var) {
  const int r = window / 2;
  double s = 0.0;
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      s += at(im, reflect101(y + dy, im.rows), reflect101(x + dx, im.cols));
  const double n = double(window) * window;
  const double m = s / n;
  double v = 0.0;
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      const double d = at(im, reflect101(y + dy, im.rows), reflect101(x + dx, im.cols)) - m;
      v += d * d;
    }
  *mean = m;
  *var = v / n;
}

std::vector<double> ref_local_stats(const Image& im, int window, double a, double b, double g) {
  std::vector<double> out(im.size());
  for (ptrdiff_t y = 0; y < im.rows; ++y)
    for (ptrdiff_t x = 0; x < im.cols; ++x) {
      double m, v;
      window_moments(im, y, x, window, &m, &v);
      double w = (v - a * m * m - b) / (std::max(v, 1e-30) * g);
      w = std::min(std::max(w, 0.0), 1.0);
      out[static_cast<size_t>(y * im.cols + x)] = m + w * (at(im, y, x) - m);
    }
  return out;
}

std::vector<double> ref_frost(const Image& im, int window, double damping) {
  const int r = window / 2;
  std::vector<double> out(im.size());
  for (ptrdiff_t y = 0; y < im.rows; ++y)
    for (ptrdiff_t x = 0; x < im.cols; ++x) {
      double m, v;
      window_moments(im, y, x, window, &m, &v);
      const double alpha = std::min(damping * v / std::max(m * m, 1e-30), 1e6);
      double num = 0.0, den = 0.0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          const double w = std::exp(-alpha * std::sqrt(double(dx * dx + dy * dy)));
          num += w * at(im, reflect101(y + dy, im.rows), reflect101(x + dx, im.cols));
          den += w;
        }
      out[static_cast<size_t>(y * im.cols + x)] = num / den;
    }
  return out;
}

// SRAD in the paper's form (Yu & Acton 2002, eqs. 35-37 and 58, as written at the top of
// csrc/kernels/speckle.hpp), independent of the kernel's algebraically equal rewrite through
// the 4-neighbour mean.  Replicate border, q0(t) = q0 exp(-rho * dt * n), c clamped to
// [0, 1].  Guards of this reference only (they matter only where the kernel's own floors
// act, i.e. black pixels and near-zero 4-neighbour means, and there both give c ~ 0):
// I floored at 1e-6 * max (1e-30 for a black image), (1 + L/4)^2 floored at 1e-12, and a
// NaN c (only where every difference is 0, so c is multiplied by 0) taken as 0.
std::vector<double> ref_srad(const Image& im, int iterations, double dt, double q0, double rho) {
  const ptrdiff_t R = im.rows, C = im.cols;
  std::vector<double> J(im.px.begin(), im.px.end()), c(im.size()), K(im.size());
  double mx = 0.0;
  for (float p : im.px) mx = std::max(mx, double(p));
  const double fl = mx > 0.0 ? mx * 1e-6 : 1e-30;
  auto idx = [C](ptrdiff_t y, ptrdiff_t x) { return static_cast<size_t>(y * C + x); };
  auto clampi = [](ptrdiff_t i, ptrdiff_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); };
  for (int it = 0; it < iterations; ++it) {
    const double q = q0 * std::exp(-rho * dt * it), q2 = q * q;
    for (ptrdiff_t y = 0; y < R; ++y)
      for (ptrdiff_t x = 0; x < C; ++x) {
        const double j = J[idx(y, x)];
        const double dN = J[idx(clampi(y - 1, R), x)] - j, dS = J[idx(clampi(y + 1, R), x)] - j;
        const double dW = J[idx(y, clampi(x - 1, C))] - j, dE = J[idx(y, clampi(x + 1, C))] - j;
        const double inv = 1.0 / std::max(j, fl);
        const double G2 = (dN * dN + dS * dS + dW * dW + dE * dE) * inv * inv;
        const double L = (dN + dS + dW + dE) * inv;
        const double den = 1.0 + 0.25 * L;
        const double qsq = (0.5 * G2 - L * L / 16.0) / std::max(den * den, 1e-12);
        double cc = 1.0 / (1.0 + (qsq - q2) / (q2 * (1.0 + q2)));
        cc = std::isnan(cc) ? 0.0 : std::min(std::max(cc, 0.0), 1.0);
        c[idx(y, x)] = cc;
      }
    for (ptrdiff_t y = 0; y < R; ++y)
      for (ptrdiff_t x = 0; x < C; ++x) {
        const double j = J[idx(y, x)];
        const double dN = J[idx(clampi(y - 1, R), x)] - j, dS = J[idx(clampi(y + 1, R), x)] - j;
        const double dW = J[idx(y, clampi(x - 1, C))] - j, dE = J[idx(y, clampi(x + 1, C))] - j;
        // c of the south / east neighbour; beyond the border the difference is 0 anyway.
        const double cS = y + 1 < R ? c[idx(y + 1, x)] : 0.0;
        const double cE = x + 1 < C ? c[idx(y, x + 1)] : 0.0;
        const double cC = c[idx(y, x)];
        K[idx(y, x)] = j + 0.25 * dt * (cS * dS + cC * dN + cE * dE + cC * dW);
      }
    J.swap(K);
  }
  return J;
}

double ref_anscombe1(double z, double gain, double sigma) {
  return 2.0 / gain * std::sqrt(std::max(gain * z + 0.375 * gain * gain + sigma * sigma, 0.0));
}

// Closed-form asymptotic inverse (Makitalo & Foi), as documented in csrc/kernels/vst.hpp.
double inverse_tail(double d, double sigma2) {
  const double s = std::sqrt(1.5), id = 1.0 / d;
  return 0.25 * d * d + 0.25 * s * id - 1.375 * id * id + 0.625 * s * id * id * id - 0.125 - sigma2;
}

double ref_inverse1(double d, const medimg::InverseAnscombeTable& t) {
  const double last = double(t.size - 1);
  const double pos = (d - double(t.d0)) * double(t.inv_step);
  double y;
  if (pos <= 0.0) {
    y = 0.0;
  } else if (pos >= last) {
    y = inverse_tail(std::max(d, 1.0), t.sigma2);
  } else {
    const double k = std::min(std::floor(pos), last - 1.0);
    const double f = pos - k;
    const ptrdiff_t i = static_cast<ptrdiff_t>(k);
    y = double(t.values[i]) + f * (double(t.values[i + 1]) - double(t.values[i]));
  }
  return std::max(y, 0.0) * t.gain;
}

double ref_immerkaer(const Image& im) {
  double s = 0.0;
  for (ptrdiff_t y = 1; y + 1 < im.rows; ++y)
    for (ptrdiff_t x = 1; x + 1 < im.cols; ++x) {
      const double v =
          at(im, y - 1, x - 1) + at(im, y - 1, x + 1) + at(im, y + 1, x - 1) +
          at(im, y + 1, x + 1) -
          2.0 * (at(im, y - 1, x) + at(im, y + 1, x) + at(im, y, x - 1) + at(im, y, x + 1)) +
          4.0 * at(im, y, x);
      s += std::fabs(v);
    }
  return s;
}

// ---- tolerances -------------------------------------------------------------------------
// Target vs scalar: the targets run the same float32 operation sequence; they differ only by
// FMA contraction (1 ulp per operation), so 1e-4 relative to the image scale is loose by
// orders of magnitude (the worst margins are printed at the end).
constexpr double kTolTarget = 1e-4;
constexpr double kTolTargetSum = 1e-5;
// Scalar (float32) vs the float64 references: the same bound.  (Local statistics come from
// E[x^2] - m^2 in float over shifted values and SRAD divides by the floored intensity, so
// float32 drifts further from float64 than two float32 paths from each other; the observed
// drift is still about 1e-6 relative.)
constexpr double kTolRefFilter = 1e-4;
constexpr double kTolRefPointwise = 1e-5;
constexpr double kTolRefSum = 1e-5;

// ---- the test cases ---------------------------------------------------------------------

struct Targets {
  const KernelTable* scalar = nullptr;
  std::vector<const KernelTable*> others;  // compiled, supported, not scalar
};

// Runs one float kernel case on every target: scalar first (checked against `reference`
// if given), then each other target against scalar.  Returns the scalar output.
std::vector<float> run_all(const Targets& T, const Image& im, const std::string& kernel,
                           const std::string& family, const FloatCall& call, size_t out_size,
                           size_t scratch_size,
                           const std::function<std::vector<double>()>& reference, double ref_tol,
                           const std::function<void(const KernelTable&, const std::vector<float>&,
                                                    const std::string&)>& properties) {
  const std::vector<float> before = im.px;
  const std::string where = im.name + " " + dims(im) + " " + kernel;
  const std::vector<float> s =
      run_checked(*T.scalar, call, out_size, scratch_size, std::string("scalar ") + where);
  if (properties) properties(*T.scalar, s, std::string("scalar ") + where);
  if (reference) {
    std::string detail;
    const std::vector<double> ref = reference();
    record(close(s, ref, ref_tol, family + " scalar vs float64", &im, &detail),
           "scalar " + where + " vs float64 reference", detail);
  }
  for (const KernelTable* t : T.others) {
    const std::string label = std::string(t->name) + " " + where;
    const std::vector<float> o = run_checked(*t, call, out_size, scratch_size, label);
    std::string detail;
    record(close(o, s, kTolTarget, family + " target vs scalar", &im, &detail),
           label + " vs scalar", detail);
    if (properties) properties(*t, o, label);
  }
  record(std::memcmp(before.data(), im.px.data(), before.size() * sizeof(float)) == 0,
         where + " leaves the input unchanged");
  return s;
}

void check_constant(const Image& im, const std::vector<float>& out, const std::string& label) {
  if (!im.constant) return;
  double err = 0.0;
  for (float v : out) err = std::max(err, std::fabs(double(v) - double(im.value)));
  const double tol = 1e-6 * (1.0 + std::fabs(double(im.value)));
  record(err <= tol, label + " keeps a constant image constant",
         fmt("max |out - %.9g| = %.6g", im.value, err));
}

void test_srad(const Targets& T, const Image& im) {
  struct P {
    int iterations;
    float dt, q0, rho;
  };
  const P params[] = {{0, 0.5f, 0.3f, 1.0f / 6.0f},
                      {1, 0.5f, 0.3f, 1.0f / 6.0f},
                      {5, 0.5f, 0.3f, 1.0f / 6.0f},
                      {1, 1.0f, 1.0f, 0.0f},
                      {5, 0.25f, 0.05f, 0.5f}};
  for (const P& p : params) {
    const std::string kernel = "srad(it=" + std::to_string(p.iterations) +
                               fmt(", dt=%g, q0=%g, rho=%.3g)", p.dt, p.q0, p.rho);
    FloatCall call = [&](const KernelTable& t, float* out, float* scratch) {
      t.srad(im.px.data(), out, im.rows, im.cols, p.iterations, p.dt, p.q0, p.rho, scratch);
    };
    auto props = [&](const KernelTable&, const std::vector<float>& out, const std::string& l) {
      if (p.iterations == 0)
        record(std::memcmp(out.data(), im.px.data(), out.size() * sizeof(float)) == 0,
               l + " with 0 iterations is the identity");
      check_constant(im, out, l);
    };
    run_all(
        T, im, kernel, "srad", call, im.size(), medimg::srad_scratch(im.rows, im.cols),
        [&] { return ref_srad(im, p.iterations, p.dt, p.q0, p.rho); }, kTolRefFilter, props);
  }
}

void test_local_stats(const Targets& T, const Image& im) {
  struct P {
    float a, b, g;
    const char* what;
  };
  const P params[] = {{0.05f, 0.0f, 1.0f, "lee"},
                      {0.05f, 0.0f, 1.05f, "kuan"},
                      {0.0f, 100.0f, 1.0f, "wiener"},
                      {0.5f, 25.0f, 1.5f, "mixed"},
                      {0.0f, 0.0f, 1.0f, "identity-weights"}};
  for (int window : {3, 7, 15}) {
    for (const P& p : params) {
      const std::string kernel = "local_stats(" + std::string(p.what) +
                                 ", w=" + std::to_string(window) +
                                 fmt(", a=%g, b=%g, g=%g)", p.a, p.b, p.g);
      FloatCall call = [&](const KernelTable& t, float* out, float* scratch) {
        t.local_stats(im.px.data(), out, im.rows, im.cols, window, p.a, p.b, p.g, scratch);
      };
      auto props = [&](const KernelTable&, const std::vector<float>& out, const std::string& l) {
        check_constant(im, out, l);
      };
      run_all(
          T, im, kernel, "local_stats", call, im.size(),
          medimg::local_scratch(im.rows, im.cols, window),
          [&] { return ref_local_stats(im, window, p.a, p.b, p.g); }, kTolRefFilter, props);
    }
  }
}

void test_frost(const Targets& T, const Image& im) {
  for (int window : {3, 7}) {
    for (float damping : {2.0f, 0.5f, 0.0f}) {
      const std::string kernel =
          "frost(w=" + std::to_string(window) + fmt(", damping=%g)", damping);
      FloatCall call = [&](const KernelTable& t, float* out, float* scratch) {
        t.frost(im.px.data(), out, im.rows, im.cols, window, damping, scratch);
      };
      auto props = [&](const KernelTable&, const std::vector<float>& out, const std::string& l) {
        check_constant(im, out, l);
      };
      run_all(
          T, im, kernel, "frost", call, im.size(), medimg::local_scratch(im.rows, im.cols, window),
          [&] { return ref_frost(im, window, damping); }, kTolRefFilter, props);
    }
  }
}

// A monotone table of the closed-form inverse on D in [2, 17.75] (beyond: the kernel's
// closed-form tail, which then joins the table continuously; below: 0).
struct InverseTable {
  std::vector<float> values;
  medimg::InverseAnscombeTable table{};
  explicit InverseTable(float sigma2, float gain) {
    const double d0 = 2.0, step = 0.25;
    for (int i = 0; i < 64; ++i) values.push_back(float(inverse_tail(d0 + step * i, sigma2)));
    table = {values.data(), ptrdiff_t(values.size()), float(d0), float(1.0 / step), sigma2, gain};
  }
};

void test_vst(const Targets& T, const Image& im) {
  struct P {
    float gain, sigma;
  };
  const P params[] = {{1.0f, 0.0f}, {2.5f, 3.0f}, {0.3f, 10.0f}};
  std::vector<float> forward;
  for (const P& p : params) {
    const std::string kernel = fmt("anscombe(gain=%g, sigma=%g)", p.gain, p.sigma);
    FloatCall call = [&](const KernelTable& t, float* out, float*) {
      t.anscombe(im.px.data(), out, ptrdiff_t(im.size()), p.gain, p.sigma);
    };
    auto reference = [&] {
      std::vector<double> r(im.size());
      for (size_t i = 0; i < im.size(); ++i) r[i] = ref_anscombe1(im.px[i], p.gain, p.sigma);
      return r;
    };
    std::vector<float> s =
        run_all(T, im, kernel, "anscombe", call, im.size(), 0, reference, kTolRefPointwise, {});
    if (forward.empty()) forward = s;
  }

  // Feed the inverse the forward transform of the image (values below, inside and beyond
  // the table), and separately a ramp over the whole range.
  const InverseTable tab(0.25f, 1.5f);
  Image ramp;
  ramp.name = "ramp";
  ramp.rows = 1;
  ramp.cols = ptrdiff_t(im.size());
  for (size_t i = 0; i < im.size(); ++i) ramp.px.push_back(-1.0f + 0.37f * float(i % 140));
  Image fwd = im;
  fwd.name = im.name + "|anscombe";
  fwd.px = forward;
  for (const Image* in : {&fwd, &ramp}) {
    FloatCall call = [&](const KernelTable& t, float* out, float*) {
      t.inverse_anscombe(in->px.data(), out, ptrdiff_t(in->size()), &tab.table);
    };
    auto reference = [&] {
      std::vector<double> r(in->size());
      for (size_t i = 0; i < in->size(); ++i) r[i] = ref_inverse1(in->px[i], tab.table);
      return r;
    };
    run_all(T, *in, "inverse_anscombe", "inverse_anscombe", call, in->size(), 0, reference,
            kTolRefPointwise, {});
  }
}

void test_immerkaer(const Targets& T, const Image& im) {
  const std::string where = im.name + " " + dims(im) + " immerkaer_abs_sum";
  const double s = T.scalar->immerkaer_abs_sum(im.px.data(), im.rows, im.cols);
  if (im.rows < 3 || im.cols < 3) {
    record(s == 0.0, "scalar " + where + " is 0 without interior pixels", fmt("got %g", s));
    return;
  }
  const double ref = ref_immerkaer(im);
  const double tol_ref = kTolRefSum * (1.0 + std::fabs(ref));
  note_margin("immerkaer scalar vs float64", std::fabs(s - ref) / tol_ref);
  record(std::isfinite(s) && std::fabs(s - ref) <= tol_ref, "scalar " + where + " vs float64",
         fmt("got %.12g, reference %.12g", s, ref));
  if (im.constant)
    record(s == 0.0, "scalar " + where + " is 0 on a constant image", fmt("got %g", s));
  for (const KernelTable* t : T.others) {
    const double o = t->immerkaer_abs_sum(im.px.data(), im.rows, im.cols);
    const double tol = kTolTargetSum * (1.0 + std::fabs(s));
    note_margin("immerkaer target vs scalar", std::fabs(o - s) / tol);
    record(std::isfinite(o) && std::fabs(o - s) <= tol,
           std::string(t->name) + " " + where + " vs scalar", fmt("got %.12g, scalar %.12g", o, s));
  }
}

// ---- parameter estimation (estimate.hpp) -------------------------------------------------
// speckle_cv against a float64 re-implementation (two-pass window moments, sort-based
// median) and every target against scalar; noise_tiles likewise.  Both are run twice, on
// NaN-filled and garbage-filled scratch, and must not depend on it.
double ref_speckle_cv(const Image& im, int window) {
  const int r = window / 2;
  std::vector<double> ms, cvs;
  double top = 0.0;
  for (ptrdiff_t y = 0; y < im.rows; y += 2)
    for (ptrdiff_t x = 0; x < im.cols; x += 2) {
      double s = 0.0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
          s += at(im, reflect101(y + dy, im.rows), reflect101(x + dx, im.cols));
      const double m = s / (window * window);
      double v = 0.0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          const double d = at(im, reflect101(y + dy, im.rows), reflect101(x + dx, im.cols)) - m;
          v += d * d;
        }
      v /= window * window;
      ms.push_back(m);
      cvs.push_back(m > 0.0 ? std::sqrt(v) / m : 0.0);
      top = std::max(top, m);
    }
  if (!(top > 0.0)) return 0.0;
  std::vector<double> sel;
  for (size_t i = 0; i < ms.size(); ++i)
    if (ms[i] > 0.01 * top) sel.push_back(cvs[i]);
  if (sel.empty()) return 0.0;
  std::sort(sel.begin(), sel.end());
  const size_t n = sel.size();
  return n % 2 ? sel[n / 2] : (sel[n / 2 - 1] + sel[n / 2]) / 2.0;
}

void test_estimate(const Targets& T, const Image& im) {
  for (int window : {3, 7}) {
    const std::string where =
        im.name + " " + dims(im) + " speckle_cv window " + std::to_string(window);
    std::vector<float> fs(medimg::speckle_cv_fscratch(im.rows, im.cols, window));
    std::vector<uint32_t> us(medimg::speckle_cv_uscratch(im.rows, im.cols));
    auto run = [&](const KernelTable& t) {
      fill_nan(fs);
      std::fill(us.begin(), us.end(), 0xdeadbeefu);
      const double a = t.speckle_cv(im.px.data(), im.rows, im.cols, window, fs.data(), us.data());
      fill_garbage(fs);
      std::fill(us.begin(), us.end(), 0x12345678u);
      const double b = t.speckle_cv(im.px.data(), im.rows, im.cols, window, fs.data(), us.data());
      record(std::isfinite(a) && a == b,
             std::string(t.name) + " " + where + " finite and independent of scratch contents",
             fmt("%.9g vs %.9g", a, b));
      return a;
    };
    const double s = run(*T.scalar);
    const double ref = ref_speckle_cv(im, window);
    const double tol = 1e-4 * (1.0 + std::fabs(ref));
    note_margin("speckle_cv scalar vs float64", std::fabs(s - ref) / tol);
    record(std::fabs(s - ref) <= tol, "scalar " + where + " vs float64",
           fmt("got %.9g, reference %.9g", s, ref));
    if (im.constant) record(s == 0.0, "scalar " + where + " is 0 on a constant image");
    for (const KernelTable* t : T.others) {
      const double o = run(*t);
      const double tt = 1e-5 * (1.0 + std::fabs(s));
      note_margin("speckle_cv target vs scalar", std::fabs(o - s) / tt);
      record(std::fabs(o - s) <= tt, std::string(t->name) + " " + where + " vs scalar",
             fmt("got %.9g, scalar %.9g", o, s));
    }
  }
  // masked_quantile: numpy.percentile ("linear") of the masked values, exactly, on every
  // target (order statistics are exact, the interpolation is NumPy's).
  {
    const ptrdiff_t n = static_cast<ptrdiff_t>(im.size());
    std::vector<uint8_t> mask(im.size());
    std::mt19937 rng(static_cast<uint32_t>(n) * 7u + 1u);
    for (uint8_t& m : mask) m = (rng() % 3u) != 0u ? 1 : 0;
    std::vector<uint32_t> u(medimg::summary_scratch(n));
    for (int masked = 0; masked < 2; ++masked) {
      std::vector<double> sel;
      for (ptrdiff_t i = 0; i < n; ++i)
        if (!masked || mask[static_cast<size_t>(i)]) sel.push_back(im.px[static_cast<size_t>(i)]);
      std::sort(sel.begin(), sel.end());
      for (double q : {0.0, 0.1, 0.5, 0.9, 0.999, 1.0}) {
        double ref = std::nan("");
        if (!sel.empty()) {
          const double v = (static_cast<double>(sel.size()) - 1.0) * q;
          const double f = std::floor(v);
          const size_t lo = static_cast<size_t>(f);
          const size_t hi = lo + 1 < sel.size() ? lo + 1 : lo;
          const double g = v - f, a = sel[lo], b = sel[hi], d = b - a;
          // volatile: no FMA contraction in this (test) translation unit, as in NumPy and
          // in the kernels (-ffp-contract=off).
          volatile double dg = d * (g >= 0.5 ? 1.0 - g : g);
          ref = lo == hi ? a : (g >= 0.5 ? b - dg : a + dg);
        }
        const std::string where = im.name + " " + dims(im) + " masked_quantile q=" + fmt("%g", q) +
                                  (masked ? " masked" : "");
        std::vector<const KernelTable*> all{T.scalar};
        all.insert(all.end(), T.others.begin(), T.others.end());
        for (const KernelTable* t : all) {
          std::fill(u.begin(), u.end(), 0xa5a5a5a5u);
          const double got =
              t->masked_quantile(im.px.data(), masked ? mask.data() : nullptr, n, q, u.data());
          const bool same = (std::isnan(got) && std::isnan(ref)) || got == ref;
          record(same, std::string(t->name) + " " + where + " equals numpy.percentile",
                 fmt("got %.17g, reference %.17g", got, ref));
        }
      }
    }
  }
  const int block = 4;
  if (im.rows < 3 * block || im.cols < 3 * block) return;
  const ptrdiff_t tr = (im.rows - 2) / block, tc = (im.cols - 2) / block, N = tr * tc;
  const std::string where = im.name + " " + dims(im) + " noise_tiles";
  std::vector<double> ref_v(N, 0.0), ref_m(N, 0.0);
  for (ptrdiff_t y = 1; y < 1 + tr * block; ++y)
    for (ptrdiff_t x = 1; x < 1 + tc * block; ++x) {
      double conv = 0.0, box = 0.0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const double v = at(im, y + dy, x + dx);
          const int w = (dy == 0 ? 2 : 1) * (dx == 0 ? 2 : 1) * ((dy == 0) != (dx == 0) ? -1 : 1);
          conv += w * v;
          box += v;
        }
      const ptrdiff_t k = ((y - 1) / block) * tc + (x - 1) / block;
      ref_v[k] += (conv / 6.0) * (conv / 6.0) / (block * block);
      ref_m[k] += box / 9.0 / (block * block);
    }
  std::vector<double> acc(medimg::noise_tiles_scratch(im.cols, block));
  auto run = [&](const KernelTable& t, std::vector<double>& v, std::vector<double>& m) {
    v.assign(N, std::nan(""));
    m.assign(N, std::nan(""));
    std::fill(acc.begin(), acc.end(), std::nan(""));
    t.noise_tiles(im.px.data(), im.rows, im.cols, block, v.data(), m.data(), acc.data());
  };
  std::vector<double> sv, sm;
  run(*T.scalar, sv, sm);
  double err = 0.0, scale = 1.0;
  for (ptrdiff_t k = 0; k < N; ++k) {
    scale = std::max({scale, std::fabs(ref_v[k]), std::fabs(ref_m[k])});
    err = std::max({err, std::fabs(sv[k] - ref_v[k]), std::fabs(sm[k] - ref_m[k])});
  }
  note_margin("noise_tiles scalar vs float64", err / (1e-5 * scale));
  record(err <= 1e-5 * scale, "scalar " + where + " vs float64", fmt("max error %.3g", err));
  for (const KernelTable* t : T.others) {
    std::vector<double> ov, om;
    run(*t, ov, om);
    double e = 0.0;
    for (ptrdiff_t k = 0; k < N; ++k)
      e = std::max({e, std::fabs(ov[k] - sv[k]), std::fabs(om[k] - sm[k])});
    note_margin("noise_tiles target vs scalar", e / (1e-9 * scale));
    record(e <= 1e-9 * scale, std::string(t->name) + " " + where + " vs scalar",
           fmt("max difference %.3g", e));
  }
}

// scan: every target agrees with a plain loop on finiteness, min and max, and finds a
// single NaN / +Inf / -Inf planted anywhere (first, middle, last element).
void test_scan(const Targets& T, const Image& im) {
  const std::string where = im.name + " " + dims(im) + " scan";
  float lo = im.px[0], hi = im.px[0];
  for (float v : im.px) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  const ptrdiff_t n = ptrdiff_t(im.size());
  for (const KernelTable* t : all) {
    float mn = -1.0f, mx = -1.0f;
    const bool finite = t->scan(im.px.data(), n, &mn, &mx);
    record(finite && mn == lo && mx == hi, std::string(t->name) + " " + where,
           std::string(finite ? "finite" : "not finite") +
               fmt(", min %g max %g, expected %g %g", mn, mx, lo, hi));
    const float bad[] = {std::nanf(""), HUGE_VALF, -HUGE_VALF};
    for (float b : bad)
      for (ptrdiff_t pos : {ptrdiff_t(0), n / 2, n - 1}) {
        std::vector<float> px = im.px;
        px[size_t(pos)] = b;
        record(!t->scan(px.data(), n, &mn, &mx), std::string(t->name) + " " + where + " finds " +
                                                     fmt("%g", b) + " at " + std::to_string(pos));
      }
  }
}

// widen: every target converts uint8 and uint16 values exactly (all 256 byte values and
// the uint16 extremes), for lengths around the vector widths and block sizes.
void test_widen(const Targets& T) {
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  for (ptrdiff_t n : {ptrdiff_t(1), ptrdiff_t(15), ptrdiff_t(16), ptrdiff_t(17), ptrdiff_t(63),
                      ptrdiff_t(64), ptrdiff_t(65), ptrdiff_t(257), ptrdiff_t(1000)}) {
    std::vector<uint8_t> b(static_cast<size_t>(n));
    std::vector<uint16_t> w(static_cast<size_t>(n));
    for (ptrdiff_t i = 0; i < n; ++i) {
      b[size_t(i)] = uint8_t((i * 37 + 11) & 255);
      w[size_t(i)] = uint16_t(i % 3 == 0 ? 65535 : (i * 2654435761u) & 65535u);
    }
    for (const KernelTable* t : all) {
      std::vector<float> out(size_t(n) + 1, -7.0f);
      t->widen(b.data(), 1, n, out.data());
      bool ok = out[size_t(n)] == -7.0f;
      for (ptrdiff_t i = 0; i < n; ++i) ok = ok && out[size_t(i)] == float(b[size_t(i)]);
      record(ok, std::string(t->name) + " widen uint8 n=" + std::to_string(n), "mismatch");
      std::fill(out.begin(), out.end(), -7.0f);
      t->widen(w.data(), 2, n, out.data());
      ok = out[size_t(n)] == -7.0f;
      for (ptrdiff_t i = 0; i < n; ++i) ok = ok && out[size_t(i)] == float(w[size_t(i)]);
      record(ok, std::string(t->name) + " widen uint16 n=" + std::to_string(n), "mismatch");
    }
  }
}

// ---- model input quantisation (csrc/kernels/quant.hpp) -------------------------------------
// Exact: every target must equal a plain transcription (float32 product and sum, clamp,
// round half to even with nearbyintf in the default rounding mode), including exact ties.

float quant_mul(float a, float b) {
  volatile float r = a * b;  // no contraction into an FMA
  return r;
}

template <typename T>
void check_quantize(const Targets& T_, const std::vector<float>& x, int channels, const float* a,
                    const float* b, int out_type, float lo, float hi, const std::string& where) {
  const ptrdiff_t n = ptrdiff_t(x.size());
  std::vector<T> ref(x.size());
  for (ptrdiff_t i = 0; i < n; ++i) {
    const int c = int(i % channels);
    const float y = quant_mul(x[size_t(i)], a[c]) + b[c];
    if (sizeof(T) == 4) {
      std::memcpy(&ref[size_t(i)], &y, 4);
    } else {
      const float t = std::min(std::max(y, lo), hi);
      ref[size_t(i)] = T(int32_t(std::nearbyintf(t)));
    }
  }
  std::vector<const KernelTable*> all{T_.scalar};
  all.insert(all.end(), T_.others.begin(), T_.others.end());
  for (const KernelTable* t : all) {
    std::vector<T> got(x.size() + 1, T(0x5a));
    float mn = 0, mx = 0;
    const bool finite =
        t->quantize_affine(x.data(), n, channels, a, b, out_type, got.data(), &mn, &mx);
    ptrdiff_t bad = -1;
    for (ptrdiff_t i = 0; i < n && bad < 0; ++i)
      if (std::memcmp(&got[size_t(i)], &ref[size_t(i)], sizeof(T)) != 0) bad = i;
    const float xlo = *std::min_element(x.begin(), x.end());
    const float xhi = *std::max_element(x.begin(), x.end());
    record(finite && bad < 0 && mn == xlo && mx == xhi && got[x.size()] == T(0x5a),
           std::string(t->name) + " " + where,
           bad >= 0 ? fmt("first difference at %g", double(bad)) : "range/finite/overrun");
    std::vector<float> nan_x = x;
    nan_x[size_t(n / 2)] = std::nanf("");
    record(!t->quantize_affine(nan_x.data(), n, channels, a, b, out_type, got.data(), &mn, &mx),
           std::string(t->name) + " " + where + " finds NaN");
  }
}

void test_quantize(const Targets& T) {
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> u(-0.3f, 1.3f);
  const float a[4] = {255.0f, 254.9f, 127.5f, 300.0f};
  const float b[4] = {-128.0f, -127.3f, 0.5f, -150.0f};
  for (ptrdiff_t n : {1, 2, 7, 16, 33, 48, 101, 224 * 224}) {
    for (int ch = 1; ch <= medimg::kQuantMaxChannels; ++ch) {
      std::vector<float> x(size_t(n * ch));
      for (float& v : x) v = u(rng);
      const std::string where = fmt("quantize n=%g", double(n)) + " C=" + std::to_string(ch);
      check_quantize<int8_t>(T, x, ch, a, b, medimg::kQuantInt8, -128, 127, where + " int8");
      check_quantize<uint8_t>(T, x, ch, a, b, medimg::kQuantUint8, 0, 255, where + " uint8");
      check_quantize<float>(T, x, ch, a, b, medimg::kQuantFloat32, 0, 0, where + " float32");
    }
  }
  // Exact ties: x = k / 2 with a = 1, b = 0 gives y = k / 2; half to even decides.
  std::vector<float> ties;
  for (int k = -300; k <= 600; ++k) ties.push_back(float(k) * 0.5f);
  const float one = 1.0f, zero = 0.0f;
  check_quantize<int8_t>(T, ties, 1, &one, &zero, medimg::kQuantInt8, -128, 127, "ties int8");
  check_quantize<uint8_t>(T, ties, 1, &one, &zero, medimg::kQuantUint8, 0, 255, "ties uint8");
}

// ---- LBP (csrc/kernels/lbp.hpp) ----------------------------------------------------------
// Exact: the scalar table must equal a plain per-pixel transcription of scikit-image's
// algorithm (skimage/feature/_texture.pyx, bilinear_interpolation with mode 'C'), and every
// other target must equal the scalar table bit for bit.  Products go through lbp_mul so
// that the compiler cannot contract them into FMAs (aarch64 GCC would).

double lbp_mul(double a, double b) {
  volatile double r = a * b;
  return r;
}

struct LbpImage {
  std::string name;
  int dtype;
  ptrdiff_t rows, cols;
  std::vector<uint8_t> bytes;  // the image in its own element type
  std::vector<double> px;      // the same values as float64
};

template <typename T>
LbpImage lbp_image_of(const std::vector<double>& v, ptrdiff_t rows, ptrdiff_t cols, int dtype,
                      const std::string& name) {
  LbpImage im{name, dtype, rows, cols, std::vector<uint8_t>(v.size() * sizeof(T)), {}};
  for (size_t i = 0; i < v.size(); ++i) {
    const T t = static_cast<T>(v[i]);
    std::memcpy(im.bytes.data() + i * sizeof(T), &t, sizeof(T));
    im.px.push_back(static_cast<double>(t));
  }
  return im;
}

std::vector<LbpImage> lbp_images(ptrdiff_t rows, ptrdiff_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> small(0, 5), byte(0, 255), word(0, 65535);
  std::normal_distribution<double> gauss(0.0, 3.0);
  const size_t n = size_t(rows * cols);
  std::vector<double> a(n), b(n), c(n), d(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = small(rng);  // many ties: exercises t - I >= 0 at 0
    b[i] = word(rng);
    c[i] = gauss(rng);
    d[i] = byte(rng) / 7.0;
  }
  return {lbp_image_of<uint8_t>(a, rows, cols, medimg::kLbpU8, "u8[0,5]"),
          lbp_image_of<uint16_t>(b, rows, cols, medimg::kLbpU16, "u16[0,65535]"),
          lbp_image_of<float>(c, rows, cols, medimg::kLbpF32, "f32 N(0,3)"),
          lbp_image_of<double>(d, rows, cols, medimg::kLbpF64, "f64 k/7")};
}

// scikit-image's offsets: R as float32, -R sin / R cos of 2 pi i / P, rounded to 1e-5.
void lbp_offsets(int P, double R, std::vector<double>& rp, std::vector<double>& cp) {
  const double r = static_cast<float>(R);
  rp.assign(size_t(P), 0.0);
  cp.assign(size_t(P), 0.0);
  for (int i = 0; i < P; ++i) {
    const double angle = 2.0 * M_PI * i / P;
    rp[size_t(i)] = std::nearbyint(-r * std::sin(angle) * 1e5) / 1e5;
    cp[size_t(i)] = std::nearbyint(r * std::cos(angle) * 1e5) / 1e5;
  }
}

std::vector<double> lbp_reference(const LbpImage& im, int P, const std::vector<double>& rp,
                                  const std::vector<double>& cp, int method) {
  const ptrdiff_t rows = im.rows, cols = im.cols;
  auto pixel = [&](long r, long c) {
    return (r < 0 || r >= rows || c < 0 || c >= cols) ? 0.0 : im.px[size_t(r * cols + c)];
  };
  std::vector<double> out(size_t(rows * cols));
  std::vector<double> t(static_cast<size_t>(P));
  std::vector<int> s(static_cast<size_t>(P));
  for (ptrdiff_t r = 0; r < rows; ++r)
    for (ptrdiff_t c = 0; c < cols; ++c) {
      for (int i = 0; i < P; ++i) {
        const double y = static_cast<double>(r) + rp[size_t(i)];
        const double x = static_cast<double>(c) + cp[size_t(i)];
        const long y0 = long(std::floor(y)), x0 = long(std::floor(x));
        const long y1 = long(std::ceil(y)), x1 = long(std::ceil(x));
        const double dy = y - double(y0), dx = x - double(x0);
        const double top = lbp_mul(1 - dx, pixel(y0, x0)) + lbp_mul(dx, pixel(y0, x1));
        const double bottom = lbp_mul(1 - dx, pixel(y1, x0)) + lbp_mul(dx, pixel(y1, x1));
        t[size_t(i)] = lbp_mul(1 - dy, top) + lbp_mul(dy, bottom);
        s[size_t(i)] = t[size_t(i)] - pixel(long(r), long(c)) >= 0 ? 1 : 0;
      }
      double v = 0.0;
      if (method == medimg::kLbpVar) {
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < P; ++i) {
          sum += t[size_t(i)];
          sq += lbp_mul(t[size_t(i)], t[size_t(i)]);
        }
        sq = (sq - lbp_mul(sum, sum) / P) / P;
        v = sq != 0 ? sq : std::nan("");
      } else if (method == medimg::kLbpUniform || method == medimg::kLbpNriUniform) {
        int changes = 0, ones = 0, first_one = -1, first_zero = -1;
        for (int i = 0; i + 1 < P; ++i) changes += s[size_t(i)] != s[size_t(i) + 1];
        for (int i = 0; i < P; ++i) {
          if (s[size_t(i)]) {
            ++ones;
            if (first_one < 0) first_one = i;
          } else if (first_zero < 0) {
            first_zero = i;
          }
        }
        if (method == medimg::kLbpUniform) {
          v = changes <= 2 ? ones : P + 1;
        } else if (changes > 2) {
          v = P * (P - 1) + 2;
        } else if (ones == 0) {
          v = 0;
        } else if (ones == P) {
          v = P * (P - 1) + 1;
        } else {
          const int rot = first_one == 0 ? ones - first_zero : P - first_one;
          v = 1 + (ones - 1) * P + rot;
        }
      } else {
        // int32 weights 2^i (2^31 wraps to -2^31), summed into a double, as skimage.
        for (int i = 0; i < P; ++i)
          if (s[size_t(i)]) v += i == 31 ? -2147483648.0 : double(int64_t(1) << i);
        if (method == medimg::kLbpRor) {
          // Right rotations of the C int with its arithmetic shift; the minimum.
          int32_t cur = int32_t(v), best = cur;
          for (int k = 1; k < P; ++k) {
            const uint32_t low = uint32_t(cur & 1) << (P - 1);
            cur = int32_t(uint32_t(cur >> 1) | low);
            best = cur < best ? cur : best;
          }
          v = best;
        }
      }
      out[size_t(r * cols + c)] = v;
    }
  return out;
}

// Runs the kernel of table t with the scratch filled with `fill` (NaN, or garbage when
// fill is 0); returns the kernel's status.
medimg::LbpArgs lbp_args(const LbpImage& im, int P, const std::vector<double>& rp,
                         const std::vector<double>& cp, int method, double max_abs) {
  medimg::LbpArgs a{};
  a.image = im.bytes.data();
  a.dtype = im.dtype;
  a.rows = im.rows;
  a.cols = im.cols;
  a.P = P;
  a.method = method;
  a.rp = rp.data();
  a.cp = cp.data();
  a.max_abs = max_abs;
  a.pad = medimg::lbp_pad(a.cp, P, im.cols);
  a.hlen = medimg::lbp_hlen(im.cols);
  a.stride = medimg::lbp_stride(im.cols, a.pad);
  return a;
}

bool lbp_run(const KernelTable& t, const LbpImage& im, int P, const std::vector<double>& rp,
             const std::vector<double>& cp, int method, double max_abs, uint32_t garbage_seed,
             std::vector<double>& out) {
  medimg::LbpArgs a = lbp_args(im, P, rp, cp, method, max_abs);
  std::vector<double> scratch(medimg::lbp_scratch(im.cols, P, a.pad));
  if (garbage_seed == 0) {
    std::fill(scratch.begin(), scratch.end(), std::nan(""));
  } else {
    std::mt19937_64 rng(garbage_seed);
    for (double& v : scratch) {
      const uint64_t bits = rng();
      std::memcpy(&v, &bits, sizeof v);
    }
  }
  out.assign(size_t(im.rows * im.cols), std::nan(""));
  a.scratch = scratch.data();
  a.out = out.data();
  return t.lbp(a);
}

// The code histogram (LbpArgs::hist, no codes array) of one case: counts[k] over the
// pixels where mask != 0 (all if the mask is empty); scratch garbage-filled.
bool lbp_hist_run(const KernelTable& t, const LbpImage& im, int P, const std::vector<double>& rp,
                  const std::vector<double>& cp, int method, int nbins,
                  const std::vector<uint8_t>& mask, uint32_t garbage_seed,
                  std::vector<uint32_t>& counts) {
  medimg::LbpArgs a = lbp_args(im, P, rp, cp, method, 1e15);
  std::vector<double> scratch(medimg::lbp_scratch(im.cols, P, a.pad));
  std::mt19937_64 rng(garbage_seed);
  for (double& v : scratch) {
    const uint64_t bits = rng();
    std::memcpy(&v, &bits, sizeof v);
  }
  std::vector<uint32_t> hist(size_t(2 * nbins), 0xDEADBEEFu);
  for (uint32_t& h : hist) h = 0;
  a.scratch = scratch.data();
  a.out = nullptr;
  a.hist = hist.data();
  a.mask = mask.empty() ? nullptr : mask.data();
  a.nbins = nbins;
  const bool ok = t.lbp(a);
  counts.assign(size_t(nbins), 0);
  for (int k = 0; k < nbins; ++k) counts[size_t(k)] = hist[size_t(k)] + hist[size_t(nbins + k)];
  return ok;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b, size_t* where) {
  for (size_t i = 0; i < a.size(); ++i) {
    const bool nan_a = std::isnan(a[i]), nan_b = std::isnan(b[i]);
    if (nan_a != nan_b || (!nan_a && a[i] != b[i])) {
      *where = i;
      return false;
    }
  }
  return a.size() == b.size();
}

void test_lbp(const Targets& T) {
  const std::pair<ptrdiff_t, ptrdiff_t> sizes[] = {{1, 1}, {1, 19},  {23, 1}, {3, 3},
                                                   {7, 5}, {17, 33}, {40, 37}};
  const std::pair<int, double> params[] = {{1, 1.0},  {4, 1.0},  {8, 1.0},  {8, 1.5}, {12, 2.5},
                                           {16, 2.0}, {24, 3.0}, {32, 5.0}, {5, 0.3}, {8, 40.0}};
  const char* methods[] = {"default", "ror", "uniform", "nri_uniform", "var"};
  uint32_t seed = 77;
  for (const auto& sz : sizes) {
    for (const LbpImage& im : lbp_images(sz.first, sz.second, seed++)) {
      for (const auto& pr : params) {
        std::vector<double> rp, cp;
        lbp_offsets(pr.first, pr.second, rp, cp);
        for (int m = 0; m < 5; ++m) {
          const std::string where = im.name + " " + std::to_string(im.rows) + "x" +
                                    std::to_string(im.cols) +
                                    fmt(" P=%g R=%g ", pr.first, pr.second) + methods[m];
          const std::vector<double> ref = lbp_reference(im, pr.first, rp, cp, m);
          std::vector<double> expected, got, again;
          size_t at = 0;
          const bool ok = lbp_run(*T.scalar, im, pr.first, rp, cp, m, 1e15, 0, expected);
          record(ok && same_bits(expected, ref, &at), "scalar lbp " + where + " vs reference",
                 ok ? fmt("pixel %g: %.17g, expected %.17g", double(at), expected[at], ref[at])
                    : "kernel refused the image");
          std::vector<const KernelTable*> all{T.scalar};
          all.insert(all.end(), T.others.begin(), T.others.end());
          // Code histograms (packed counters, pattern counts or scalar counts) against the
          // counts of the scalar codes, without and with a mask.
          const int P = pr.first;
          const int nbins = m == medimg::kLbpUniform            ? P + 2
                            : m == medimg::kLbpNriUniform       ? P * (P - 1) + 3
                            : (m != medimg::kLbpVar && P <= 16) ? (1 << P)
                                                                : 0;
          if (nbins > 0 && ok) {
            std::vector<uint8_t> mask(expected.size());
            std::mt19937 mrng(seed * 13u + uint32_t(m));
            for (uint8_t& v : mask)
              v = static_cast<uint8_t>(mrng() % 3 == 0 ? 0 : 1 + mrng() % 200);
            for (int with_mask = 0; with_mask < 2; ++with_mask) {
              std::vector<uint32_t> want(size_t(nbins), 0);
              for (size_t i = 0; i < expected.size(); ++i)
                if (!with_mask || mask[i] != 0) ++want[size_t(expected[i])];
              for (const KernelTable* t : all) {
                std::vector<uint32_t> got_h;
                const bool okh =
                    lbp_hist_run(*t, im, P, rp, cp, m, nbins,
                                 with_mask ? mask : std::vector<uint8_t>{}, seed * 7u + 3u, got_h);
                record(okh && got_h == want, std::string(t->name) + " lbp histogram " + where +
                                                 (with_mask ? " masked" : "") +
                                                 " vs counts of the scalar codes");
              }
            }
          }
          for (const KernelTable* t : all) {
            const bool ok1 = lbp_run(*t, im, pr.first, rp, cp, m, 1e15, 0, got);
            const bool ok2 = lbp_run(*t, im, pr.first, rp, cp, m, 1e15, seed * 31u + 7u, again);
            record(ok1 && ok2 && same_bits(got, expected, &at) && same_bits(again, got, &at),
                   std::string(t->name) + " lbp " + where + " vs scalar (NaN / garbage scratch)",
                   fmt("pixel %g: %.17g / %.17g, scalar %.17g", double(at), got[at], again[at],
                       expected[at]));
          }
        }
      }
    }
  }
  // Refused inputs: NaN, infinity, |value| > max_abs anywhere (first, middle, last).
  std::vector<double> rp, cp, out;
  lbp_offsets(8, 1.0, rp, cp);
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  for (const KernelTable* t : all)
    for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL, 2e15})
      for (size_t pos : {size_t(0), size_t(300), size_t(17 * 33 - 1)}) {
        std::vector<double> v(17 * 33, 1.0);
        v[pos] = bad;
        const LbpImage f64 = lbp_image_of<double>(v, 17, 33, medimg::kLbpF64, "f64");
        const LbpImage f32 = lbp_image_of<float>(v, 17, 33, medimg::kLbpF32, "f32");
        for (const LbpImage* im : {&f64, &f32})
          record(!lbp_run(*t, *im, 8, rp, cp, medimg::kLbpUniform, 1e15, 0, out),
                 std::string(t->name) + " lbp refuses " + im->name +
                     fmt(" %g at %g", bad, double(pos)));
      }
}

// ---- first-order statistics, gradients, sharpness (csrc/kernels/stats.hpp) ----------------
// summary: the scalar table against a sort-based float64 reference of the documented NumPy
// semantics (histogram bins, "linear" percentiles, median absolute deviation, PyRadiomics'
// robust mean absolute deviation, central moments); every other target against scalar:
// counts, order statistics and deviations bit-identical, moments to 1e-12 relative.
// gradient / sharpness: scalar against float64 re-implementations (reflect-101 border),
// targets against scalar.  Scratch is NaN- then garbage-filled: results must not change.

struct StatsCase {
  std::string name;
  ptrdiff_t rows, cols;
  std::vector<float> px;
  std::vector<uint8_t> mask;  // empty: no mask
};

std::vector<StatsCase> stats_cases(ptrdiff_t rows, ptrdiff_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255), word(0, 4095), wide(-200000, 200000);
  std::uniform_real_distribution<double> real(-50.0, 1000.0), u01(0.0, 1.0);
  const size_t n = size_t(rows * cols);
  std::vector<StatsCase> out;
  auto add = [&](const std::string& name, auto gen) {
    StatsCase c{name, rows, cols, std::vector<float>(n), {}};
    for (float& v : c.px) v = gen();
    out.push_back(c);
    StatsCase m = c;
    m.name += "+mask";
    m.mask.resize(n);
    for (uint8_t& b : m.mask) b = u01(rng) < 0.4 ? 1 : 0;
    m.mask[n / 2] = 1;  // never empty
    out.push_back(m);
  };
  add("uint8", [&] { return float(byte(rng)); });
  add("uint12", [&] { return float(word(rng)); });
  add("wide-int", [&] { return float(wide(rng)); });
  add("real", [&] { return float(real(rng)); });
  add("ties", [&] { return float(byte(rng) % 3) * 0.5f; });
  add("constant", [&] { return 137.25f; });
  return out;
}

struct StatsRef {
  double count = 0, mn = 0, mx = 0, mean = 0, sumsq = 0, m2 = 0, m3 = 0, m4 = 0, absdev = 0;
  double mad = 0, rmad = 0, below = 0, above = 0;
  std::vector<uint32_t> hist;
  std::vector<double> q;
};

// A product the compiler cannot contract into an FMA (aarch64 GCC contracts by default;
// the kernels are compiled with -ffp-contract=off and NumPy rounds every operation).
double stats_mul(double a, double b) {
  volatile double r = a * b;
  return r;
}

double np_lerp_ref(double a, double b, double t) {
  const double d = b - a;
  return t >= 0.5 ? b - stats_mul(d, 1.0 - t) : a + stats_mul(d, t);
}

double percentile_ref(const std::vector<double>& s, double q) {
  const double n = double(s.size());
  const double v = (n - 1.0) * q;
  if (v >= n - 1.0) return s.back();
  const double f = std::floor(v);
  const size_t i = size_t(f);
  return np_lerp_ref(s[i], s[i + 1], v - f);
}

double median_ref(const std::vector<double>& s) {
  const size_t n = s.size();
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
}

StatsRef stats_reference(const StatsCase& c, int bins, const std::vector<double>& qs, float below,
                         float above, bool round_dev) {
  StatsRef r;
  std::vector<double> v;
  for (size_t i = 0; i < c.px.size(); ++i)
    if (c.mask.empty() || c.mask[i]) v.push_back(c.px[i]);
  std::sort(v.begin(), v.end());
  const double n = double(v.size());
  r.count = n;
  r.mn = v.front();
  r.mx = v.back();
  for (double x : v) {
    r.mean += x;
    r.sumsq += x * x;
    r.below += x <= below;
    r.above += x >= above;
  }
  r.mean /= n;
  for (double x : v) {
    const double d = x - r.mean;
    r.m2 += d * d / n;
    r.m3 += d * d * d / n;
    r.m4 += d * d * d * d / n;
    r.absdev += std::fabs(d) / n;
  }
  // numpy.histogram: edges i * step + first (numpy.linspace), bin = the edge interval.
  double first = r.mn, last = r.mx;
  if (first == last) first -= 0.5, last += 0.5;
  const double step = (last - first) / bins;
  auto edge = [&](int i) { return i == bins ? last : stats_mul(double(i), step) + first; };
  r.hist.assign(size_t(bins), 0u);
  for (double x : v) {
    int b = bins - 1;
    for (int i = 1; i < bins; ++i)
      if (x < edge(i)) {
        b = i - 1;
        break;
      }
    ++r.hist[size_t(b)];
  }
  for (double q : qs) r.q.push_back(percentile_ref(v, q));
  const double med = median_ref(v);
  std::vector<double> dev;
  for (double x : v) {
    const double d = std::fabs(x - med);
    dev.push_back(round_dev ? double(float(d)) : d);
  }
  std::sort(dev.begin(), dev.end());
  r.mad = median_ref(dev);
  const double lo = percentile_ref(v, 0.1), hi = percentile_ref(v, 0.9);
  double wn = 0, ws = 0;
  for (double x : v)
    if (x >= lo && x <= hi) wn += 1, ws += x;
  if (wn > 0) {
    const double wm = ws / wn;
    for (double x : v)
      if (x >= lo && x <= hi) r.rmad += std::fabs(x - wm) / wn;
  }
  return r;
}

struct StatsRun {
  medimg::Summary s{};
  std::vector<uint32_t> hist;
  std::vector<double> q;
};

StatsRun stats_run(const KernelTable& t, const StatsCase& c, int bins,
                   const std::vector<double>& qs, float below, float above, bool garbage,
                   bool as_u8 = false) {
  StatsRun r;
  r.hist.assign(size_t(bins), 0xdeadbeefu);
  r.q.assign(qs.size(), std::nan(""));
  const ptrdiff_t n = ptrdiff_t(c.px.size());
  std::vector<uint32_t> scratch(medimg::summary_scratch(n));
  std::mt19937 rng(99);
  for (uint32_t& w : scratch) w = garbage ? uint32_t(rng()) : 0x7fc00000u;
  medimg::SummaryRequest rq{};
  rq.mask = c.mask.empty() ? nullptr : c.mask.data();
  rq.bins = bins;
  rq.hist = r.hist.data();
  rq.nq = int(qs.size());
  rq.q = qs.data();
  rq.qout = r.q.data();
  rq.mad = 1;
  rq.rmad_lo = 0.1;
  rq.rmad_hi = 0.9;
  rq.below = below;
  rq.above = above;
  if (as_u8) {
    std::vector<uint8_t> bytes(c.px.begin(), c.px.end());
    t.summary_u8(bytes.data(), n, &rq, &r.s, scratch.data());
  } else {
    t.summary(c.px.data(), n, &rq, &r.s, scratch.data());
  }
  return r;
}

bool near_rel(double a, double b, double rel, double abs_tol = 0.0) {
  return std::fabs(a - b) <= rel * std::fabs(b) + abs_tol;
}

void test_summary(const Targets& T, const StatsCase& c) {
  const std::vector<double> qs = {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0};
  const int bins = 37;
  const float below = 10.0f, above = 500.0f;
  const std::string where = c.name + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols);
  const StatsRun s = stats_run(*T.scalar, c, bins, qs, below, above, false);
  const StatsRun s2 = stats_run(*T.scalar, c, bins, qs, below, above, true);
  const StatsRef ref = stats_reference(c, bins, qs, below, above, s.s.counting == 0);
  const double scale = std::max({std::fabs(ref.mn), std::fabs(ref.mx), 1.0});
  record(s.s.count == ref.count && s.s.min == ref.mn && s.s.max == ref.mx &&
             s.s.n_below == ref.below && s.s.n_above == ref.above,
         "scalar summary " + where + " counts, min, max",
         fmt("count %g/%g min %g/%g", s.s.count, ref.count, s.s.min, ref.mn));
  record(s.hist == ref.hist, "scalar summary " + where + " histogram == numpy.histogram");
  bool q_ok = s.q.size() == ref.q.size();
  for (size_t i = 0; q_ok && i < ref.q.size(); ++i) q_ok = s.q[i] == ref.q[i];
  size_t qbad = 0;
  while (qbad + 1 < ref.q.size() && s.q[qbad] == ref.q[qbad]) ++qbad;
  record(q_ok, "scalar summary " + where + " percentiles == numpy.percentile",
         fmt("q %g: %.17g vs %.17g", qs[qbad], s.q[qbad], ref.q[qbad]));
  record(s.s.mad == ref.mad, "scalar summary " + where + " median absolute deviation",
         fmt("%.17g vs %.17g (counting %g)", s.s.mad, ref.mad, s.s.counting));
  record(near_rel(s.s.rmad, ref.rmad, 1e-12, 1e-12 * scale),
         "scalar summary " + where + " robust mean absolute deviation",
         fmt("%.17g vs %.17g", s.s.rmad, ref.rmad));
  const double m2s = ref.m2 > 0 ? ref.m2 : 1.0;
  record(near_rel(s.s.mean, ref.mean, 1e-13, 1e-13 * scale) &&
             near_rel(s.s.sumsq, ref.sumsq, 1e-12) && near_rel(s.s.m2, ref.m2, 1e-10, 1e-14) &&
             std::fabs(s.s.m3 - ref.m3) <= 1e-9 * std::pow(m2s, 1.5) + 1e-14 &&
             std::fabs(s.s.m4 - ref.m4) <= 1e-9 * m2s * m2s + 1e-14 &&
             near_rel(s.s.absdev, ref.absdev, 1e-10, 1e-12 * scale),
         "scalar summary " + where + " moments vs float64",
         fmt("m2 %.17g vs %.17g, m3 %.6g vs %.6g", s.s.m2, ref.m2, s.s.m3, ref.m3));
  const bool same_scratch = s2.hist == s.hist && s2.q == s.q && s2.s.mad == s.s.mad &&
                            s2.s.m2 == s.s.m2 && s2.s.rmad == s.s.rmad;
  record(same_scratch, "scalar summary " + where + " independent of scratch contents");
  // summary_u8 (byte histogram) on every target: everything equal to the float kernel's
  // on the same values (the same counting path), when the values are bytes.
  bool bytes = true;
  for (float v : c.px) bytes = bytes && v >= 0.0f && v <= 255.0f && v == std::floor(v);
  if (bytes) {
    std::vector<const KernelTable*> all{T.scalar};
    all.insert(all.end(), T.others.begin(), T.others.end());
    for (const KernelTable* t : all) {
      const StatsRun u = stats_run(*t, c, bins, qs, below, above, true, true);
      const bool same = u.hist == s.hist && u.q == s.q && u.s.count == s.s.count &&
                        u.s.min == s.s.min && u.s.max == s.s.max && u.s.mad == s.s.mad &&
                        u.s.rmad == s.s.rmad && u.s.mean == s.s.mean && u.s.sumsq == s.s.sumsq &&
                        u.s.m2 == s.s.m2 && u.s.m3 == s.s.m3 && u.s.m4 == s.s.m4 &&
                        u.s.absdev == s.s.absdev && u.s.n_below == s.s.n_below &&
                        u.s.n_above == s.s.n_above && u.s.counting == 1;
      record(same, std::string(t->name) + " summary_u8 " + where + " == scalar float summary");
    }
  }
  for (const KernelTable* t : T.others) {
    const StatsRun o = stats_run(*t, c, bins, qs, below, above, true);
    const bool exact = o.hist == s.hist && o.q == s.q && o.s.count == s.s.count &&
                       o.s.min == s.s.min && o.s.max == s.s.max && o.s.mad == s.s.mad &&
                       o.s.n_below == s.s.n_below && o.s.n_above == s.s.n_above &&
                       o.s.counting == s.s.counting;
    record(exact, std::string(t->name) + " summary " + where + " counts/order stats == scalar");
    const bool close = near_rel(o.s.mean, s.s.mean, 1e-13, 1e-13 * scale) &&
                       near_rel(o.s.sumsq, s.s.sumsq, 1e-12) &&
                       near_rel(o.s.m2, s.s.m2, 1e-12, 1e-14) &&
                       std::fabs(o.s.m3 - s.s.m3) <= 1e-11 * std::pow(m2s, 1.5) + 1e-14 &&
                       std::fabs(o.s.m4 - s.s.m4) <= 1e-11 * m2s * m2s + 1e-14 &&
                       near_rel(o.s.absdev, s.s.absdev, 1e-12, 1e-13 * scale) &&
                       near_rel(o.s.rmad, s.s.rmad, 1e-12, 1e-13 * scale);
    note_margin("summary moments target vs scalar",
                std::fabs(o.s.m2 - s.s.m2) / (1e-12 * std::fabs(s.s.m2) + 1e-14));
    record(close, std::string(t->name) + " summary " + where + " moments vs scalar",
           fmt("m2 %.17g vs %.17g", o.s.m2, s.s.m2));
  }
}

double at_reflect(const StatsCase& c, ptrdiff_t y, ptrdiff_t x) {
  return c.px[size_t(reflect101(y, c.rows) * c.cols + reflect101(x, c.cols))];
}

// Exact orientation boundaries at multiples of pi/4 (as documented in stats.hpp).
void boundary_ref(int bins, int k, double* cs, double* sn) {
  if ((4 * k) % bins == 0) {
    const int e = 4 * k / bins;
    const double r = std::sqrt(0.5);
    const double c4[4] = {1.0, r, 0.0, -r}, s4[4] = {0.0, r, 1.0, r};
    *cs = c4[e];
    *sn = s4[e];
  } else {
    *cs = std::cos(M_PI * k / bins);
    *sn = std::sin(M_PI * k / bins);
  }
}

void test_gradient(const Targets& T, const StatsCase& c) {
  const std::string where = c.name + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols);
  const size_t n = c.px.size();
  for (int bins : {1, 4, 8, 9, 36}) {
    std::vector<double> mag(n), hist(static_cast<size_t>(bins), 0.0);
    double total = 0.0;
    for (ptrdiff_t y = 0; y < c.rows; ++y)
      for (ptrdiff_t x = 0; x < c.cols; ++x) {
        auto p = [&](ptrdiff_t dy, ptrdiff_t dx) { return at_reflect(c, y + dy, x + dx); };
        const double gx = (p(-1, 1) - p(-1, -1)) + 2 * (p(0, 1) - p(0, -1)) + (p(1, 1) - p(1, -1));
        const double gy =
            (p(1, -1) + 2 * p(1, 0) + p(1, 1)) - (p(-1, -1) + 2 * p(-1, 0) + p(-1, 1));
        const size_t i = size_t(y * c.cols + x);
        mag[i] = std::sqrt(gx * gx + gy * gy);
        if (!c.mask.empty() && !c.mask[i]) continue;
        const bool neg = gy < 0 || (gy == 0 && gx < 0);
        const double fx = neg ? -gx : gx, fy = neg ? -gy : gy;
        int b = 0;
        for (int k = 1; k < bins; ++k) {
          double cs, sn;
          boundary_ref(bins, k, &cs, &sn);
          if (stats_mul(fy, cs) - stats_mul(fx, sn) >= 0) b = k;
        }
        hist[size_t(b)] += mag[i];
        total += mag[i];
      }
    std::vector<std::vector<float>> mags;
    std::vector<std::vector<double>> hists;
    std::vector<const KernelTable*> all{T.scalar};
    all.insert(all.end(), T.others.begin(), T.others.end());
    for (const KernelTable* t : all) {
      std::vector<float> m(n), scratch(medimg::gradient_scratch(c.rows, c.cols));
      std::vector<double> h(static_cast<size_t>(bins));
      fill_nan(scratch);
      t->gradient(c.px.data(), c.mask.empty() ? nullptr : c.mask.data(), c.rows, c.cols, bins,
                  m.data(), h.data(), scratch.data());
      std::vector<float> m2(n);
      std::vector<double> h2(static_cast<size_t>(bins));
      fill_garbage(scratch);
      t->gradient(c.px.data(), c.mask.empty() ? nullptr : c.mask.data(), c.rows, c.cols, bins,
                  m2.data(), h2.data(), scratch.data());
      const std::string label =
          std::string(t->name) + " gradient(bins=" + std::to_string(bins) + ") " + where;
      record(m == m2 && h == h2, label + " independent of scratch contents");
      mags.push_back(m);
      hists.push_back(h);
    }
    std::string detail;
    record(close(mags[0], mag, 1e-6, "gradient magnitude scalar vs float64", nullptr, &detail),
           "scalar gradient magnitude " + where + " vs float64", detail);
    double herr = 0.0;
    for (int k = 0; k < bins; ++k)
      herr = std::max(herr, std::fabs(hists[0][size_t(k)] - hist[size_t(k)]));
    note_margin("gradient hist scalar vs float64", herr / (1e-6 * (1.0 + total)));
    record(herr <= 1e-6 * (1.0 + total),
           "scalar gradient hist(bins=" + std::to_string(bins) + ") " + where + " vs float64",
           fmt("max err %g (total %g)", herr, total));
    for (size_t j = 1; j < all.size(); ++j) {
      record(close(mags[j], std::vector<double>(mags[0].begin(), mags[0].end()), 1e-6,
                   "gradient magnitude target vs scalar", nullptr, &detail),
             std::string(all[j]->name) + " gradient magnitude " + where + " vs scalar", detail);
      double e = 0.0;
      for (int k = 0; k < bins; ++k)
        e = std::max(e, std::fabs(hists[j][size_t(k)] - hists[0][size_t(k)]));
      note_margin("gradient hist target vs scalar", e / (1e-6 * (1.0 + total)));
      record(e <= 1e-6 * (1.0 + total),
             std::string(all[j]->name) + " gradient hist " + where + " vs scalar",
             fmt("max err %g", e));
    }
  }
}

// gradient_u8 (the integer Sobel of a uint8 image, fused moments and quantiles): on every
// target, the histogram bit-identical to the float kernel's on the same pixels, the
// quantiles bit-identical to numpy.percentile ("linear") of the sorted float32 magnitudes,
// mean and variance to 1e-12 relative of float64 sums of those magnitudes.
void test_gradient_u8(const Targets& T, ptrdiff_t rows, ptrdiff_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t n = size_t(rows * cols);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> images;
  std::vector<uint8_t> a(n), b(n), c(n, 0), d(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = static_cast<uint8_t>(rng() % 256);
    b[i] = static_cast<uint8_t>((rng() % 2) * 255);  // largest magnitudes
    d[i] = static_cast<uint8_t>(rng() % 4);          // many equal magnitudes
  }
  images.push_back({"u8 uniform", a});
  images.push_back({"u8 {0,255}", b});
  images.push_back({"u8 zeros", c});
  images.push_back({"u8 [0,3]", d});
  std::vector<uint8_t> mask(n);
  for (uint8_t& v : mask) v = static_cast<uint8_t>(rng() % 3 == 0 ? 1 + rng() % 9 : 0);
  const double qs[] = {0.0, 0.1, 0.5, 0.9, 1.0};
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  for (const auto& im : images) {
    std::vector<float> px(im.second.begin(), im.second.end());
    for (int with_mask = 0; with_mask < 2; ++with_mask) {
      const uint8_t* m = with_mask ? mask.data() : nullptr;
      for (int bins : {1, 8, 9}) {
        const std::string where = im.first + " " + std::to_string(rows) + "x" +
                                  std::to_string(cols) + (with_mask ? " masked" : "") +
                                  fmt(" bins=%g", bins);
        for (const KernelTable* t : all) {
          std::vector<float> mag(n), fscratch(medimg::gradient_scratch(rows, cols));
          std::vector<double> hf(static_cast<size_t>(bins)), h8(static_cast<size_t>(bins)), qo(5),
              mom(3);
          t->gradient(px.data(), m, rows, cols, bins, mag.data(), hf.data(), fscratch.data());
          std::vector<uint32_t> scratch(medimg::gradient_u8_scratch(rows, cols), 0xA5A5A5A5u);
          t->gradient_u8(im.second.data(), m, rows, cols, bins, 5, qs, qo.data(), h8.data(),
                         mom.data(), scratch.data());
          std::vector<double> sel;
          double sum = 0.0, sq = 0.0;
          for (size_t i = 0; i < n; ++i)
            if (m == nullptr || m[i] != 0) {
              sel.push_back(static_cast<double>(mag[i]));
              sum += mag[i];
              sq += static_cast<double>(mag[i]) * mag[i];
            }
          std::sort(sel.begin(), sel.end());
          const double cnt = static_cast<double>(sel.size());
          bool qok = true;
          for (int j = 0; j < 5; ++j) {
            if (sel.empty()) {
              qok = qok && std::isnan(qo[size_t(j)]);
              continue;
            }
            const double v = (cnt - 1.0) * qs[j];
            const size_t lo = static_cast<size_t>(std::floor(v));
            const size_t hi = std::min(lo + 1, sel.size() - 1);
            const double g = v - std::floor(v), x = sel[lo], y = sel[hi];
            const double want = g >= 0.5 ? y - (y - x) * (1.0 - g) : x + (y - x) * g;
            qok = qok && qo[size_t(j)] == want;
          }
          const double mean = cnt > 0 ? sum / cnt : 0.0;
          const double var = cnt > 0 ? sq / cnt - mean * mean : 0.0;
          const bool mok =
              mom[0] == cnt &&
              (cnt == 0 || (std::fabs(mom[1] - mean) <= 1e-12 * std::fabs(mean) + 1e-300 &&
                            std::fabs(mom[2] - std::max(var, 0.0)) <= 1e-12 * (sq / cnt) + 1e-300));
          record(h8 == hf,
                 std::string(t->name) + " gradient_u8 hist " + where + " == float gradient's");
          record(qok, std::string(t->name) + " gradient_u8 quantiles " + where +
                          " == percentiles of the sorted float32 magnitudes");
          record(mok, std::string(t->name) + " gradient_u8 moments " + where,
                 fmt("mean %.17g vs %.17g", mom[1], mean));
        }
      }
    }
  }
}

void test_sharpness(const Targets& T, const StatsCase& c) {
  if (!c.mask.empty()) return;
  const std::string where = c.name + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols);
  // float64 reference and the sums of absolute terms (the tolerance scale).
  double ref[7] = {0}, mag[7] = {0};
  const int r = medimg::kSharpnessBox / 2;
  auto box_h = [&](ptrdiff_t y, ptrdiff_t x) {
    double s = 0;
    for (int k = -r; k <= r; ++k) s += at_reflect(c, y, x + k);
    return s / medimg::kSharpnessBox;
  };
  auto box_v = [&](ptrdiff_t y, ptrdiff_t x) {
    double s = 0;
    for (int k = -r; k <= r; ++k) s += at_reflect(c, y + k, x);
    return s / medimg::kSharpnessBox;
  };
  for (ptrdiff_t y = 0; y < c.rows; ++y)
    for (ptrdiff_t x = 0; x < c.cols; ++x) {
      auto p = [&](ptrdiff_t dy, ptrdiff_t dx) { return at_reflect(c, y + dy, x + dx); };
      const double lap = p(-1, 0) + p(1, 0) + p(0, -1) + p(0, 1) - 4 * p(0, 0);
      const double gx = (p(-1, 1) - p(-1, -1)) + 2 * (p(0, 1) - p(0, -1)) + (p(1, 1) - p(1, -1));
      const double gy = (p(1, -1) + 2 * p(1, 0) + p(1, 1)) - (p(-1, -1) + 2 * p(-1, 0) + p(-1, 1));
      ref[0] += lap, mag[0] += std::fabs(lap);
      ref[1] += lap * lap, mag[1] += lap * lap;
      ref[2] += gx * gx + gy * gy, mag[2] += gx * gx + gy * gy;
      if (x >= 1) {
        const double d = std::fabs(p(0, 0) - p(0, -1));
        const double db = std::fabs(box_h(y, x) - box_h(y, x - 1));
        ref[3] += d, mag[3] += d;
        ref[4] += std::max(d - db, 0.0), mag[4] += d;
      }
      if (y >= 1) {
        const double d = std::fabs(p(0, 0) - p(-1, 0));
        const double db = std::fabs(box_v(y, x) - box_v(y - 1, x));
        ref[5] += d, mag[5] += d;
        ref[6] += std::max(d - db, 0.0), mag[6] += d;
      }
    }
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  medimg::Sharpness s0{};
  for (const KernelTable* t : all) {
    std::vector<float> scratch(medimg::sharpness_scratch(c.rows, c.cols));
    medimg::Sharpness a{}, b{};
    fill_nan(scratch);
    t->sharpness(c.px.data(), c.rows, c.cols, &a, scratch.data());
    fill_garbage(scratch);
    t->sharpness(c.px.data(), c.rows, c.cols, &b, scratch.data());
    const double got[7] = {a.lap_sum, a.lap_sumsq, a.tenengrad_sum, a.diff_h,
                           a.lost_h,  a.diff_v,    a.lost_v};
    const double again[7] = {b.lap_sum, b.lap_sumsq, b.tenengrad_sum, b.diff_h,
                             b.lost_h,  b.diff_v,    b.lost_v};
    const std::string label = std::string(t->name) + " sharpness " + where;
    record(std::memcmp(got, again, sizeof got) == 0, label + " independent of scratch contents");
    if (t == T.scalar) s0 = a;
    const double base[7] = {s0.lap_sum, s0.lap_sumsq, s0.tenengrad_sum, s0.diff_h,
                            s0.lost_h,  s0.diff_v,    s0.lost_v};
    for (int i = 0; i < 7; ++i) {
      const double tol = 1e-5 * (1.0 + mag[i]);
      const double vs = t == T.scalar ? ref[i] : base[i];
      note_margin(t == T.scalar ? "sharpness scalar vs float64" : "sharpness target vs scalar",
                  std::fabs(got[i] - vs) / tol);
      record(std::isfinite(got[i]) && std::fabs(got[i] - vs) <= tol,
             label + fmt(" sum %g vs ", i) + (t == T.scalar ? "float64" : "scalar"),
             fmt("%.12g vs %.12g", got[i], vs));
    }
  }
}

void test_stats(const Targets& T) {
  const std::pair<ptrdiff_t, ptrdiff_t> sizes[] = {{1, 1}, {1, 19},  {23, 1},  {3, 3},
                                                   {7, 5}, {17, 33}, {64, 64}, {100, 131}};
  uint32_t seed = 4242;
  for (const auto& sz : sizes)
    for (const StatsCase& c : stats_cases(sz.first, sz.second, seed++)) {
      test_summary(T, c);
      test_gradient(T, c);
      test_sharpness(T, c);
    }
  for (const auto& sz : sizes) test_gradient_u8(T, sz.first, sz.second, seed++);
}

// ---- GLCM (glcm.hpp) ----------------------------------------------------------------------

// Co-occurrence counts by the definition (skimage's _glcm_loop): every pixel (r, c) whose
// partner (r + dr, c + dc) is inside adds one to P[v(r, c), v(r + dr, c + dc)]; symmetric:
// P + P^T.  Matrices contiguous, k-major.
template <typename T>
std::vector<uint32_t> ref_glcm(const std::vector<T>& img, ptrdiff_t rows, ptrdiff_t cols,
                               ptrdiff_t L, const std::vector<ptrdiff_t>& dr,
                               const std::vector<ptrdiff_t>& dc, bool symmetric) {
  const size_t K = dr.size(), LL = size_t(L * L);
  std::vector<uint32_t> P(K * LL, 0);
  for (size_t k = 0; k < K; ++k)
    for (ptrdiff_t r = 0; r < rows; ++r)
      for (ptrdiff_t c = 0; c < cols; ++c) {
        const ptrdiff_t rr = r + dr[k], cc = c + dc[k];
        if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
        ++P[k * LL + size_t(img[size_t(r * cols + c)]) * size_t(L) + img[size_t(rr * cols + cc)]];
      }
  if (symmetric) {
    const std::vector<uint32_t> Q = P;
    for (size_t k = 0; k < K; ++k)
      for (ptrdiff_t i = 0; i < L; ++i)
        for (ptrdiff_t j = 0; j < L; ++j)
          P[k * LL + size_t(i * L + j)] =
              Q[k * LL + size_t(i * L + j)] + Q[k * LL + size_t(j * L + i)];
  }
  return P;
}

// The properties of one L x L matrix by their formulas (src/medimg_edge/features/_glcm.py),
// summed cell by cell in float64.
std::vector<double> ref_glcm_props(const double* M, ptrdiff_t L) {
  std::vector<double> out(medimg::kGlcmProps, 0.0);
  double n = 0.0;
  for (ptrdiff_t t = 0; t < L * L; ++t) n += M[t];
  if (n == 0.0) {
    out[medimg::kGlcmCorrelation] = 1.0;
    return out;
  }
  std::vector<double> px(size_t(L), 0.0), py(size_t(L), 0.0), pd(size_t(L), 0.0),
      ps(size_t(2 * L), 0.0);
  double mux = 0, muy = 0, maxp = 0;
  for (ptrdiff_t i = 0; i < L; ++i)
    for (ptrdiff_t j = 0; j < L; ++j) {
      const double p = M[i * L + j] / n;
      px[size_t(i)] += p;
      py[size_t(j)] += p;
      pd[size_t(std::abs(i - j))] += p;
      ps[size_t(i + j)] += p;
      mux += double(i) * p;
      muy += double(j) * p;
      maxp = std::max(maxp, p);
    }
  auto h2 = [](const std::vector<double>& v) {
    double h = 0;
    for (double q : v)
      if (q > 0) h -= q * std::log2(q);
    return h;
  };
  double vx = 0, vy = 0, cov = 0, con = 0, dis = 0, hom = 0, asm_ = 0, ent = 0, ac = 0;
  double ct = 0, cs = 0, cp = 0, hxy1 = 0;
  for (ptrdiff_t i = 0; i < L; ++i)
    for (ptrdiff_t j = 0; j < L; ++j) {
      const double p = M[i * L + j] / n, di = double(i) - mux, dj = double(j) - muy;
      const double d = double(i - j), e = double(i + j) - mux - muy;
      vx += p * di * di;
      vy += p * dj * dj;
      cov += p * di * dj;
      con += p * d * d;
      dis += p * std::fabs(d);
      hom += p / (1 + d * d);
      asm_ += p * p;
      ac += p * double(i + 1) * double(j + 1);
      ct += p * e * e;
      cs += p * e * e * e;
      cp += p * e * e * e * e;
      if (p > 0) {
        ent -= p * std::log(p);
        hxy1 -= p * std::log2(px[size_t(i)] * py[size_t(j)]);
      }
    }
  double da = 0, dv = 0, id = 0, idn = 0, idmn = 0, iv = 0, sa = 0;
  for (ptrdiff_t k = 0; k < L; ++k) da += double(k) * pd[size_t(k)];
  for (ptrdiff_t k = 0; k < L; ++k) {
    const double q = pd[size_t(k)], kk = double(k), dl = double(L);
    dv += (kk - da) * (kk - da) * q;
    id += q / (1 + kk);
    idn += q / (1 + kk / dl);
    idmn += q / (1 + kk * kk / (dl * dl));
    if (k > 0) iv += q / (kk * kk);
  }
  for (ptrdiff_t k = 0; k < 2 * L - 1; ++k) sa += double(k + 2) * ps[size_t(k)];
  const double sx = std::sqrt(vx), sy = std::sqrt(vy);
  const double hx = h2(px), hy = h2(py), hxy = ent / std::log(2.0);
  using namespace medimg;
  out[kGlcmContrast] = con;
  out[kGlcmDissimilarity] = dis;
  out[kGlcmHomogeneity] = hom;
  out[kGlcmASM] = asm_;
  out[kGlcmEnergy] = std::sqrt(asm_);
  out[kGlcmCorrelation] = (sx < 1e-15 || sy < 1e-15) ? 1.0 : cov / (sx * sy);
  out[kGlcmMean] = mux;
  out[kGlcmVariance] = vx;
  out[kGlcmStd] = sx;
  out[kGlcmEntropy] = ent;
  out[kGlcmAutocorrelation] = ac;
  out[kGlcmClusterProminence] = cp;
  out[kGlcmClusterShade] = cs;
  out[kGlcmClusterTendency] = ct;
  out[kGlcmDifferenceAverage] = da;
  out[kGlcmDifferenceEntropy] = h2(pd);
  out[kGlcmDifferenceVariance] = dv;
  out[kGlcmId] = id;
  out[kGlcmIdmn] = idmn;
  out[kGlcmIdn] = idn;
  out[kGlcmImc1] = std::max(hx, hy) > 0 ? (hxy - hxy1) / std::max(hx, hy) : 0.0;
  out[kGlcmImc2] = hxy1 > hxy ? std::sqrt(1 - std::exp(-2 * (hxy1 - hxy))) : 0.0;
  out[kGlcmInverseVariance] = iv;
  out[kGlcmJointEntropy] = hxy;
  out[kGlcmMaximumProbability] = maxp;
  out[kGlcmSumAverage] = sa;
  out[kGlcmSumEntropy] = h2(ps);
  return out;
}

// Which GlcmNeed bit a property needs (0: always computed).
int glcm_need_of(int p) {
  using namespace medimg;
  switch (p) {
    case kGlcmContrast:
    case kGlcmDissimilarity:
    case kGlcmHomogeneity:
    case kGlcmDifferenceAverage:
    case kGlcmDifferenceEntropy:
    case kGlcmDifferenceVariance:
    case kGlcmId:
    case kGlcmIdmn:
    case kGlcmIdn:
    case kGlcmInverseVariance:
      return kGlcmNeedDif;
    case kGlcmClusterProminence:
    case kGlcmClusterShade:
    case kGlcmClusterTendency:
    case kGlcmSumAverage:
    case kGlcmSumEntropy:
      return kGlcmNeedSum;
    case kGlcmEntropy:
    case kGlcmJointEntropy:
    case kGlcmImc1:
    case kGlcmImc2:
      return kGlcmNeedLog;
    default:
      return 0;
  }
}

// props of every target on K matrices (uint32 counts at stride `stride`, or float64):
// scalar vs the float64 formulas, other targets vs scalar, every `need` subset equal to
// the full computation and NaN elsewhere.
void check_glcm_props(const Targets& T, const void* P, bool is_double, ptrdiff_t L, ptrdiff_t K,
                      ptrdiff_t stride, const std::string& where) {
  std::vector<double> dense(size_t(L * L));
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  std::vector<double> scalar_out;
  for (const KernelTable* t : all) {
    const std::string label = std::string(t->name) + " " + where;
    std::vector<double> out(size_t(medimg::kGlcmProps * K), -7.0);
    std::vector<double> scratch(medimg::glcm_props_scratch(L), std::nan(""));
    const bool ok =
        t->glcm_props(P, is_double, medimg::kGlcmNeedAll, L, K, stride, out.data(), scratch.data());
    record(ok, label + " glcm_props accepts valid input");
    if (t == T.scalar) {
      scalar_out = out;
      for (ptrdiff_t k = 0; k < K; ++k) {
        for (ptrdiff_t c = 0; c < L * L; ++c)
          dense[size_t(c)] = is_double ? static_cast<const double*>(P)[k * stride + c]
                                       : double(static_cast<const uint32_t*>(P)[k * stride + c]);
        const std::vector<double> ref = ref_glcm_props(dense.data(), L);
        for (int p = 0; p < medimg::kGlcmProps; ++p) {
          double got = out[size_t(p * K + k)], want = ref[size_t(p)];
          if (p == medimg::kGlcmImc2) {  // sqrt(1 - e^-2m) magnifies the rounding of m
            got *= got;
            want *= want;
          }
          const double tol = 1e-9 * std::max(1.0, std::fabs(want));
          note_margin("glcm_props scalar vs float64", std::fabs(got - want) / tol);
          record(std::fabs(got - want) <= tol,
                 label + " " + medimg::kGlcmPropNames[p] + " vs formula",
                 fmt("k=%g got %.15g ref %.15g", double(k), got, ref[size_t(p)]));
        }
      }
    } else {
      for (size_t i = 0; i < out.size(); ++i) {
        // Summation order differs: odd moments (cluster_shade) cancel to ~1e-12.
        const double tol = 1e-10 * std::max(1.0, std::fabs(scalar_out[i]));
        note_margin("glcm_props target vs scalar", std::fabs(out[i] - scalar_out[i]) / tol);
        record(std::fabs(out[i] - scalar_out[i]) <= tol,
               label + " " + medimg::kGlcmPropNames[i / size_t(K)] + " vs scalar",
               fmt("got %.15g scalar %.15g", out[i], scalar_out[i]));
      }
    }
    for (int need = 0; need < medimg::kGlcmNeedAll; ++need) {
      std::vector<double> sub(out.size(), -7.0);
      t->glcm_props(P, is_double, need, L, K, stride, sub.data(), scratch.data());
      bool same = true;
      for (size_t i = 0; i < out.size(); ++i) {
        const int p = int(i / size_t(K)), bit = glcm_need_of(p);
        const bool empty_matrix =
            out[size_t(medimg::kGlcmMaximumProbability) * size_t(K) + i % size_t(K)] == 0.0;
        if (bit == 0 || (need & bit) || empty_matrix)
          same = same && std::memcmp(&sub[i], &out[i], sizeof(double)) == 0;
        else
          same = same && std::isnan(sub[i]);
      }
      record(same, label + fmt(" need=%g subset equals the full computation", need));
    }
  }
}

template <typename T>
void check_glcm_case(const Targets& Tt, const std::vector<T>& img, ptrdiff_t rows, ptrdiff_t cols,
                     ptrdiff_t L, const std::vector<ptrdiff_t>& dr,
                     const std::vector<ptrdiff_t>& dc, bool symmetric, const std::string& name) {
  const ptrdiff_t K = ptrdiff_t(dr.size()), stride = medimg::glcm_matrix_stride(L);
  const std::string where = name + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                            " L=" + std::to_string(L) + " K=" + std::to_string(K) +
                            (symmetric ? " symmetric" : "");
  const std::vector<uint32_t> ref = ref_glcm(img, rows, cols, L, dr, dc, symmetric);
  std::vector<const KernelTable*> all{Tt.scalar};
  all.insert(all.end(), Tt.others.begin(), Tt.others.end());
  std::vector<uint32_t> counts;
  static std::mt19937 garbage(99);
  for (const KernelTable* t : all) {
    const std::string label = std::string(t->name) + " " + where;
    std::vector<uint32_t> out(medimg::glcm_out_words(L, K));
    for (uint32_t& w : out) w = garbage();  // the kernel must zero what it counts into
    medimg::GlcmArgs a{img.data(),
                       sizeof(T) == 1 ? medimg::kGlcmU8 : medimg::kGlcmU16,
                       rows,
                       cols,
                       L,
                       K,
                       dr.data(),
                       dc.data(),
                       symmetric ? 1 : 0,
                       out.data()};
    int64_t mx = -1;
    record(t->glcm(a, &mx), label + " glcm accepts values < levels");
    bool same = true;
    for (ptrdiff_t k = 0; k < K && same; ++k)
      same = std::memcmp(out.data() + k * stride, ref.data() + k * L * L,
                         size_t(L * L) * sizeof(uint32_t)) == 0;
    record(same, label + " glcm counts equal the definition");
    // normalize: a true division of every count by its matrix's sum.
    std::vector<double> nrm(size_t(K * L * L), std::nan(""));
    t->glcm_normalize(out.data(), K, L * L, stride, nrm.data());
    bool exact = true;
    for (ptrdiff_t k = 0; k < K; ++k) {
      double s = 0;
      for (ptrdiff_t c = 0; c < L * L; ++c) s += ref[size_t(k * L * L + c)];
      if (s == 0) s = 1;
      for (ptrdiff_t c = 0; c < L * L; ++c) {
        const double want = double(ref[size_t(k * L * L + c)]) / s;
        exact = exact && std::memcmp(&want, &nrm[size_t(k * L * L + c)], sizeof(double)) == 0;
      }
    }
    record(exact, label + " glcm_normalize divides by the sum");
    if (t == Tt.scalar) counts = out;
    if (t == Tt.scalar && K > 0) {
      check_glcm_props(Tt, counts.data(), false, L, K, stride, where + " counts");
      check_glcm_props(Tt, nrm.data(), true, L, K, L * L, where + " normalised");
    }
  }
}

void test_glcm(const Targets& T) {
  const std::pair<ptrdiff_t, ptrdiff_t> sizes[] = {{1, 1}, {1, 19},  {23, 1},  {3, 3},
                                                   {7, 5}, {17, 33}, {64, 64}, {100, 131}};
  std::mt19937 rng(777);
  for (const auto& sz : sizes) {
    const ptrdiff_t rows = sz.first, cols = sz.second;
    // skimage's four angles at distance 1; then offsets of every sign, (0, 0), offsets that
    // leave the image (clamped to its size, as the wrapper passes them), five of them.
    const std::vector<ptrdiff_t> dr4{0, -1, -1, -1}, dc4{1, 1, 0, -1};
    const std::vector<ptrdiff_t> drx{0, 2, -5, rows, 1}, dcx{0, -3, 1, 0, -cols};
    for (ptrdiff_t L : {ptrdiff_t(2), ptrdiff_t(7), ptrdiff_t(32), ptrdiff_t(256)}) {
      std::vector<uint8_t> img(size_t(rows * cols));
      std::uniform_int_distribution<int> v(0, int(L) - 1);
      for (auto& p : img) p = uint8_t(v(rng));
      for (bool sym : {false, true}) {
        check_glcm_case(T, img, rows, cols, L, dr4, dc4, sym, "u8");
        check_glcm_case(T, img, rows, cols, L, drx, dcx, sym, "u8");
      }
      // a flat image: every pixel increments the same cells
      std::vector<uint8_t> flat(size_t(rows * cols), uint8_t(L - 1));
      check_glcm_case(T, flat, rows, cols, L, dr4, dc4, false, "u8-flat");
    }
    for (ptrdiff_t L : {ptrdiff_t(300), ptrdiff_t(1024)}) {
      std::vector<uint16_t> img(size_t(rows * cols));
      std::uniform_int_distribution<int> v(0, int(L) - 1);
      for (auto& p : img) p = uint16_t(v(rng));
      check_glcm_case(T, img, rows, cols, L, L == 300 ? drx : dr4, L == 300 ? dcx : dc4, L == 300,
                      "u16");
    }
  }
  // A pixel value >= levels: false with the maximum, on every target.
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  for (const KernelTable* t : all) {
    std::vector<uint16_t> img(77, 3);
    img[76] = 40;
    const std::vector<ptrdiff_t> dr{0}, dc{1};
    std::vector<uint32_t> out(medimg::glcm_out_words(40, 1));
    medimg::GlcmArgs a{img.data(), medimg::kGlcmU16, 7,         11, 40,
                       1,          dr.data(),        dc.data(), 0,  out.data()};
    int64_t mx = -1;
    record(!t->glcm(a, &mx) && mx == 40, std::string(t->name) + " glcm refuses a value >= levels");
    std::vector<uint8_t> img8(77, 3);
    img8[0] = 200;
    medimg::GlcmArgs b{img8.data(), medimg::kGlcmU8, 7,         11, 200,
                       1,           dr.data(),       dc.data(), 0,  out.data()};
    record(!t->glcm(b, &mx) && mx == 200, std::string(t->name) + " glcm refuses uint8 >= levels");
  }
  // Negative, NaN and infinite float64 entries anywhere (first, tail lane, last) are refused.
  for (const KernelTable* t : all)
    for (double bad : {-1.0, std::nan(""), HUGE_VAL})
      for (ptrdiff_t pos :
           {ptrdiff_t(0), ptrdiff_t(2 * 19 * 19 + 18 * 19 + 17), ptrdiff_t(3 * 19 * 19 - 1)}) {
        std::vector<double> P(size_t(3 * 19 * 19), 1.0), out(size_t(medimg::kGlcmProps * 3));
        std::vector<double> scratch(medimg::glcm_props_scratch(19));
        P[size_t(pos)] = bad;
        record(!t->glcm_props(P.data(), 1, medimg::kGlcmNeedAll, 19, 3, 19 * 19, out.data(),
                              scratch.data()),
               std::string(t->name) + fmt(" glcm_props refuses %g at %g", bad, double(pos)));
      }
}
}  // namespace

// ---- features: extract_u8 (extract.hpp) ------------------------------------------------
// On every target: the values are those of the same target's kernels called one by one
// (summary_u8, the quantised GLCM and its properties averaged over the angles, the uniform
// LBP histogram, gradient_u8), bit for bit; the float32 [0, 1] input gives the values of
// its uint8 rounding after the sign(v) log1p(10 |v|) transform; scratch filled with NaN or
// garbage gives the same output (sized exactly, so ASan sees an overrun); every target
// within 1e-5 relative of scalar (as tests/test_extract.py: the vector GLCM logarithms and
// sums; observed <= 3e-7).
namespace {
void extract_by_kernels(const KernelTable* t, const std::vector<uint8_t>& img, ptrdiff_t rows,
                        ptrdiff_t cols, int L, int nd, const std::vector<ptrdiff_t>& dr,
                        const std::vector<ptrdiff_t>& dc, int P, const double* rp, const double* cp,
                        std::vector<double>* out) {
  const ptrdiff_t n = rows * cols, K = ptrdiff_t(dr.size()), na = K / nd;
  const double qs[5] = {0.1, 0.25, 0.5, 0.75, 0.9};
  double qo[5];
  std::vector<uint32_t> hist(64), sc(4 * 257);
  medimg::SummaryRequest rq{};
  rq.bins = 64;
  rq.hist = hist.data();
  rq.nq = 5;
  rq.q = qs;
  rq.qout = qo;
  rq.mad = 1;
  rq.rmad_lo = 0.1;
  rq.rmad_hi = 0.9;
  medimg::Summary s{};
  t->summary_u8(img.data(), n, &rq, &s, sc.data());
  // the composition's checks on what it reads (the arithmetic itself is the Python
  // tests' business): min, max, quantiles, mean
  out->assign({s.mean, s.min, qo[0], qo[2], qo[4], s.max});
  std::vector<uint8_t> q(static_cast<size_t>(n));
  const double scale = s.max > s.min ? double(L) / (s.max - s.min) : HUGE_VAL;
  for (ptrdiff_t i = 0; i < n; ++i) {
    double x = double(img[size_t(i)]);
    if (std::isfinite(scale))
      x = std::min(std::max(std::floor((x - s.min) * scale), 0.0), double(L) - 1.0);
    else
      x = x <= s.min ? 0.0 : double(L) - 1.0;
    q[size_t(i)] = uint8_t(x);
  }
  std::vector<uint32_t> counts(medimg::glcm_out_words(L, K));
  medimg::GlcmArgs g{q.data(), medimg::kGlcmU8, rows,      cols, L,
                     K,        dr.data(),       dc.data(), 1,    counts.data()};
  int64_t mx = 0;
  t->glcm(g, &mx);
  std::vector<double> props(size_t(medimg::kGlcmProps * K)), ps(medimg::glcm_props_scratch(L));
  t->glcm_props(counts.data(), 0, medimg::kGlcmNeedAll, L, K, medimg::glcm_matrix_stride(L),
                props.data(), ps.data());
  for (int p = 0; p < medimg::kGlcmProps; ++p)
    for (int d = 0; d < nd; ++d) {
      double sum = 0.0;
      int m = 0;
      for (ptrdiff_t j = 0; j < na; ++j) {
        const ptrdiff_t k = d * na + j;
        uint64_t tot = 0;
        for (ptrdiff_t c = 0; c < ptrdiff_t(L) * L; ++c)
          tot += counts[size_t(k * medimg::glcm_matrix_stride(L) + c)];
        if (tot > 0) {
          sum += props[size_t(p * K + k)];
          ++m;
        }
      }
      out->push_back(m > 0 ? sum / m : std::nan(""));
    }
  medimg::LbpArgs l{};
  l.image = img.data();
  l.dtype = medimg::kLbpU8;
  l.rows = rows;
  l.cols = cols;
  l.P = P;
  l.method = medimg::kLbpUniform;
  l.rp = rp;
  l.cp = cp;
  l.max_abs = 1e15;
  l.pad = medimg::lbp_pad(cp, P, cols);
  l.hlen = medimg::lbp_hlen(cols);
  l.stride = medimg::lbp_stride(cols, l.pad);
  std::vector<double> lsc(medimg::lbp_scratch(cols, P, l.pad));
  std::vector<uint32_t> lh(size_t(2 * (P + 2)));
  l.scratch = lsc.data();
  l.hist = lh.data();
  l.nbins = P + 2;
  t->lbp(l);
  for (int k = 0; k < P + 2; ++k) out->push_back(double(lh[size_t(k)] + lh[size_t(P + 2 + k)]));
  std::vector<uint32_t> gs(medimg::gradient_u8_scratch(rows, cols));
  double gq = 0.0, mom[3];
  std::vector<double> gh(8);
  const double p90 = 0.9;
  t->gradient_u8(img.data(), nullptr, rows, cols, 8, 1, &p90, &gq, gh.data(), mom, gs.data());
  out->push_back(mom[1]);
  out->push_back(gq);
  for (double h : gh) out->push_back(h);
}

bool same_or_both_nan(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }
}  // namespace

void test_extract_u8(const Targets& T) {
  const std::pair<ptrdiff_t, ptrdiff_t> sizes[] = {{1, 1},  {3, 3},   {7, 5},   {1, 19},
                                                   {23, 1}, {17, 33}, {64, 64}, {100, 131}};
  std::vector<const KernelTable*> all{T.scalar};
  all.insert(all.end(), T.others.begin(), T.others.end());
  // LBP P = 8, R = 1 offsets as features._lbp._offsets rounds them
  const double rp8[8] = {-0.0, -0.70711, -1.0, -0.70711, -0.0, 0.70711, 1.0, 0.70711};
  const double cp8[8] = {1.0, 0.70711, 0.0, -0.70711, -1.0, -0.70711, -0.0, 0.70711};
  std::mt19937 rng(4242);
  for (const auto& sz : sizes) {
    const ptrdiff_t rows = sz.first, cols = sz.second, n = rows * cols;
    std::vector<float> unit(static_cast<size_t>(n));
    std::uniform_real_distribution<float> u(-0.1f, 1.1f);  // rounding saturates
    for (float& v : unit) v = u(rng);
    unit[0] = 0.5f / 255.0f;  // a rint tie (half to even)
    std::vector<uint8_t> img(static_cast<size_t>(n));
    for (ptrdiff_t i = 0; i < n; ++i) {
      const float r = std::nearbyint(unit[size_t(i)] * 255.0f);
      img[size_t(i)] = uint8_t(std::min(std::max(r, 0.0f), 255.0f));
    }
    for (int L : {8, 32, 256}) {
      const int nd = L == 8 ? 2 : 1;
      std::vector<ptrdiff_t> dr{0, -1, -1, -1}, dc{1, 1, 0, -1};
      if (nd == 2) {
        dr.insert(dr.end(), {0, std::max<ptrdiff_t>(-3, -rows), -3 <= -rows ? -rows : -3, 0});
        dc.insert(dc.end(), {std::min<ptrdiff_t>(3, cols), 2, 0, -1});
      }
      medimg::ExtractU8Args a{};
      a.image = img.data();
      a.rows = rows;
      a.cols = cols;
      a.firstorder_bins = 64;
      a.levels = L;
      a.n_dist = nd;
      a.n_angle = 4;
      a.dr = dr.data();
      a.dc = dc.data();
      a.lbp_P = 8;
      a.rp = rp8;
      a.cp = cp8;
      a.gradient_bins = 8;
      const ptrdiff_t nv = medimg::extract_u8_values(nd, 8, 8);
      const size_t bytes = medimg::extract_u8_scratch(rows, cols, 64, L, 4 * nd, 8, cp8);
      const std::string where =
          std::to_string(rows) + "x" + std::to_string(cols) + " L=" + std::to_string(L);
      std::vector<double> scalar_values;
      for (const KernelTable* t : all) {
        std::vector<double> v1(static_cast<size_t>(nv), std::nan("")), v2(size_t(nv), 1e300);
        std::vector<unsigned char> sc(bytes + 64);
        unsigned char* base = sc.data() + (64 - reinterpret_cast<uintptr_t>(sc.data()) % 64) % 64;
        std::fill(sc.begin(), sc.end(), 0xFF);  // NaN bytes
        const bool ok1 = t->extract_u8(a, v1.data(), base);
        for (auto& b : sc) b = static_cast<unsigned char>(rng());
        const bool ok2 = t->extract_u8(a, v2.data(), base);
        bool same = ok1 && ok2;
        for (ptrdiff_t i = 0; i < nv; ++i)
          same = same && same_or_both_nan(v1[size_t(i)], v2[size_t(i)]);
        record(same, std::string(t->name) + " extract_u8 " + where + " same with garbage scratch");
        // against the kernels one by one
        std::vector<double> ref;
        extract_by_kernels(t, img, rows, cols, L, nd, dr, dc, 8, rp8, cp8, &ref);
        const double* v = v1.data();
        const int fo = medimg::kExtractFirstorder;
        bool match = v[0] == ref[0] && v[8] == ref[1] && v[9] == ref[2] && v[10] == ref[3] &&
                     v[11] == ref[4] && v[12] == ref[5];
        size_t r = 6;
        for (int p = 0; p < medimg::kGlcmProps * nd; ++p)
          match = match && (same_or_both_nan(v[fo + p], ref[r + size_t(p)]) ||
                            std::fabs(v[fo + p] - ref[r + size_t(p)]) <=
                                1e-15 * std::fabs(ref[r + size_t(p)]));
        r += size_t(medimg::kGlcmProps * nd);
        const ptrdiff_t lb = fo + medimg::kGlcmProps * nd;
        for (int k = 0; k < 10; ++k) match = match && v[lb + k] == ref[r + size_t(k)] / double(n);
        r += 10;
        match = match && v[lb + 10] == ref[r] && v[lb + 12] == ref[r + 1];
        double gt = 0.0;
        for (int b = 0; b < 8; ++b) gt += ref[r + 2 + size_t(b)];
        for (int b = 0; b < 8; ++b)
          match = match &&
                  std::fabs(v[lb + 13 + b] - (gt > 0 ? ref[r + 2 + size_t(b)] / gt : 0.0)) <= 1e-15;
        record(match, std::string(t->name) + " extract_u8 " + where + " == its kernels one by one");
        if (t == T.scalar) {
          scalar_values = v1;
        } else {
          double worst = 0.0, at = -1;
          for (ptrdiff_t i = 0; i < nv; ++i) {
            const double x = v1[size_t(i)], y = scalar_values[size_t(i)];
            if (same_or_both_nan(x, y)) continue;
            const double e = std::fabs(x - y) / (std::fabs(y) + 1e-4);
            if (e > worst) worst = e, at = double(i);
          }
          note_margin("extract_u8 target vs scalar", worst / 1e-5);
          record(worst <= 1e-5, std::string(t->name) + " extract_u8 " + where + " vs scalar",
                 fmt("rel %.3g at value %g", worst, at));
        }
        // the appearance form of the float32 input
        medimg::ExtractU8Args b = a;
        b.image = nullptr;
        b.unit = unit.data();
        b.appearance = 1;
        std::vector<double> w(static_cast<size_t>(nv));
        t->extract_u8(b, w.data(), base);
        bool app = true;
        for (ptrdiff_t i = 0; i < nv; ++i) {
          double x = v1[size_t(i)];
          x = std::isfinite(x) ? x : 0.0;
          const double want = x > 0 ? std::log1p(10.0 * x) : (x < 0 ? -std::log1p(-10.0 * x) : 0.0);
          app = app && w[size_t(i)] == want;
        }
        record(app,
               std::string(t->name) + " extract_u8 " + where + " appearance of the unit image");
      }
    }
  }
}

// ---- dispatch ---------------------------------------------------------------------------
// active_table() is a lock-free read of the table chosen by the cap: capped at each target
// it returns the strongest supported one at most that target, and readers on another thread
// see only compiled tables while the cap changes (ThreadSanitizer-clean by construction:
// one atomic pointer).
void test_dispatch(const Targets& T) {
  const std::string saved = medimg::target_cap();
  std::vector<const KernelTable*> supported{T.scalar};
  supported.insert(supported.end(), T.others.begin(), T.others.end());
  for (const KernelTable* t : supported) {
    medimg::set_target_cap(t->name);
    record(medimg::active_table() == t, std::string("cap ") + t->name + " selects " + t->name);
    record(medimg::table_by_name("") == t, std::string("cap ") + t->name + " table_by_name(\"\")");
  }
  medimg::set_target_cap("");
  record(medimg::active_table() == supported.back(), "no cap selects the strongest target");
  bool threw = false;
  try {
    medimg::set_target_cap("warp9");
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  record(threw && medimg::active_table() == supported.back(),
         "an unknown cap throws and keeps the active table");
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      const KernelTable* t = medimg::active_table();
      bool known = false;
      for (const KernelTable* s : supported) known = known || s == t;
      if (!known) ++bad;
      ++reads;
    }
  });
  for (int i = 0; i < 2000; ++i) medimg::set_target_cap(supported[i % supported.size()]->name);
  stop = true;
  reader.join();
  record(bad.load() == 0, "concurrent readers see only supported tables while the cap changes",
         fmt("%.0f bad of %.0f reads", double(bad.load()), double(reads.load())));
  medimg::set_target_cap(saved);
}

// ---- quality gate (quality.hpp) ----------------------------------------------------------
// Every target against scalar: masks, counts, quantiles and the edge statistics exactly (the
// blurs, gradients and comparisons use no FMA, so every lane computes the scalar floats);
// noise, mean and std within kTolQualitySum (float lane partial sums differ in order).  The
// scalar path against float64 re-implementations: the band rectangle of a frame with known
// bands, the unmasked Immerkaer sigma, the masked mean / std.  The Python tests compare the
// whole gate with the OpenCV reference (tests/quality_helpers.py).
constexpr double kTolQualitySum = 1e-5;

struct QualityRun {
  medimg::QualityRegion reg{};
  medimg::QualityEdges edges{};
  std::vector<uint8_t> fov, allowed;
};

// The Gaussian taps of sigma s, radius ceil(3 s) (what cv2.getGaussianKernel gives, in
// float: centre first).
std::vector<float> gauss_half(double s) {
  const int r = static_cast<int>(std::ceil(3.0 * s));
  std::vector<double> w(static_cast<size_t>(r + 1));
  double total = 0.0;
  for (int k = 0; k <= r; ++k) {
    w[static_cast<size_t>(k)] = std::exp(-0.5 * k * k / (s * s));
    total += k == 0 ? w[0] : 2.0 * w[static_cast<size_t>(k)];
  }
  std::vector<float> out;
  for (double v : w) out.push_back(static_cast<float>(v / total));
  return out;
}

QualityRun quality_run(const KernelTable& t, const Image& im, const std::vector<uint8_t>* given,
                       float threshold, bool garbage) {
  QualityRun q;
  const size_t n = im.size();
  q.fov = given ? *given : std::vector<uint8_t>(n, 7);
  q.allowed.assign(n, 7);
  std::vector<float> scratch(medimg::quality_scratch(im.rows, im.cols) + 16);
  if (garbage)
    fill_garbage(scratch);
  else
    fill_nan(scratch);
  static const double qs[4] = {0.01, 0.05, 0.95, 0.99};
  medimg::QualityRegionArgs r{};
  r.a = im.px.data();
  r.rows = im.rows;
  r.cols = im.cols;
  r.fov = q.fov.data();
  r.fov_given = given ? 1 : 0;
  r.band_tol = 1.0 / 1024.0;
  r.stroke_tophat = 0.25f;
  r.stroke_level = 0.6f;
  r.inner_margin = 7;
  r.stroke_margin = 3;
  r.sat_lo = 0.5f / 4095.0f;
  r.sat_hi = 1.0f - 0.5f / 4095.0f;
  r.nq = 4;
  r.q = qs;
  r.allowed = q.allowed.data();
  t.quality_region(r, &q.reg, scratch.data());
  static const std::vector<float> ta = gauss_half(1.0), tb = gauss_half(std::sqrt(3.0));
  medimg::QualityEdgeArgs e{};
  e.a = im.px.data();
  e.rows = im.rows;
  e.cols = im.cols;
  e.allowed = q.allowed.data();
  e.taps_a = ta.data();
  e.radius_a = static_cast<int>(ta.size()) - 1;
  e.taps_b = tb.data();
  e.radius_b = static_cast<int>(tb.size()) - 1;
  e.threshold = threshold;
  e.top_fraction = 0.25;
  e.min_edges = 16;
  t.quality_edges(e, &q.edges, scratch.data());
  return q;
}

void compare_quality(const Targets& T, const Image& im, const std::vector<uint8_t>* given,
                     float threshold, const std::string& where) {
  const QualityRun s = quality_run(*T.scalar, im, given, threshold, false);
  const QualityRun s2 = quality_run(*T.scalar, im, given, threshold, true);
  record(s.fov == s2.fov && s.allowed == s2.allowed && s.edges.n_all == s2.edges.n_all &&
             s.edges.mean_b2 == s2.edges.mean_b2 && s.reg.noise_sigma == s2.reg.noise_sigma,
         "scalar " + where + " does not depend on the scratch contents");
  const medimg::QualityRegion& a = s.reg;
  for (const KernelTable* t : T.others) {
    const QualityRun o = quality_run(*t, im, given, threshold, true);
    const medimg::QualityRegion& b = o.reg;
    bool same = o.fov == s.fov && o.allowed == s.allowed;
    for (int i = 0; i < 4; ++i)
      same = same && a.band[i] == b.band[i] && a.quantiles[i] == b.quantiles[i];
    same = same && a.n_fov == b.n_fov && a.n_strokes == b.n_strokes && a.n_stat == b.n_stat &&
           a.n_inner == b.n_inner && a.n_sat == b.n_sat && a.n_under == b.n_under;
    same = same && o.edges.n_all == s.edges.n_all && o.edges.n_used == s.edges.n_used &&
           o.edges.mean_a2 == s.edges.mean_a2 && o.edges.mean_b2 == s.edges.mean_b2;
    record(same, std::string(t->name) + " " + where + " masks, counts, quantiles, edges == scalar",
           fmt("n_edges %g vs %g, mean_b2 %.9g vs %.9g", o.edges.n_all, s.edges.n_all,
               o.edges.mean_b2, s.edges.mean_b2));
    double worst = 0.0;
    const double pairs[3][2] = {{a.noise_sigma, b.noise_sigma}, {a.mean, b.mean}, {a.std, b.std}};
    for (const auto& p : pairs)
      worst = std::max(worst, std::fabs(p[0] - p[1]) / (kTolQualitySum * (1e-3 + std::fabs(p[0]))));
    note_margin("quality noise/mean/std target vs scalar", worst);
    record(worst <= 1.0, std::string(t->name) + " " + where + " noise, mean, std vs scalar",
           fmt("worst error / tolerance %.3g", worst));
  }
}

void test_quality_image(const Targets& T, const Image& im) {
  if (im.rows < 3 || im.cols < 3) return;
  const std::string where = im.name + " " + dims(im) + " quality";
  compare_quality(T, im, nullptr, 1e-3f, where + " (bands)");
  std::vector<uint8_t> disc(im.size());
  for (ptrdiff_t y = 0; y < im.rows; ++y)
    for (ptrdiff_t x = 0; x < im.cols; ++x) {
      const double dy = (y - im.rows / 2.0) / im.rows, dx = (x - im.cols / 2.0) / im.cols;
      disc[static_cast<size_t>(y * im.cols + x)] = dy * dy + dx * dx < 0.16 ? 255 : 0;
    }
  compare_quality(T, im, &disc, 1e-3f, where + " (given FOV)");
}

// A 160 x 200 frame in [0, 1]: uniform bands (top 9, bottom 5, left 12, right 0 rows /
// columns) around noisy smooth anatomy with blurred steps and a few bright strokes.
Image quality_phantom(uint32_t seed) {
  Image im;
  im.name = "quality phantom";
  im.rows = 160;
  im.cols = 200;
  im.px.assign(static_cast<size_t>(im.rows * im.cols), 0.0f);
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.004);
  for (ptrdiff_t y = 0; y < im.rows; ++y)
    for (ptrdiff_t x = 0; x < im.cols; ++x) {
      float& p = im.px[static_cast<size_t>(y * im.cols + x)];
      if (y < 9) {
        p = 0.0f;
      } else if (y >= im.rows - 5 || x < 12) {
        p = 0.9f;
      } else {
        const double step = 0.5 * std::erfc(-(x - 90.0) / (std::sqrt(2.0) * 1.5));
        const double ring = std::hypot(y - 80.0, x - 140.0) < 25.0 ? 0.15 : 0.0;
        double v = 0.2 + 0.3 * step + ring + 0.05 * std::sin(y / 9.0) + noise(rng);
        if (y == 40 && x > 20 && x < 60) v = 0.95;  // a caliper line
        p = static_cast<float>(std::min(std::max(v, 0.0), 1.0));
      }
    }
  return im;
}

void test_quality(const Targets& T) {
  const Image im = quality_phantom(11);
  compare_quality(T, im, nullptr, 0.01f, "quality phantom (bands)");
  const QualityRun s = quality_run(*T.scalar, im, nullptr, 0.01f, false);
  const medimg::QualityRegion& g = s.reg;
  record(g.band[0] == 9 && g.band[1] == im.rows - 5 && g.band[2] == 12 && g.band[3] == im.cols,
         "scalar quality_region finds the phantom's border bands",
         fmt("got [%g, %g) x [%g, ...)", g.band[0], g.band[1], g.band[2]));
  ptrdiff_t box[4];
  std::vector<double> ds(medimg::quality_bands_scratch(im.rows, im.cols));
  T.scalar->quality_bands(im.px.data(), im.rows, im.cols, 1.0 / 1024.0, box, ds.data());
  record(box[0] == 9 && box[1] == im.rows - 5 && box[2] == 12 && box[3] == im.cols,
         "scalar quality_bands == quality_region's bands");
  record(g.n_strokes >= 30 && g.n_strokes <= 45, "scalar quality_region finds the caliper line",
         fmt("%g stroke pixels", g.n_strokes));
  // float64 references over the statistics mask / the interior
  double s1 = 0.0, s2 = 0.0, cnt = 0.0, inner_abs = 0.0, inner_n = 0.0;
  for (ptrdiff_t y = 0; y < im.rows; ++y)
    for (ptrdiff_t x = 0; x < im.cols; ++x) {
      const size_t i = static_cast<size_t>(y * im.cols + x);
      const bool in_fov = s.fov[i] != 0;
      const bool stroke = in_fov && y == 40 && x > 20 && x < 60;
      if (in_fov && !stroke) {
        s1 += im.px[i];
        s2 += static_cast<double>(im.px[i]) * im.px[i];
        cnt += 1.0;
      }
      const bool inner = y >= 9 + 7 && y < im.rows - 5 - 7 && x >= 12 + 7 && x < im.cols - 7;
      if (inner) {
        double v = 0.0;
        const int k[3][3] = {{1, -2, 1}, {-2, 4, -2}, {1, -2, 1}};
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) v += k[dy + 1][dx + 1] * at(im, y + dy, x + dx);
        inner_abs += std::fabs(v);
        inner_n += 1.0;
      }
    }
  const double mean = s1 / cnt, sd = std::sqrt(s2 / cnt - mean * mean);
  const double sigma = std::sqrt(std::acos(-1.0) / 2.0) * inner_abs / inner_n / 6.0;
  record(std::fabs(g.mean - mean) < 1e-6 && std::fabs(g.std - sd) < 1e-6 && g.n_stat == cnt,
         "scalar quality_region mean / std vs float64",
         fmt("mean %.9g vs %.9g, std %.9g vs %.9g", g.mean, mean, g.std, sd));
  record(std::fabs(g.noise_sigma - sigma) <= 1e-6 * sigma && g.n_inner == inner_n,
         "scalar quality_region Immerkaer sigma vs float64",
         fmt("%.9g vs %.9g", g.noise_sigma, sigma));
  record(s.edges.n_all >= 16 && s.edges.n_used > 0 && s.edges.mean_a2 > s.edges.mean_b2,
         "scalar quality_edges measures the phantom's steps (|g_a| > |g_b| at a blurred step)",
         fmt("n %g, mean_a2 %g, mean_b2 %g", s.edges.n_all, s.edges.mean_a2, s.edges.mean_b2));
  for (uint32_t seed = 1; seed < 4; ++seed)
    compare_quality(T, quality_phantom(seed), nullptr, 0.005f,
                    "quality phantom seed " + std::to_string(seed));
}

int main(int argc, char** argv) {
  std::vector<std::string> required;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-v" || a == "--verbose") {
      g_verbose = true;
    } else if (a == "--require" && i + 1 < argc) {
      required.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [-v] [--require TARGET]...\n", argv[0]);
      return 2;
    }
  }

  Targets T;
  std::string compiled, tested, skipped;
  for (const KernelTable* t : medimg::compiled_tables()) {
    compiled += std::string(compiled.empty() ? "" : " ") + t->name;
    if (!medimg::cpu_supports(t->name)) {
      skipped += std::string(skipped.empty() ? "" : " ") + t->name;
      continue;
    }
    tested += std::string(tested.empty() ? "" : " ") + t->name;
    if (T.scalar == nullptr)
      T.scalar = t;
    else
      T.others.push_back(t);
  }
  std::printf("compiled targets: %s\n", compiled.c_str());
  std::printf("tested targets:   %s\n", tested.c_str());
  if (!skipped.empty()) std::printf("skipped (this CPU cannot run them): %s\n", skipped.c_str());

  record(T.scalar != nullptr && std::string(T.scalar->name) == "scalar",
         "compiled_tables() starts with the scalar table");
  if (T.scalar == nullptr) {
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return 1;
  }
  for (const std::string& r : required) {
    bool found = false;
    for (const KernelTable* t : T.others) found = found || r == t->name;
    record(found, "required target " + r + " is compiled in and runs on this CPU");
  }

  const std::pair<ptrdiff_t, ptrdiff_t> sizes[] = {{1, 1},   {3, 3},   {7, 5},     {1, 19}, {23, 1},
                                                   {17, 33}, {64, 64}, {100, 131}, {257, 3}};
  uint32_t seed = 2024;
  for (const auto& sz : sizes) {
    const ptrdiff_t rows = sz.first, cols = sz.second;
    std::vector<Image> images;
    images.push_back(make_uniform(rows, cols, 255, 0.0, seed++, "uniform[0,255]"));
    images.push_back(make_uniform(rows, cols, 4095, 0.0, seed++, "uniform[0,4095]"));
    images.push_back(make_uniform(rows, cols, 255, 0.25, seed++, "zeros+uniform[0,255]"));
    images.push_back(make_real(rows, cols, 1000.0, seed++, "real[0,1000)"));
    images.push_back(make_constant(rows, cols, 0.0f, "constant0"));
    images.push_back(make_constant(rows, cols, 137.25f, "constant137.25"));
    images.push_back(make_constant(rows, cols, 4095.0f, "constant4095"));
    for (const Image& im : images) {
      test_srad(T, im);
      test_local_stats(T, im);
      test_frost(T, im);
      test_vst(T, im);
      test_immerkaer(T, im);
      test_scan(T, im);
      test_estimate(T, im);
      test_quality_image(T, im);
    }
  }

  test_widen(T);
  test_lbp(T);
  test_quantize(T);
  test_stats(T);
  test_glcm(T);
  test_extract_u8(T);
  test_quality(T);
  test_dispatch(T);

  std::printf("worst error / tolerance observed (1.0 = at the tolerance):\n");
  for (const auto& kv : g_worst) std::printf("  %-36s %.3g\n", kv.first.c_str(), kv.second);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
