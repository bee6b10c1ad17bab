// Element types of tensors on disk and in memory, and bf16/f16 <-> f32
// conversion on the host. Kept free of any engine type so kernels/ can use it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace loraserve {

enum class DType : uint8_t { kF32, kF16, kBF16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // safetensors spelling: "F32", "F16", "BF16"
// Parses a safetensors dtype string; returns false for anything unsupported.
bool parse_dtype(const std::string& s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet (matches PyTorch's float->bfloat16).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts `n` elements of type `src_type` at `src` to f32.
void convert_to_f32(DType src_type, const void* src, float* dst, size_t n);
// Converts `n` f32 values to `dst_type`.
void convert_from_f32(DType dst_type, const float* src, void* dst, size_t n);

}  // namespace loraserve
