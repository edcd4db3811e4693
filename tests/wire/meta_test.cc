#include "lockstep/meta.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lockstep/wire_limits.h"
#include "wire/expect_error.h"
#include "wire/wire_fixtures.h"

namespace lockstep {
namespace {

TEST(Meta, SameContentInAnyInsertionOrderGivesIdenticalBytesAndDigest) {
  const Meta forward = wire_test::sample_meta();
  Meta backward;
  const auto entries = forward.entries();
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) backward.set(it->first, it->second);
  Meta shuffled;
  for (const std::size_t i : {3u, 0u, 7u, 5u, 1u, 6u, 2u, 4u}) shuffled.set(entries[i].first, entries[i].second);

  EXPECT_EQ(encode_meta(forward), encode_meta(backward));
  EXPECT_EQ(encode_meta(forward), encode_meta(shuffled));
  EXPECT_EQ(meta_digest(forward), meta_digest(shuffled));
  EXPECT_TRUE(std::is_sorted(shuffled.entries().begin(), shuffled.entries().end(),
                             [](const auto& a, const auto& b) { return a.first < b.first; }));
}

TEST(Meta, DifferentContentGivesDifferentDigest) {
  Meta a = wire_test::sample_meta();
  Meta b = a;
  b.set("seed", std::int64_t{1235});
  EXPECT_NE(meta_digest(a), meta_digest(b));
  Meta c = a;
  c.set("seed", 1234.0);  // same number, other type
  EXPECT_NE(meta_digest(a), meta_digest(c));
  Meta zero, negative_zero;
  zero.set("x", 0.0);
  negative_zero.set("x", -0.0);
  EXPECT_NE(encode_meta(zero), encode_meta(negative_zero)) << "float64 is encoded by bit pattern";
}

TEST(Meta, EncodingIsPinnedLittleEndian) {
  Meta meta;
  meta.set("b", true);
  meta.set("a", std::int64_t{0x0102030405060708});
  meta.set("s", std::string("hi"));
  const std::vector<std::uint8_t> expected{
      1, 'a', 1, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // int64
      1, 'b', 3, 1,                                                // bool
      1, 's', 4, 2, 0, 0, 0, 'h', 'i',                             // string
  };
  EXPECT_EQ(encode_meta(meta), expected);
}

TEST(Meta, SetReplacesFindAndErase) {
  Meta meta;
  meta.set("k", std::int64_t{1});
  meta.set("k", std::string("two"));
  EXPECT_EQ(meta.size(), 1u);
  ASSERT_NE(meta.find("k"), nullptr);
  EXPECT_EQ(std::get<std::string>(*meta.find("k")), "two");
  EXPECT_EQ(meta.find("missing"), nullptr);
  EXPECT_TRUE(meta.erase("k"));
  EXPECT_FALSE(meta.erase("k"));
  EXPECT_TRUE(meta.empty());
  EXPECT_TRUE(encode_meta(meta).empty());
}

TEST(Meta, UnencodableValuesFailNamingTheKey) {
  Meta nan;
  nan.set("guidance", std::numeric_limits<double>::quiet_NaN());
  EXPECT_LOCKSTEP_ERROR(encode_meta(nan), ErrorCode::kEncode, "meta 'guidance'");
  Meta inf;
  inf.set("w", std::vector<double>{1.0, std::numeric_limits<double>::infinity()});
  EXPECT_LOCKSTEP_ERROR(encode_meta(inf), ErrorCode::kEncode, "meta 'w'");
  Meta bad_utf8;
  bad_utf8.set("prompt", std::string("caf\xC3"));
  EXPECT_LOCKSTEP_ERROR(encode_meta(bad_utf8), ErrorCode::kEncode, "meta 'prompt' is not valid UTF-8");
  Meta overlong_utf8;
  overlong_utf8.set("p", std::string("\xC0\xAF"));
  EXPECT_LOCKSTEP_ERROR(encode_meta(overlong_utf8), ErrorCode::kEncode, "meta 'p'");
  Meta surrogate;
  surrogate.set("p", std::string("\xED\xA0\x80"));
  EXPECT_LOCKSTEP_ERROR(encode_meta(surrogate), ErrorCode::kEncode, "meta 'p'");
  Meta long_string;
  long_string.set("prompt", std::string(kStringBytesMax + 1, 'x'));
  EXPECT_LOCKSTEP_ERROR(encode_meta(long_string), ErrorCode::kEncode, "meta 'prompt' is 1025 bytes");
  Meta list_item;
  list_item.set("tags", std::vector<std::string>{"ok", std::string("\xFF")});
  EXPECT_LOCKSTEP_ERROR(encode_meta(list_item), ErrorCode::kEncode, "meta 'tags'");
}

TEST(Meta, BadKeysAreRefusedWhenSet) {
  Meta meta;
  EXPECT_LOCKSTEP_ERROR(meta.set("", std::int64_t{1}), ErrorCode::kEncode, "meta key is empty");
  EXPECT_LOCKSTEP_ERROR(meta.set("a b", std::int64_t{1}), ErrorCode::kEncode, "meta key 'a b'");
  EXPECT_LOCKSTEP_ERROR(meta.set("caf\xC3\xA9", std::int64_t{1}), ErrorCode::kEncode, "byte 195 at offset 3");
  EXPECT_LOCKSTEP_ERROR(meta.set(std::string(kMetaKeyBytesMax + 1, 'k'), std::int64_t{1}), ErrorCode::kEncode,
                        "more than 64");
  EXPECT_TRUE(meta.empty());
  meta.set(std::string(kMetaKeyBytesMax, 'k'), std::int64_t{1});
  meta.set("Az09_.:/-", std::int64_t{2});
  EXPECT_NO_THROW(encode_meta(meta));
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"bad key": 1})"), ErrorCode::kEncode, "meta key 'bad key'");
}

