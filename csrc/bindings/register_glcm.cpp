// Bindings of csrc/kernels/glcm.hpp: grey-level co-occurrence matrices and their
// properties.  Public wrappers: src/medimg_edge/features/_glcm.py (which validates first;
// the checks here keep C++ safe when _core is called directly).
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"

namespace medimg::bind {

namespace {

// Same element type as `want`, in the machine's byte order.
bool has_dtype(const py::array& a, const py::dtype& want) {
  const py::dtype d = a.dtype();
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  const char foreign = first == 1 ? '>' : '<';
  return d.num() == want.num() && d.byteorder() != foreign;
}

std::vector<ptrdiff_t> offsets_of(const py::array& a, const char* what, ptrdiff_t limit) {
  auto arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!arr || arr.ndim() != 1)
    throw std::invalid_argument(std::string(what) + ": expected a 1-D integer array");
  std::vector<ptrdiff_t> v(static_cast<size_t>(arr.size()));
  for (ptrdiff_t i = 0; i < arr.size(); ++i) {
    const int64_t x = arr.data()[i];
    if (x < -limit || x > limit)
      throw std::invalid_argument(std::string(what) + ": offsets must be clamped to the image");
    v[static_cast<size_t>(i)] = static_cast<ptrdiff_t>(x);
  }
  return v;
}

// Co-occurrence matrices of a uint8/uint16 image.  Returns (P, max_value): P is a
// (K, L, L) view (uint32 counts, matrices glcm_matrix_stride(L) words apart) or, if
// normed, a C-contiguous float64 (K, L, L) array; P is None when a pixel value is
// >= levels (max_value then says which).
//
// With `out` (a writeable C-contiguous uint32 (L, L, K) array; not with normed), the counts
// are made in the calling thread's reusable scratch buffer and copied into out[i, j, k]; P
// is then `out`.
py::tuple glcm(const py::array& image, ptrdiff_t levels, const py::array& dr_in,
               const py::array& dc_in, bool symmetric, bool normed, const std::string& target,
               const py::object& out_obj) {
  const bool u8 = has_dtype(image, py::dtype::of<uint8_t>());
  const bool u16 = has_dtype(image, py::dtype::of<uint16_t>());
  if (!u8 && !u16) throw std::invalid_argument("image: expected a uint8 or uint16 array");
  if (image.ndim() != 2) throw std::invalid_argument("image: expected a 2-D array");
  if (!(image.flags() & py::array::c_style))
    throw std::invalid_argument("image: expected a C-contiguous array");
  if (image.size() == 0) throw std::invalid_argument("image: empty array");
  if (levels < 1 || levels > kGlcmMaxLevels)
    throw std::invalid_argument("levels must be in [1, 65536]");
  const ptrdiff_t rows = image.shape(0), cols = image.shape(1);
  const std::vector<ptrdiff_t> dr = offsets_of(dr_in, "dr", rows);
  const std::vector<ptrdiff_t> dc = offsets_of(dc_in, "dc", cols);
  const ptrdiff_t K = static_cast<ptrdiff_t>(dr.size());
  if (K < 1 || dc.size() != dr.size())
    throw std::invalid_argument("dr and dc must have the same length >= 1");
  if (levels * levels * K > (ptrdiff_t(1) << 31))
    throw std::invalid_argument("levels^2 * n_offsets must be at most 2^31");
  const KernelTable* t = table_by_name(target);

  const size_t words = glcm_out_words(levels, K);
  const ptrdiff_t stride = glcm_matrix_stride(levels);
  py::array_t<uint32_t> buffer, dest;
  std::unique_ptr<uint32_t[]> counts;
  uint32_t* out;
  const bool into = !out_obj.is_none();
  if (into) {
    if (normed) throw std::invalid_argument("out: not with normed");
    if (!py::isinstance<py::array_t<uint32_t>>(out_obj))
      throw std::invalid_argument("out: expected a uint32 array");
    dest = py::reinterpret_borrow<py::array_t<uint32_t>>(out_obj);
    if (dest.dtype().kind() != 'u' || dest.itemsize() != 4 ||
        !(dest.flags() & py::array::c_style) || !dest.writeable() || dest.ndim() != 3 ||
        dest.shape(0) != levels || dest.shape(1) != levels || dest.shape(2) != K)
      throw std::invalid_argument("out: expected a writeable C-contiguous uint32 (L, L, K) array");
  }
  if (normed) {
    counts.reset(new uint32_t[words]);
    out = counts.get();
  } else if (into) {
    out = nullptr;  // the thread's scratch, taken with the GIL released below
  } else {
    buffer = py::array_t<uint32_t>(static_cast<ptrdiff_t>(words));
    out = buffer.mutable_data();
  }
  GlcmArgs a{image.data(), u8 ? kGlcmU8 : kGlcmU16, rows, cols, levels, K, dr.data(),
             dc.data(),    symmetric ? 1 : 0,       out};
  int64_t max_value = 0;
  bool ok;
  py::array_t<double> dense;
  double* dst = nullptr;
  if (normed) {
    dense = py::array_t<double>({K, levels, levels});
    dst = dense.mutable_data();
  }
  {
    py::gil_scoped_release release;
    if (into) {
      ThreadScratch sc({words * sizeof(uint32_t)});
      a.out = sc.part<uint32_t>(0);
      ok = t->glcm(a, &max_value);
      if (ok) {
        uint32_t* d = dest.mutable_data();
        const ptrdiff_t cells = levels * levels;
        for (ptrdiff_t k = 0; k < K; ++k) {
          const uint32_t* m = a.out + k * stride;
          for (ptrdiff_t c = 0; c < cells; ++c) d[c * K + k] = m[c];
        }
      }
    } else {
      ok = t->glcm(a, &max_value);
      if (ok && normed) t->glcm_normalize(out, K, levels * levels, stride, dst);
    }
  }
  if (!ok) return py::make_tuple(py::none(), max_value);
  if (into) return py::make_tuple(dest, max_value);
  if (normed) return py::make_tuple(dense, max_value);
  const ptrdiff_t isz = sizeof(uint32_t);
  py::array_t<uint32_t> view({K, levels, levels}, {stride * isz, levels * isz, isz}, out, buffer);
  return py::make_tuple(view, max_value);
}

// Properties of K square matrices P[k] (uint32 or float64, rows contiguous, any matrix
// stride that does not overlap), those `need` (GlcmNeed bits) asks for.  Returns (ok, out)
// with out[p, k]; ok is false if a float64 entry is negative, NaN or infinite.
py::tuple glcm_props(const py::array& P, int need, const std::string& target) {
  const bool is_u32 = has_dtype(P, py::dtype::of<uint32_t>());
  const bool is_f64 = has_dtype(P, py::dtype::of<double>());
  if (!is_u32 && !is_f64) throw std::invalid_argument("P: expected a uint32 or float64 array");
  if (P.ndim() != 3) throw std::invalid_argument("P: expected a 3-D array (K, L, L)");
  const ptrdiff_t K = P.shape(0), L = P.shape(1);
  if (K < 1 || L < 1 || P.shape(2) != L)
    throw std::invalid_argument("P: expected a non-empty (K, L, L) array");
  const ptrdiff_t isz = P.itemsize();
  if (P.strides(2) != isz || P.strides(1) != L * isz)
    throw std::invalid_argument("P: every matrix must be C-contiguous");
  ptrdiff_t stride = L * L;
  if (K > 1) {
    if (P.strides(0) % isz != 0 || P.strides(0) < L * L * isz)
      throw std::invalid_argument("P: matrices must not overlap");
    stride = P.strides(0) / isz;
  }
  const KernelTable* t = table_by_name(target);
  py::array_t<double> out({static_cast<ptrdiff_t>(kGlcmProps), K});
  std::unique_ptr<double[]> scratch(new double[glcm_props_scratch(L)]);
  const void* src = P.data();
  double* dst = out.mutable_data();
  bool ok;
  {
    py::gil_scoped_release release;
    ok = t->glcm_props(src, is_f64 ? 1 : 0, need & kGlcmNeedAll, L, K, stride, dst, scratch.get());
  }
  return py::make_tuple(ok, out);
}

py::list glcm_prop_names() {
  py::list names;
  for (const char* n : kGlcmPropNames) names.append(n);
  return names;
}

}  // namespace

void register_glcm(py::module_& m) {
  using namespace py::literals;
  m.def("glcm", &glcm, "image"_a, "levels"_a, "dr"_a, "dc"_a, "symmetric"_a, "normed"_a,
        "target"_a = "", "out"_a = py::none(),
        "Grey-level co-occurrence matrices (K, L, L); (P or None, max value).");
  m.def("glcm_props", &glcm_props, "P"_a, "need"_a = int(kGlcmNeedAll), "target"_a = "",
        "GLCM properties of (K, L, L) matrices: (ok, out[prop, k]), NaN where not needed.");
  m.def("glcm_need_bits",
        [] { return py::make_tuple(int(kGlcmNeedDif), int(kGlcmNeedSum), int(kGlcmNeedLog)); });
  m.def("glcm_prop_names", &glcm_prop_names, "Names of the rows of glcm_props' output.");
}

}  // namespace medimg::bind
