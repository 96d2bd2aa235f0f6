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
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
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

}  // namespace

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
    }
  }

  std::printf("worst error / tolerance observed (1.0 = at the tolerance):\n");
  for (const auto& kv : g_worst) std::printf("  %-36s %.3g\n", kv.first.c_str(), kv.second);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
