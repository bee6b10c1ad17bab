#include "tests/support/test_util.h"
#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace loraserve {
namespace {

using testing_util::TempDir;
using testing_util::read_file;
using testing_util::write_file;

// A safetensors image with the given header text and `data_bytes` zero bytes.
std::string raw_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::vector<TensorToWrite> sample_tensors() {
  std::vector<TensorToWrite> ts;
  std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  ts.push_back({"z.f32", DType::kF32, {2, 3}, bytes_of(f32)});
  std::vector<uint16_t> bf = {f32_to_bf16(1.0f), f32_to_bf16(-0.5f), f32_to_bf16(3.0f),
                              f32_to_bf16(100.0f)};
  ts.push_back({"a.bf16", DType::kBF16, {4}, bytes_of(bf)});
  std::vector<uint16_t> f16 = {f32_to_f16(0.25f), f32_to_f16(-8.0f)};
  ts.push_back({"m.f16", DType::kF16, {1, 2}, bytes_of(f16)});
  ts.push_back({"empty", DType::kF32, {0, 4}, ""});
  return ts;
}

void expect_sample(const SafetensorsFile& f) {
  ASSERT_EQ(f.tensors().size(), 4u);
  const TensorInfo* z = f.find("z.f32");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->dtype, DType::kF32);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(z->numel(), 6);
  EXPECT_EQ(z->nbytes, 24u);
  float zv[6];
  std::memcpy(zv, z->data, 24);
  EXPECT_EQ(zv[0], 1.5f);
  EXPECT_EQ(zv[2], 3.25f);
  EXPECT_EQ(zv[4], 1e-3f);
  EXPECT_EQ(zv[5], -7.0f);

  const TensorInfo* a = f.find("a.bf16");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kBF16);
  float av[4];
  convert_to_f32(a->dtype, a->data, av, 4);
  EXPECT_EQ(av[0], 1.0f);
  EXPECT_EQ(av[1], -0.5f);
  EXPECT_EQ(av[3], 100.0f);

  const TensorInfo* m = f.find("m.f16");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->dtype, DType::kF16);
  float mv[2];
  convert_to_f32(m->dtype, m->data, mv, 2);
  EXPECT_EQ(mv[0], 0.25f);
  EXPECT_EQ(mv[1], -8.0f);

  const TensorInfo* e = f.find("empty");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->numel(), 0);
  EXPECT_EQ(e->nbytes, 0u);
  EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(Safetensors, WriteThenReadRoundTrips) {
  TempDir dir;
  const std::string path = dir.path() + "/t.safetensors";
  ASSERT_TRUE(write_safetensors(path, sample_tensors(), {{"format", "pt"}}).ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  expect_sample(**f);
  EXPECT_EQ((*f)->path(), path);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, HeaderIsPaddedAndTensorsAreContiguousInNameOrder) {
  TempDir dir;
  const std::string path = dir.path() + "/t.safetensors";
  ASSERT_TRUE(write_safetensors(path, sample_tensors()).ok());
  const std::string bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  // 24 + 8 + 4 + 0 bytes of data, nothing else after the header.
  EXPECT_EQ(bytes.size(), 8 + n + 36);
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const uint8_t* data = reinterpret_cast<const uint8_t*>((*f)->find("a.bf16")->data);
  // Name order: a.bf16 [0,8), empty [8,8), m.f16 [8,12), z.f32 [12,36).
  auto off = [&](const char* name) {
    return reinterpret_cast<const uint8_t*>((*f)->find(name)->data) - data;
  };
  EXPECT_EQ(off("empty"), 8);
  EXPECT_EQ(off("m.f16"), 8);
  EXPECT_EQ(off("z.f32"), 12);
}

TEST(Safetensors, FromBytesMatchesOpen) {
  TempDir dir;
  const std::string path = dir.path() + "/t.safetensors";
  ASSERT_TRUE(write_safetensors(path, sample_tensors()).ok());
  auto f = SafetensorsFile::from_bytes(read_file(path), "upload-1");
  ASSERT_TRUE(f.ok()) << f.status();
  expect_sample(**f);
  EXPECT_EQ((*f)->path(), "upload-1");
  EXPECT_TRUE((*f)->metadata().empty());
}

TEST(Safetensors, StreamingWriterMatchesInMemoryWriter) {
  TempDir dir;
  const auto tensors = sample_tensors();
  ASSERT_TRUE(write_safetensors(dir.path() + "/a.safetensors", tensors).ok());
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  int calls = 0;
  std::string last;
  Status s = write_safetensors_streaming(dir.path() + "/b.safetensors", specs,
                                         [&](const TensorSpec& spec, std::string* bytes) {
                                           EXPECT_LT(last, spec.name);  // called in name order
                                           last = spec.name;
                                           ++calls;
                                           for (const auto& t : tensors) {
                                             if (t.name == spec.name) *bytes = t.bytes;
                                           }
                                           return ok_status();
                                         });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(read_file(dir.path() + "/a.safetensors"), read_file(dir.path() + "/b.safetensors"));
}

TEST(Safetensors, WriterRefusesWrongByteCountAndDuplicates) {
  TempDir dir;
  const std::string path = dir.path() + "/t.safetensors";
  std::vector<TensorToWrite> ts = {{"x", DType::kF32, {3}, std::string(8, '\0')}};
  Status s = write_safetensors(path, ts);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("x"), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  ts = {{"x", DType::kF32, {1}, std::string(4, '\0')},
        {"x", DType::kF32, {1}, std::string(4, '\0')}};
  s = write_safetensors(path, ts);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("twice"), std::string::npos) << s;
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto f = SafetensorsFile::open("/tmp/definitely/not/here.safetensors");
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("not/here.safetensors"), std::string::npos);
}

