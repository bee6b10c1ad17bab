// CUDA's fast-math intrinsics whose names glibc's <math.h> already declares
// (as internal aliases of expf, logf, ... that libm.so does not export).
// Kernels compiled by g++ therefore link against these definitions. They
// return the accurate results: the emulator does not mimic the reduced
// precision of the hardware approximations.
#include <cmath>

extern "C" {
float __expf(float x) noexcept { return std::exp(x); }
float __exp2f(float x) noexcept { return std::exp2(x); }
float __exp10f(float x) noexcept { return std::pow(10.0f, x); }
float __logf(float x) noexcept { return std::log(x); }
float __log2f(float x) noexcept { return std::log2(x); }
float __log10f(float x) noexcept { return std::log10(x); }
float __sinf(float x) noexcept { return std::sin(x); }
float __cosf(float x) noexcept { return std::cos(x); }
float __tanf(float x) noexcept { return std::tan(x); }
float __powf(float x, float y) noexcept { return std::pow(x, y); }
void __sincosf(float x, float* s, float* c) noexcept {
  *s = std::sin(x);
  *c = std::cos(x);
}
}
