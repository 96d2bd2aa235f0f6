// Run-time dispatch: CPUID (via the compiler's cpu-model builtins, which also check that
// the OS saves the AVX/AVX-512 register state) picks the best compiled target.
#include "dispatch.hpp"

#include <mutex>
#include <stdexcept>

namespace medimg {

const KernelTable* table_scalar();
#if defined(MEDIMG_HAVE_SSE4)
const KernelTable* table_sse4();
#endif
#if defined(MEDIMG_HAVE_AVX2)
const KernelTable* table_avx2();
#endif
#if defined(MEDIMG_HAVE_AVX512)
const KernelTable* table_avx512();
#endif
#if defined(MEDIMG_HAVE_NEON)
const KernelTable* table_neon();
#endif

const std::vector<const KernelTable*>& compiled_tables() {
  static const std::vector<const KernelTable*> tables = [] {
    std::vector<const KernelTable*> t{table_scalar()};
#if defined(MEDIMG_HAVE_SSE4)
    t.push_back(table_sse4());
#endif
#if defined(MEDIMG_HAVE_AVX2)
    t.push_back(table_avx2());
#endif
#if defined(MEDIMG_HAVE_AVX512)
    t.push_back(table_avx512());
#endif
#if defined(MEDIMG_HAVE_NEON)
    t.push_back(table_neon());
#endif
    return t;
  }();
  return tables;
}

bool cpu_supports(const std::string& name) {
  if (name == "scalar") return true;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (name == "sse4") return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("sse4.1");
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
  if (name == "neon") return true;  // Advanced SIMD is mandatory on AArch64.
#endif
  return false;
}

namespace {
std::mutex g_mutex;
std::string g_cap;                      // guarded by g_mutex
const KernelTable* g_active = nullptr;  // guarded by g_mutex

const KernelTable* find_compiled(const std::string& name) {
  for (const KernelTable* t : compiled_tables())
    if (name == t->name) return t;
  return nullptr;
}

const KernelTable* choose(const std::string& cap) {
  const KernelTable* best = compiled_tables().front();
  for (const KernelTable* t : compiled_tables()) {
    if (cpu_supports(t->name)) best = t;
    if (!cap.empty() && cap == t->name) break;
  }
  return best;
}
}  // namespace

void set_target_cap(const std::string& name) {
  if (!name.empty() && find_compiled(name) == nullptr) {
    std::string names;
    for (const KernelTable* t : compiled_tables())
      names += std::string(names.empty() ? "" : ", ") + t->name;
    throw std::invalid_argument("SIMD target '" + name +
                                "' is not compiled into this build (compiled: " + names + ")");
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  g_cap = name;
  g_active = choose(g_cap);
}

std::string target_cap() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_cap;
}

const KernelTable* active_table() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_active == nullptr) g_active = choose(g_cap);
  return g_active;
}

const KernelTable* table_by_name(const std::string& name) {
  if (name.empty()) return active_table();
  const KernelTable* t = find_compiled(name);
  if (t == nullptr)
    throw std::invalid_argument("SIMD target '" + name + "' is not compiled into this build");
  if (!cpu_supports(name))
    throw std::invalid_argument("this CPU cannot run SIMD target '" + name + "'");
  return t;
}

}  // namespace medimg