struct BadCase {
  const char* label;
  std::string bytes;
  StatusCode code;
  std::vector<std::string> needles;  // each must appear in the message
};

void expect_bad(const BadCase& c) {
  SCOPED_TRACE(c.label);
  auto f = SafetensorsFile::from_bytes(c.bytes, c.label);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), c.code) << f.status();
  for (const std::string& n : c.needles) {
    EXPECT_NE(f.status().message().find(n), std::string::npos)
        << "'" << n << "' not in: " << f.status();
  }
}

TEST(Safetensors, TruncatedFile) {
  expect_bad({"empty file", "", StatusCode::kDataLoss, {"truncated"}});
  expect_bad({"5 bytes", std::string(5, '\x01'), StatusCode::kDataLoss, {"truncated", "5 bytes"}});
  // A valid file cut in the middle of its data: the range check catches it.
  std::string good = raw_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  expect_bad({"cut data",
              good.substr(0, good.size() - 4),
              StatusCode::kDataLoss,
              {"tensor w", "[0,16)", "12 data bytes"}});
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  std::string bytes = raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  bytes[0] = static_cast<char>(0xff);  // header length now 0x...ff, past the end
  bytes[1] = static_cast<char>(0x10);
  expect_bad({"beyond", bytes, StatusCode::kDataLoss, {"header length 4351"}});
  std::string huge(8, '\0');
  huge[5] = 0x01;  // 2^40
  expect_bad({"huge", huge + "{}", StatusCode::kDataLoss, {"header length", "limit"}});
}

TEST(Safetensors, HeaderNotJson) {
  expect_bad({"not json", raw_file("{\"w\": [1, 2", 0), StatusCode::kDataLoss, {"corrupt header"}});
  expect_bad(
      {"garbage", raw_file("\x01\x02\x03 hello", 0), StatusCode::kDataLoss, {"corrupt header"}});
  expect_bad({"array",
              raw_file("[1, 2, 3]", 0),
              StatusCode::kDataLoss,
              {"corrupt header", "not a JSON object"}});
  expect_bad({"entry not object", raw_file(R"({"w": 3})", 0), StatusCode::kDataLoss, {"tensor w"}});
  expect_bad({"no offsets",
              raw_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4),
              StatusCode::kDataLoss,
              {"tensor w", "data_offsets"}});
  expect_bad({"bad metadata",
              raw_file(R"({"__metadata__":{"k":3}})", 0),
              StatusCode::kDataLoss,
              {"__metadata__"}});
}

