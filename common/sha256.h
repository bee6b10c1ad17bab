// SHA-256 (OpenSSL's EVP) as lowercase hex, over one or more byte strings
// hashed as their concatenation. Used for API-key hashes and the digests
// that make the durable adapter store detect corrupt files.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace loraserve {

std::string sha256_hex(std::initializer_list<std::string_view> parts);
inline std::string sha256_hex(std::string_view data) { return sha256_hex({data}); }

}  // namespace loraserve
