// NamePattern (services/load/name_pattern.h): client regular expressions in RE2
// syntax, matched against whole tensor names, with a length limit; and the
// sharding rules and ignore lists that use it.
#include "services/load/name_pattern.h"

#include <string>

#include "gtest/gtest.h"
#include "services/load/sharding_rules.h"
#include "services/load/tensor_selection.h"

namespace weightd {
namespace {

NamePattern Compiled(const std::string& pattern) {
  absl::StatusOr<NamePattern> compiled = NamePattern::Compile(pattern, pattern);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  return *std::move(compiled);
}

// std::regex backtracks on this pair for longer than any test may run (2^n paths
// for n letters, or a stack overflow); RE2 answers in time linear in the name.
constexpr char kCatastrophic[] = "(a+)+$";
std::string LongNonMatchingName() { return std::string(1000, 'a') + "!"; }

TEST(NamePattern, MatchesTheWholeNameOnly) {
  const NamePattern pattern = Compiled(R"(.*self_attn\.[kv]_proj)");
  EXPECT_TRUE(pattern.FullMatch("model.layers.7.self_attn.k_proj"));
  EXPECT_FALSE(pattern.FullMatch("model.layers.7.self_attn.k_proj.weight"));
  EXPECT_FALSE(Compiled("o_proj").FullMatch("model.layers.0.self_attn.o_proj.weight"));
  EXPECT_TRUE(Compiled("a|ab").FullMatch("ab")) << "an alternative matching a prefix is not the end";
}

TEST(NamePattern, CatastrophicBacktrackingPatternAnswers) {
  const NamePattern pattern = Compiled(kCatastrophic);
  EXPECT_FALSE(pattern.FullMatch(LongNonMatchingName()));
  EXPECT_TRUE(pattern.FullMatch(std::string(1000, 'a')));
}

TEST(NamePattern, MalformedPatternIsInvalidArgumentNamingIt) {
  absl::StatusOr<NamePattern> bad = NamePattern::Compile("(open", "re:(open");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "pattern 're:(open' is not a regular expression: missing ): (open");
}

TEST(NamePattern, PatternOverTheLengthLimitIsInvalidArgumentNamingItTrimmed) {
  const std::string at_limit(kMaxNamePatternBytes, 'a');
  EXPECT_TRUE(NamePattern::Compile(at_limit, at_limit).ok());
  const std::string over = "x" + at_limit;
  absl::StatusOr<NamePattern> long_pattern = NamePattern::Compile(over, over);
  EXPECT_EQ(long_pattern.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(long_pattern.status().message(),
            "pattern 'x" + std::string(63, 'a') + "...' is 1025 bytes, over the limit of 1024");
}

TEST(NamePattern, TrimmingKeepsUtf8CharactersWhole) {
  // 63 ASCII bytes, then a two-byte character across the 64-byte cut.
  const std::string over = std::string(63, 'a') + "\xC3\xA9" + std::string(kMaxNamePatternBytes, 'b');
  absl::StatusOr<NamePattern> long_pattern = NamePattern::Compile(over, over);
  EXPECT_EQ(long_pattern.status().message(),
            "pattern '" + std::string(63, 'a') + "...' is 1089 bytes, over the limit of 1024");
}

TEST(NamePattern, ProgramOverTheMemoryBoundIsInvalidArgument) {
  // Nine bytes, but a thousand copies of every Unicode letter's ranges.
  absl::StatusOr<NamePattern> big = NamePattern::Compile(R"(\pL{1000})", "big");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(big.status().message(), "pattern 'big' is not a regular expression: pattern too large - compile failed");
}

google::protobuf::RepeatedPtrField<v1::ShardingRule> OneRule(const std::string& pattern) {
  google::protobuf::RepeatedPtrField<v1::ShardingRule> rules;
  v1::ShardingRule* rule = rules.Add();
  rule->set_pattern(pattern);
  rule->set_split(v1::SPLIT_ROW);
  return rules;
}

TEST(NamePattern, ShardingRuleWithACatastrophicPatternAnswers) {
  absl::StatusOr<ShardingRules> rules = ShardingRules::Create(OneRule(kCatastrophic));
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ(rules->For(LongNonMatchingName()).kind, SplitKind::kReplicate);
  EXPECT_EQ(rules->For(std::string(1000, 'a')).kind, SplitKind::kRow);
}

TEST(NamePattern, ShardingRuleOverTheLengthLimitIsRefusedNamingTheRule) {
  absl::StatusOr<ShardingRules> rules = ShardingRules::Create(OneRule(std::string(kMaxNamePatternBytes + 1, 'a')));
  EXPECT_EQ(rules.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rules.status().message(), "placement.sharding_rules[0]: pattern '" + std::string(64, 'a') +
                                          "...' is 1025 bytes, over the limit of 1024");
}

TEST(NamePattern, IgnoreEntryWithACatastrophicPatternAnswers) {
  absl::StatusOr<TensorSelection> selection = TensorSelection::Create(true, {std::string("re:") + kCatastrophic});
  ASSERT_TRUE(selection.ok()) << selection.status();
  EXPECT_FALSE(selection->Ignored(LongNonMatchingName() + ".weight"));
  EXPECT_TRUE(selection->Ignored(std::string(1000, 'a') + ".weight")) << "the module name matches";
}

TEST(NamePattern, IgnoreEntryOverTheLengthLimitIsRefusedNamingIt) {
  absl::StatusOr<TensorSelection> selection =
      TensorSelection::Create(true, {"re:" + std::string(kMaxNamePatternBytes + 1, 'a')});
  EXPECT_EQ(selection.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(selection.status().message(),
            "ignore pattern 're:" + std::string(61, 'a') + "...' is 1025 bytes, over the limit of 1024");
}

}  // namespace
}  // namespace weightd