TEST(Safetensors, DataRangeOutsideFile) {
  expect_bad({"past end",
              raw_file(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", 16),
              StatusCode::kDataLoss,
              {"tensor w: data range [0,32) outside the file's 16 data bytes"}});
  expect_bad({"begin after end",
              raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16),
              StatusCode::kDataLoss,
              {"tensor w", "[8,4)"}});
  expect_bad({"negative offset",
              raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 16),
              StatusCode::kDataLoss,
              {"tensor w", "data_offsets"}});
}

TEST(Safetensors, OverlappingTensors) {
  expect_bad({"overlap",
              raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                       16),
              StatusCode::kDataLoss,
              {"a [0,16)", "b [8,16)", "overlap"}});
  // Touching ranges and empty tensors at a boundary are fine.
  auto f = SafetensorsFile::from_bytes(
      raw_file(R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
               R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("e":{"dtype":"BF16","shape":[0],"data_offsets":[8,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
               16),
      "ok");
  EXPECT_TRUE(f.ok()) << f.status();
  // An empty tensor placed inside another one's bytes is not (the reference
  // refuses it as an invalid offset: sorted, it does not start where the
  // previous tensor ends).
  expect_bad({"empty inside",
              raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("e":{"dtype":"BF16","shape":[0],"data_offsets":[4,4]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                       16),
              StatusCode::kDataLoss,
              {"a [0,8)", "e [4,4)", "overlap"}});
}

TEST(Safetensors, ShapeTimesDtypeMismatch) {
  expect_bad({"mismatch",
              raw_file(R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,24]}})", 24),
              StatusCode::kDataLoss,
              {"tensor w", "[2, 3]", "BF16", "needs 12 bytes", "span 24"}});
  expect_bad({"negative dim",
              raw_file(R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})", 16),
              StatusCode::kDataLoss,
              {"tensor w", "shape"}});
  expect_bad({"overflowing shape",
              raw_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                       R"("data_offsets":[0,16]}})",
                       16),
              StatusCode::kDataLoss,
              {"tensor w"}});
}

TEST(Safetensors, UnsupportedDtype) {
  expect_bad({"I64",
              raw_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16),
              StatusCode::kInvalidArgument,
              {"tensor ids: unsupported dtype I64"}});
  expect_bad({"F8",
              raw_file(R"({"w8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2),
              StatusCode::kInvalidArgument,
              {"tensor w8: unsupported dtype F8_E4M3"}});
}

TEST(Safetensors, OpenReportsPathInErrors) {
  TempDir dir;
  const std::string path = dir.path() + "/bad.safetensors";
  write_file(path, raw_file("not json", 0));
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  write_file(path, "");
  f = SafetensorsFile::open(path);
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss) << f.status();
}

// The rules below are those of Hugging Face's safetensors crate
// (Metadata::validate and read_metadata): each corrupt file is built by hand.

// A writer-made file whose header was padded with `pad` spaces, so dropping
// the last header byte leaves valid JSON: the first reported defect.
std::string padded_file(int* pad) {
  const std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  *pad = static_cast<int>((8 - json.size() % 8) % 8);
  std::string data;
  for (float v : {1.0f, 2.0f}) data.append(reinterpret_cast<const char*>(&v), 4);
  std::string out = raw_file(json + std::string(*pad, ' '), 0) + data;
  return out;
}