TEST(Meta, LimitsAreEnforced) {
  Meta many;
  for (std::size_t i = 0; i <= kMetaKeysMax; ++i) many.set("k" + std::to_string(i), std::int64_t{1});
  EXPECT_LOCKSTEP_ERROR(encode_meta(many), ErrorCode::kLimit, "kMetaKeysMax");
  many.erase("k0");
  EXPECT_NO_THROW(encode_meta(many));

  Meta long_list;
  long_list.set("ids", std::vector<std::int64_t>(kMetaListItemsMax + 1, 7));
  EXPECT_LOCKSTEP_ERROR(encode_meta(long_list), ErrorCode::kLimit, "meta 'ids' has 257 items");

  Meta big;
  for (int i = 0; i < 9; ++i) big.set("s" + std::to_string(i), std::string(kStringBytesMax, 'x'));
  EXPECT_LOCKSTEP_ERROR(encode_meta(big), ErrorCode::kLimit, "kMetaBytesMax");
}

TEST(MetaJson, BuildsTheSameMetaAsTheTypedApi) {
  const Meta from_json = meta_from_json(R"({
      "tags": ["fox", "snow"], "seed": 1234, "guidance": 5.5, "hard_cut": false,
      "scene_ids": [3, 1, 4], "weights": [0.25, -0.5], "flags": [true, false, true],
      "prompt": "a red fox in snow, ünïcode ok"})");
  EXPECT_EQ(from_json, wire_test::sample_meta());
  EXPECT_EQ(encode_meta(from_json), encode_meta(wire_test::sample_meta()));
}

TEST(MetaJson, NestedTensorIsRejectedNamingTheKey) {
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"seed": 1, "latents": {"dtype": "f32", "shape": [2, 2]}})"),
                        ErrorCode::kSchema, "meta 'latents' is a nested object");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"mask": [[1, 0], [0, 1]]})"), ErrorCode::kSchema,
                        "meta 'mask' is a nested array");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"x": [{"t": 1}]})"), ErrorCode::kSchema, "meta 'x' is a nested object");
}

TEST(MetaJson, UntypedValuesAreRejectedNamingTheKey) {
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"n": null})"), ErrorCode::kEncode, "meta 'n'");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"e": []})"), ErrorCode::kEncode, "meta 'e' is an empty list");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"m": [1, "a"]})"), ErrorCode::kEncode, "meta 'm' mixes");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"m": [1, 2.5]})"), ErrorCode::kEncode, "meta 'm' mixes");
  EXPECT_LOCKSTEP_ERROR(meta_from_json(R"({"big": 18446744073709551615})"), ErrorCode::kEncode,
                        "meta 'big' integer");
  EXPECT_LOCKSTEP_ERROR(meta_from_json("[1, 2]"), ErrorCode::kDecode, "must be an object");
  EXPECT_LOCKSTEP_ERROR(meta_from_json("{\"a\": "), ErrorCode::kDecode, "does not parse");
}

TEST(MetaJson, ExtremeIntegersSurvive) {
  const Meta meta = meta_from_json(R"({"lo": -9223372036854775808, "hi": 9223372036854775807})");
  EXPECT_EQ(std::get<std::int64_t>(*meta.find("lo")), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(std::get<std::int64_t>(*meta.find("hi")), std::numeric_limits<std::int64_t>::max());
}

}  // namespace
}  // namespace lockstep
