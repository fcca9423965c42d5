// Shared by the flowhawk CPU kernels: oneDNN GEMM on the calling thread, call/time counters, a helper
// thread for splitting work in two, and per-thread scratch memory.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// oneDNN's threadpool-interop GEMM with a null threadpool runs on the calling thread only, whatever
// threadpool MindSpore has activated on it. Row-major, like dnnl_sgemm.
extern "C" int dnnl_threadpool_interop_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K,
                                             float alpha, const float *A, int64_t lda, const float *B,
                                             int64_t ldb, float beta, float *C, int64_t ldc, void *threadpool);
static inline void sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  dnnl_threadpool_interop_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

// {calls, nanoseconds} for kernel k: 0 lstm fwd, 1 lstm bwd, 2 conv fwd, 3 conv bwd (flowhawk_kernel_stats)
extern std::atomic<int64_t> g_flowhawk_stats[8];
struct StatTimer {
  int k;
  std::chrono::steady_clock::time_point t0;
  explicit StatTimer(int kernel) : k(kernel), t0(std::chrono::steady_clock::now()) {}
  ~StatTimer() {
    g_flowhawk_stats[2 * k].fetch_add(1, std::memory_order_relaxed);
    g_flowhawk_stats[2 * k + 1].fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
        std::memory_order_relaxed);
  }
};

// Thread budget (flowhawk_set_threads). run_halves(big, f) runs f(0) and f(1): with a budget of 2
// and big work, a persistent helper thread may take one half. The caller claims halves too and never
// waits for a helper that has not started, so on a busy machine (helper not scheduled) it degrades to
// the one-thread time instead of stalling. Concurrent callers fall back to running both halves.
extern int g_flowhawk_threads;

class HalfHelper {
 public:
  static HalfHelper &get() {
    static HalfHelper *h = new HalfHelper();  // never destroyed: its thread is detached
    return *h;
  }
  void run(const std::function<void(int)> &f) {
    if (busy_.exchange(true)) {  // another kernel call is using the helper
      f(0);
      f(1);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &f;
      next_.store(0);
      ++gen_;
    }
    cv_.notify_one();
    for (int i; (i = next_.fetch_add(1)) < 2;) f(i);
    {
      std::unique_lock<std::mutex> lk(m_);
      job_ = nullptr;  // a helper waking up later finds nothing to do
      done_.wait(lk, [this] { return active_ == 0; });
    }
    busy_.store(false);
  }

 private:
  HalfHelper() { std::thread([this] { loop(); }).detach(); }
  void loop() {
    std::unique_lock<std::mutex> lk(m_);
    uint64_t seen = 0;
    for (;;) {
      cv_.wait(lk, [&] { return gen_ != seen; });
      seen = gen_;
      if (job_ == nullptr) continue;
      const int i = next_.fetch_add(1);
      if (i >= 2) continue;
      const std::function<void(int)> *job = job_;
      ++active_;
      lk.unlock();
      (*job)(i);
      lk.lock();
      --active_;
      done_.notify_all();
    }
  }
  std::mutex m_;
  std::condition_variable cv_, done_;
  const std::function<void(int)> *job_ = nullptr;
  std::atomic<int> next_{0};
  std::atomic<bool> busy_{false};
  int active_ = 0;
  uint64_t gen_ = 0;
};

template <typename F>
static void run_halves(bool big, F f) {
  if (g_flowhawk_threads >= 2 && big) {
    const std::function<void(int)> fn(f);
    HalfHelper::get().run(fn);
  } else {
    f(0);
    f(1);
  }
}

// Grow-only scratch memory kept by the calling thread (MindSpore's kernel thread): big per-call
// buffers would otherwise be unmapped and page-faulted back from the OS on every call (measured: the
// BiLSTM backward took 33 ms inside MindSpore vs 20 ms standalone). Carve it with Carver.take.
inline size_t rounded(size_t n) { return (n + 15) & ~static_cast<size_t>(15); }
inline float *scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
struct Carver {
  float *p;
  float *take(size_t n) {
    float *r = p;
    p += rounded(n);
    return r;
  }
};