TEST(SafetensorsLikeHf, HeaderLengthOneByteShortIsRefused) {
  int pad = 0;
  std::string good = padded_file(&pad);
  ASSERT_GT(pad, 0);
  ASSERT_TRUE(SafetensorsFile::from_bytes(good, "good").ok());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(good[i]);
  // Length n-1: the header's trailing space drops out of the JSON, which
  // still parses, and the data section starts one byte early (every weight
  // read shifted by a byte) and is one byte too long.
  std::string bad = good;
  bad[0] = static_cast<char>(n - 1);
  expect_bad({"one byte short",
              bad,
              StatusCode::kDataLoss,
              {"one byte short: ", "cover 8 bytes", "holds 9", "1 byte(s) after the last tensor"}});
  // One byte long: the first data byte (0x00) joins the JSON.
  std::string longer = good;
  longer[0] = static_cast<char>(n + 1);
  expect_bad({"one byte long", longer, StatusCode::kDataLoss, {"corrupt header"}});
  // The same file with the trailing space really removed is valid.
  std::string shorter = good;
  shorter.erase(8 + n - 1, 1);
  shorter[0] = static_cast<char>(n - 1);
  auto f = SafetensorsFile::from_bytes(shorter, "shorter");
  ASSERT_TRUE(f.ok()) << f.status();
  float v[2];
  convert_to_f32(DType::kF32, (*f)->find("a")->data, v, 2);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], 2.0f);
}

TEST(SafetensorsLikeHf, TrailingBytesAfterTheLastTensorAreRefused) {
  int pad = 0;
  const std::string good = padded_file(&pad);
  expect_bad({"trailing", good + std::string(4, '\0'), StatusCode::kDataLoss,
              {"cover 8 bytes", "holds 12", "4 byte(s) after the last tensor"}});
  expect_bad({"one trailing", good + "x", StatusCode::kDataLoss, {"1 byte(s) after"}});
  // No tensors at all: the data section must be empty.
  expect_bad({"no tensors", raw_file("{}", 3), StatusCode::kDataLoss, {"cover 0 bytes"}});
  EXPECT_TRUE(SafetensorsFile::from_bytes(raw_file("{}", 0), "empty").ok());
}

TEST(SafetensorsLikeHf, GapsAndAStartAfterZeroAreRefused) {
  expect_bad({"gap",
              raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})",
                       16),
              StatusCode::kDataLoss,
              {"tensor b starts at data byte 12", "a, ends at 8", "4 bytes belong to no tensor"}});
  expect_bad({"late start",
              raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
              StatusCode::kDataLoss,
              {"tensor a starts at data byte 4", "no tensor starts at 0"}});
  // Two tensors swapped in the file order are fine: only the tiling counts.
  auto f = SafetensorsFile::from_bytes(
      raw_file(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
               R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
               12),
      "swapped");
  EXPECT_TRUE(f.ok()) << f.status();
}

TEST(SafetensorsLikeHf, DtypesAreCheckedAgainstTheWholeFormat) {
  expect_bad({"unknown dtype",
              raw_file(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4),
              StatusCode::kDataLoss,
              {"tensor w", "unknown dtype \"F33\""}});
  // Sizes of dtypes loraserve does not read are still checked first: a
  // corrupt file is DATA_LOSS whatever its dtypes.
  expect_bad({"I64 with a bad size",
              raw_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})", 8),
              StatusCode::kDataLoss,
              {"tensor ids", "needs 16 bytes", "span 8"}});
  expect_bad({"F4 half a byte",
              raw_file(R"({"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2),
              StatusCode::kDataLoss,
              {"tensor q", "not a whole number of bytes"}});
  expect_bad({"F4 whole bytes",
              raw_file(R"({"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}})", 2),
              StatusCode::kInvalidArgument,
              {"tensor q: unsupported dtype F4"}});
  expect_bad({"dtype not a string",
              raw_file(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4),
              StatusCode::kDataLoss,
              {"tensor w", "dtype"}});
}

TEST(SafetensorsLikeHf, ShapeOverflowIsCaughtNotWrapped) {
  // 2^62 * 4 elements of F32 is 2^66 bytes: wraps to 0 in 64 bits.
  expect_bad({"wraps to zero",
              raw_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],)"
                       R"("data_offsets":[0,0]}})",
                       0),
              StatusCode::kDataLoss,
              {"tensor w", "needs too many bytes"}});
  expect_bad({"dim beyond int64",
              raw_file(R"({"w":{"dtype":"F32","shape":[18446744073709551615],)"
                       R"("data_offsets":[0,4]}})",
                       4),
              StatusCode::kDataLoss,
              {"tensor w", "non-negative integers"}});
  expect_bad({"float dim",
              raw_file(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", 4),
              StatusCode::kDataLoss,
              {"tensor w", "shape"}});
  expect_bad({"offset beyond 2^64",
              raw_file(R"({"w":{"dtype":"F32","shape":[1],)"
                       R"("data_offsets":[0,18446744073709551620]}})",
                       4),
              StatusCode::kDataLoss,
              {"tensor w", "data_offsets"}});
}

