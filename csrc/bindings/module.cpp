// medimg_edge._core: the private extension module.  One register_<area>.cpp per area.
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "medimg-edge private C++ core (SIMD kernels). Use the public medimg_edge API.";
  m.def(
      "compiled_targets",
      [] {
        std::vector<std::string> names;
        for (const medimg::KernelTable* t : medimg::compiled_tables()) names.emplace_back(t->name);
        return names;
      },
      "SIMD targets compiled into this build, weakest first.");
  m.def(
      "supported_targets",
      [] {
        std::vector<std::string> names;
        for (const medimg::KernelTable* t : medimg::compiled_tables())
          if (medimg::cpu_supports(t->name)) names.emplace_back(t->name);
        return names;
      },
      "Compiled SIMD targets this CPU can run, weakest first.");
  m.def(
      "active_target", [] { return std::string(medimg::active_table()->name); },
      "The SIMD target kernels use by default.");
  m.def("set_target_cap", &medimg::set_target_cap, py::arg("name"),
        "Cap the default SIMD target ('' removes the cap).");
  m.def("target_cap", &medimg::target_cap, "The current cap ('' if none).");
  m.attr("compiler") =
#if defined(__clang__)
      std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
      std::string("gcc ") + __VERSION__;
#else
      std::string("unknown");
#endif
  medimg::bind::register_denoise(m);
  medimg::bind::register_validation(m);
  medimg::bind::register_glcm(m);
  medimg::bind::register_lbp(m);
  medimg::bind::register_stats(m);
  medimg::bind::register_runtime(m);
}
