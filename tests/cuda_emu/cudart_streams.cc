// Emulated CUDA runtime: streams, events and (not emulated) graphs.
//
// Every operation completes before its call returns, so streams and events
// carry no work; they are validated handles. Events remember the
// steady_clock time of their last record, for cudaEventElapsedTime.
// CUDA graphs are not emulated: cudaStreamBeginCapture returns
// cudaErrorNotSupported (callers fall back to eager launches), and since no
// graph can exist, the graph calls fail cleanly on any handle.
#include <cuda_runtime.h>

#include <chrono>
#include <mutex>
#include <unordered_set>

#include "lsemu_internal.h"

// The runtime headers only declare these handle types.
struct CUstream_st {
  unsigned int flags;
};
struct CUevent_st {
  unsigned int flags;
  bool recorded;
  std::chrono::steady_clock::time_point when;
};

namespace lsemu::detail {
namespace {

struct Handles {
  std::mutex mu;
  std::unordered_set<const void*> streams;
  std::unordered_set<const void*> events;
};

Handles& handles() {
  static Handles* h = new Handles;
  return *h;
}

bool event_valid(cudaEvent_t e) {
  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mu);
  return e && h.events.count(e) != 0;
}

}  // namespace

bool stream_valid(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  Handles& h = handles();
  std::lock_guard<std::mutex> lock(h.mu);
  return h.streams.count(s) != 0;
}

}  // namespace lsemu::detail

using lsemu::detail::record_error;
using lsemu::detail::stream_valid;

// ---- Streams -----------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  if (!pStream || (flags & ~static_cast<unsigned>(cudaStreamNonBlocking)) != 0) {
    return record_error(cudaErrorInvalidValue);
  }
  auto* s = new CUstream_st{flags};
  lsemu::detail::Handles& h = lsemu::detail::handles();
  std::lock_guard<std::mutex> lock(h.mu);
  h.streams.insert(s);
  *pStream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  lsemu::detail::Handles& h = lsemu::detail::handles();
  std::lock_guard<std::mutex> lock(h.mu);
  if (!stream || h.streams.erase(stream) == 0) return record_error(cudaErrorInvalidResourceHandle);
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return stream_valid(stream) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return stream_valid(stream) ? cudaSuccess : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (!stream_valid(stream) || !lsemu::detail::event_valid(event)) {
    return record_error(cudaErrorInvalidResourceHandle);
  }
  if ((flags & ~static_cast<unsigned>(cudaEventWaitExternal)) != 0) {
    return record_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

// ---- Events ------------------------------------------------------------------
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  constexpr unsigned kKnown = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
  if (!event || (flags & ~kKnown) != 0) return record_error(cudaErrorInvalidValue);
  // As documented: an interprocess event must also disable timing.
  if ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)) {
    return record_error(cudaErrorInvalidValue);
  }
  auto* e = new CUevent_st{flags, false, {}};
  lsemu::detail::Handles& h = lsemu::detail::handles();
  std::lock_guard<std::mutex> lock(h.mu);
  h.events.insert(e);
  *event = e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  lsemu::detail::Handles& h = lsemu::detail::handles();
  std::lock_guard<std::mutex> lock(h.mu);
  if (!event || h.events.erase(event) == 0) return record_error(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!lsemu::detail::event_valid(event) || !stream_valid(stream)) {
    return record_error(cudaErrorInvalidResourceHandle);
  }
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return lsemu::detail::event_valid(event) ? cudaSuccess
                                           : record_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  return lsemu::detail::event_valid(event) ? cudaSuccess
                                           : record_error(cudaErrorInvalidResourceHandle);
}

// As documented: both events recorded, neither created with
// cudaEventDisableTiming, else cudaErrorInvalidResourceHandle.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return record_error(cudaErrorInvalidValue);
  if (!lsemu::detail::event_valid(start) || !lsemu::detail::event_valid(end)) {
    return record_error(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded || (start->flags & cudaEventDisableTiming) ||
      (end->flags & cudaEventDisableTiming)) {
    return record_error(cudaErrorInvalidResourceHandle);
  }
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

// ---- Graphs (not emulated) -----------------------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed) {
    return record_error(cudaErrorInvalidValue);
  }
  return record_error(cudaErrorNotSupported);
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  if (pGraph) *pGraph = nullptr;
  if (!stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  if (!pGraph) return record_error(cudaErrorInvalidValue);
  return record_error(cudaErrorIllegalState);  // the stream is not capturing
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  if (!pCaptureStatus) return record_error(cudaErrorInvalidValue);
  if (!stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  *pCaptureStatus = cudaStreamCaptureStatusNone;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  (void)graph;
  (void)flags;
  if (pGraphExec) *pGraphExec = nullptr;
  return record_error(cudaErrorInvalidValue);  // no graph can exist
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  (void)graphExec;
  if (!stream_valid(stream)) return record_error(cudaErrorInvalidResourceHandle);
  return record_error(cudaErrorInvalidValue);
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  (void)graph;
  return record_error(cudaErrorInvalidValue);
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  (void)graphExec;
  return record_error(cudaErrorInvalidValue);
}
