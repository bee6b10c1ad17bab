// Self-test of the emulated CUDA runtime: memory accounting, strict copy
// checks, streams, events, graphs (unsupported), device and error strings.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool all_bytes(const void* p, size_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != v) return false;
  return true;
}

TEST(Cudart, DeviceProperties) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(1), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  int d = -1;
  EXPECT_EQ(cudaGetDevice(&d), cudaSuccess);
  EXPECT_EQ(d, 0);
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_STREQ(p.name, "loraserve CPU emulator");
  EXPECT_EQ(p.major, 9);
  EXPECT_EQ(p.minor, 0);
  EXPECT_EQ(p.multiProcessorCount, 132);
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.sharedMemPerBlock, 48u * 1024);
  EXPECT_EQ(p.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_EQ(p.maxGridSize[0], 0x7fffffff);
  EXPECT_EQ(p.maxThreadsDim[2], 64);
  EXPECT_EQ(p.memoryBusWidth, 5120);
  EXPECT_EQ(p.l2CacheSize, 50 * 1024 * 1024);
  size_t free_b = 0, total_b = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  EXPECT_EQ(p.totalGlobalMem, total_b);
  EXPECT_EQ(cudaGetDeviceProperties(&p, 1), cudaErrorInvalidDevice);
  int v = 0;
  EXPECT_EQ(cudaRuntimeGetVersion(&v), cudaSuccess);
  EXPECT_EQ(v, 13000);
  EXPECT_EQ(cudaDriverGetVersion(&v), cudaSuccess);
  EXPECT_EQ(v, 13000);
  EXPECT_EQ(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  EXPECT_EQ(v, 227 * 1024);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaGetLastError();
}

TEST(Cudart, MallocAlignmentFillAndAccounting) {
  size_t free0 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  if (!std::getenv("LSEMU_DEVICE_MEM_MB")) {
    EXPECT_EQ(total, size_t{16} << 30);
  }
  void* a = nullptr;
  void* b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, 1000), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, 256), cudaSuccess);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 256, 0u);
  EXPECT_TRUE(all_bytes(a, 1000, 0xA5));
  size_t free1 = 0;
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free0 - free1, 1024u + 256u);  // rounded to 256-byte units
  EXPECT_EQ(cudaFree(a), cudaSuccess);
  EXPECT_EQ(cudaFree(b), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  EXPECT_EQ(free1, free0);

  void* big = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(cudaMalloc(&big, free0 + 1), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaMalloc(nullptr, 16), cudaErrorInvalidValue);
  void* zero = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(cudaMalloc(&zero, 0), cudaSuccess);
  EXPECT_EQ(zero, nullptr);
  cudaGetLastError();
}