TEST(SafetensorsLikeHf, HeaderJsonShapeIsBounded) {
  expect_bad({"duplicate key",
              raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                       4),
              StatusCode::kDataLoss,
              {"key \"a\" appears twice"}});
  expect_bad({"deep",
              raw_file(R"({"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", 4),
              StatusCode::kDataLoss,
              {"corrupt header", "nested deeper"}});
  expect_bad({"very deep", raw_file(std::string(100000, '[') + std::string(100000, ']'), 0),
              StatusCode::kDataLoss, {"nested deeper"}});
  std::string dims = "1";
  for (int i = 0; i < 64; ++i) dims += ",1";  // 65 dimensions
  expect_bad({"65 dims",
              raw_file(R"({"a":{"dtype":"F32","shape":[)" + dims + R"(],"data_offsets":[0,4]}})", 4),
              StatusCode::kDataLoss,
              {"more than 64 elements"}});
  dims = "1";
  for (int i = 0; i < 63; ++i) dims += ",1";  // 64 is PyTorch's limit, and fine
  auto f = SafetensorsFile::from_bytes(
      raw_file(R"({"a":{"dtype":"F32","shape":[)" + dims + R"(],"data_offsets":[0,4]}})", 4),
      "64 dims");
  EXPECT_TRUE(f.ok()) << f.status();
  expect_bad({"invalid utf-8 in a name",
              raw_file("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                       4),
              StatusCode::kDataLoss,
              {"corrupt header"}});
  expect_bad({"metadata nested",
              raw_file(R"({"__metadata__":{"k":{"x":"y"}}})", 0),
              StatusCode::kDataLoss,
              {"__metadata__"}});
  // nlohmann stops at a NUL byte; the reference does not, and neither do we.
  const std::string nul_junk =
      std::string(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})") +
      std::string(1, '\0') + "junk";
  expect_bad({"nul then junk", raw_file(nul_junk, 4), StatusCode::kDataLoss,
              {"corrupt header", "NUL byte at header offset 54"}});
  auto m = SafetensorsFile::from_bytes(raw_file(R"({"__metadata__":null})", 0), "null metadata");
  EXPECT_TRUE(m.ok()) << m.status();
}

TEST(SafetensorsLikeHf, UnalignedDataOfAValidFileReadsCorrectly) {
  // A 3-byte-padded header puts every tensor at an odd address; valid for
  // the format, so the values must come out right (and, under UBSan, with
  // no misaligned load).
  const std::string header =
      R"({"h":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
      R"("f":{"dtype":"F16","shape":[1],"data_offsets":[4,6]},)"
      R"("x":{"dtype":"F32","shape":[1],"data_offsets":[6,10]}})";
  std::string h = header;
  while ((8 + h.size()) % 2 == 0) h += ' ';
  std::string data;
  for (uint16_t v : {f32_to_bf16(1.5f), f32_to_bf16(-3.0f), f32_to_f16(0.25f)}) {
    data.append(reinterpret_cast<const char*>(&v), 2);
  }
  const float x = 7.5f;
  data.append(reinterpret_cast<const char*>(&x), 4);
  auto f = SafetensorsFile::from_bytes(raw_file(h, 0) + data, "odd");
  ASSERT_TRUE(f.ok()) << f.status();
  float out[2];
  convert_to_f32(DType::kBF16, (*f)->find("h")->data, out, 2);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -3.0f);
  convert_to_f32(DType::kF16, (*f)->find("f")->data, out, 1);
  EXPECT_EQ(out[0], 0.25f);
  convert_to_f32(DType::kF32, (*f)->find("x")->data, out, 1);
  EXPECT_EQ(out[0], 7.5f);
}

}  // namespace
}  // namespace loraserve
