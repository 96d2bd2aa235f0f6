// Run-time dispatch: CPUID (via the compiler's cpu-model builtins, which also check that
// the OS saves the AVX/AVX-512 register state) picks the best compiled target.
#include "dispatch.hpp"

#include <atomic>
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
// The active table is chosen once (at the first kernel call, or when the cap changes) and
// published through an atomic pointer: kernel calls read it with one acquire load and never
// take a lock.  The mutex only serialises writers (set_target_cap) and the cap string.
std::mutex g_mutex;
std::string g_cap;                                  // guarded by g_mutex
std::atomic<const KernelTable*> g_active{nullptr};  // written under g_mutex, read freely

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

// Slow path of active_table(): the first call chooses under the lock (a concurrent
// set_target_cap may have published a table meanwhile; keep that one).
const KernelTable* choose_first() {
  std::lock_guard<std::mutex> lock(g_mutex);
  const KernelTable* t = g_active.load(std::memory_order_relaxed);
  if (t == nullptr) {
    t = choose(g_cap);
    g_active.store(t, std::memory_order_release);
  }
  return t;
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
  g_active.store(choose(g_cap), std::memory_order_release);
}

std::string target_cap() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_cap;
}

const KernelTable* active_table() {
  const KernelTable* t = g_active.load(std::memory_order_acquire);
  return t != nullptr ? t : choose_first();
}

const KernelTable* table_by_name(const std::string& name) {
  if (name.empty()) return active_table();
  return named_table(name);
}

const KernelTable* named_table(const std::string& name) {
  const KernelTable* t = find_compiled(name);
  if (t == nullptr)
    throw std::invalid_argument("SIMD target '" + name + "' is not compiled into this build");
  if (!cpu_supports(name))
    throw std::invalid_argument("this CPU cannot run SIMD target '" + name + "'");
  return t;
}

}  // namespace medimg