TEST(Cudart, FreeChecksPointers) {
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
  int host = 0;
  EXPECT_EQ(cudaFree(&host), cudaErrorInvalidValue);
  char* p = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), 512), cudaSuccess);
  EXPECT_EQ(cudaFree(p + 16), cudaErrorInvalidValue);  // interior pointer
  EXPECT_EQ(cudaFreeHost(p), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorInvalidValue);  // double free
  void* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(&pinned, 100, cudaHostAllocDefault), cudaSuccess);
  EXPECT_EQ(cudaFree(pinned), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pinned, 100), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  EXPECT_EQ(cudaHostAlloc(&pinned, 100, 0x100), cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST(Cudart, MemcpyKindAndRangeChecks) {
  const size_t n = 1000;
  char* d1 = nullptr;
  char* d2 = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d1), n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d2), n), cudaSuccess);
  std::vector<char> h(2 * n, 7), back(2 * n, 0);

  EXPECT_EQ(cudaMemcpy(d1, h.data(), n, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_TRUE(all_bytes(d1, n, 7));
  // One byte past the allocation: rejected and nothing copied.
  std::memset(h.data(), 9, h.size());
  EXPECT_EQ(cudaMemcpy(d1, h.data(), n + 1, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_TRUE(all_bytes(d1, n, 7));
  EXPECT_EQ(cudaMemcpy(d1 + 10, h.data(), n - 10, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d1 + 11, h.data(), n - 10, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  // Wrong directions.
  EXPECT_EQ(cudaMemcpy(h.data(), d1, n, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d1, d2, n, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d1, h.data(), n, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), d1, n, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d1, h.data(), n, cudaMemcpyHostToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d1, h.data(), n, static_cast<cudaMemcpyKind>(7)), cudaErrorInvalidMemcpyDirection);
  EXPECT_EQ(cudaMemcpy(nullptr, h.data(), n, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  // Device to host, device to device.
  EXPECT_EQ(cudaMemcpy(back.data(), d1, n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(back.data(), d1, n + 1, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d2, d1, n, cudaMemcpyDeviceToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d2 + 1, d1, n, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(back.data(), h.data(), n, cudaMemcpyHostToHost), cudaSuccess);
  // Default: any direction, still within allocations.
  EXPECT_EQ(cudaMemcpy(d2, h.data(), n, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(back.data(), d2, n, cudaMemcpyDefault), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d2 + 500, d1, n, cudaMemcpyDefault), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d1, h.data(), 0, cudaMemcpyHostToDevice), cudaSuccess);
  // Pinned host memory is host memory for the directions.
  void* pinned = nullptr;
  ASSERT_EQ(cudaHostAlloc(&pinned, n, cudaHostAllocDefault), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d1, pinned, n, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(pinned, d1, n, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  // Async: same checks plus the stream handle.
  cudaStream_t st;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(d1, h.data(), n, cudaMemcpyHostToDevice, st), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(d1, h.data(), n + 1, cudaMemcpyHostToDevice, st), cudaErrorInvalidValue);
  EXPECT_EQ(cudaStreamDestroy(st), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(d1, h.data(), n, cudaMemcpyHostToDevice, st), cudaErrorInvalidResourceHandle);
  // Memset.
  EXPECT_EQ(cudaMemset(d1, 0x3c, n), cudaSuccess);
  EXPECT_TRUE(all_bytes(d1, n, 0x3c));
  EXPECT_EQ(cudaMemset(d1 + 1, 0, n), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(h.data(), 0, n), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemsetAsync(d1, 0x11, n, nullptr), cudaSuccess);
  EXPECT_TRUE(all_bytes(d1, n, 0x11));
  // 2-D: 4 rows of 10 bytes into a pitch of 100.
  std::vector<char> rows(40);
  for (int i = 0; i < 40; ++i) rows[i] = static_cast<char>(i);
  EXPECT_EQ(cudaMemcpy2D(d2, 100, rows.data(), 10, 10, 4, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(d2[300 + 9], 39);
  EXPECT_EQ(cudaMemcpy2D(d2, 400, rows.data(), 10, 10, 4, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy2D(d2, 5, rows.data(), 10, 10, 4, cudaMemcpyHostToDevice), cudaErrorInvalidPitchValue);
  EXPECT_EQ(cudaFree(d1), cudaSuccess);
  EXPECT_EQ(cudaFree(d2), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d1, h.data(), 1, cudaMemcpyHostToDevice), cudaErrorInvalidValue);  // freed
  cudaGetLastError();
}

TEST(Cudart, PointerAttributes) {
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
  cudaPointerAttributes a;
  ASSERT_EQ(cudaPointerGetAttributes(&a, static_cast<char*>(d) + 8), cudaSuccess);
  EXPECT_EQ(a.type, cudaMemoryTypeDevice);
  int host = 0;
  ASSERT_EQ(cudaPointerGetAttributes(&a, &host), cudaSuccess);
  EXPECT_EQ(a.type, cudaMemoryTypeUnregistered);
  cudaFree(d);
}

TEST(Cudart, StreamsAndEvents) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, 0x10), cudaErrorInvalidValue);
  cudaEvent_t e0, e1, nt;
  ASSERT_EQ(cudaEventCreate(&e0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e1), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, e0, e1), cudaErrorInvalidResourceHandle);  // not recorded
  EXPECT_EQ(cudaEventRecord(e0, s), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(e1, s), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(e1), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(e1), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, e0, e1), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  EXPECT_LT(ms, 1000.0f);
  EXPECT_EQ(cudaEventRecord(nt, s), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, e0, nt), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaStreamWaitEvent(s, nt, 0), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(nt), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(nt), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaStreamWaitEvent(s, nt, 0), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventDestroy(e0), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(e1), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
}

TEST(Cudart, GraphsAreNotEmulated) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaErrorNotSupported);
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusActive;
  EXPECT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  cudaGraph_t g = reinterpret_cast<cudaGraph_t>(0x1);
  EXPECT_NE(cudaStreamEndCapture(s, &g), cudaSuccess);
  EXPECT_EQ(g, nullptr);
  cudaGraphExec_t ge = nullptr;
  EXPECT_NE(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
  EXPECT_EQ(ge, nullptr);
  EXPECT_NE(cudaGraphLaunch(ge, s), cudaSuccess);
  EXPECT_NE(cudaGraphExecDestroy(ge), cudaSuccess);
  EXPECT_NE(cudaGraphDestroy(g), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  cudaGetLastError();
}

TEST(Cudart, ErrorNamesAndStrings) {
  EXPECT_STREQ(cudaGetErrorName(cudaSuccess), "cudaSuccess");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidValue), "cudaErrorInvalidValue");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidValue), "invalid argument");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorMemoryAllocation), "cudaErrorMemoryAllocation");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration");
  EXPECT_STREQ(cudaGetErrorName(cudaErrorNotSupported), "cudaErrorNotSupported");
  EXPECT_STREQ(cudaGetErrorName(static_cast<cudaError_t>(123456)), "unrecognized error code");
  // The last error is per host thread, sticky until read.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaFree(reinterpret_cast<void*>(0x10)), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemGetInfo(nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
