// Findings a rank stated itself: the error code of its dump reason or of a
// failed event's detail ("membership: rank 0 is not in group mesh"). These are
// the most specific causes there are: the rank's own check named the rule.
#include <algorithm>
#include <map>

#include "doctor/analysis.h"
#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

std::optional<Verdict> verdict_for_error(ErrorCode code) {
  switch (code) {
    case ErrorCode::kMembership:
    case ErrorCode::kPhase: return Verdict::kWrongGroup;
    case ErrorCode::kParity: return Verdict::kParity;
    case ErrorCode::kPlan: return Verdict::kPlanMismatch;
    case ErrorCode::kDigest:
    case ErrorCode::kLedger: return Verdict::kDigest;
    case ErrorCode::kEncode:
    case ErrorCode::kDecode:
    case ErrorCode::kChecksum:
    case ErrorCode::kVersion:
    case ErrorCode::kSchema:
    case ErrorCode::kLimit:
    case ErrorCode::kStaleWork:
    case ErrorCode::kOwnership:
    case ErrorCode::kKvLifecycle:
    case ErrorCode::kJobToken: return Verdict::kProtocol;
    default: return std::nullopt;  // timeouts, peer failures, backend: judged from the alignment
  }
}

// Maps an error_code_name() to the verdict class it proves, if any.
std::optional<Verdict> verdict_for_code_name(std::string_view name) {
  for (int raw = static_cast<int>(ErrorCode::kInvalidArgument); raw <= static_cast<int>(ErrorCode::kInternal); ++raw) {
    const auto code = static_cast<ErrorCode>(raw);
    if (error_code_name(code) == name) return verdict_for_error(code);
  }
  return std::nullopt;
}

std::string_view class_title(Verdict v) {
  switch (v) {
    case Verdict::kWrongGroup: return "wrong-group use";
    case Verdict::kParity: return "parity mismatch";
    case Verdict::kPlanMismatch: return "plan/call-count mismatch";
    case Verdict::kDigest: return "digest/ledger mismatch";
    default: return "protocol error";
  }
}

struct Statement {
  std::int64_t t_ns = 0;
  int rank = 0;
  std::string message;
  const Event* event = nullptr;  // the failed event that stated it, if any
};

// The code prefix of a failed event's detail, as Error::what() writes it.
std::string_view code_prefix(std::string_view detail) {
  const std::size_t colon = detail.find(':');
  return colon == std::string_view::npos ? std::string_view{} : detail.substr(0, colon);
}

void collect_statements(const Analysis& a, const Dump& d, std::map<Verdict, std::vector<Statement>>& out) {
  bool from_event = false;
  for (const Event& e : d.events) {
    if (e.state != EventState::kFailed) continue;
    const std::string& detail = a.str(e.detail);
    if (const auto v = verdict_for_code_name(code_prefix(detail))) {
      out[*v].push_back({e.t_ns, d.rank, detail, &e});
      from_event = true;
      break;  // the first failure of a rank is its cause; later ones follow from it
    }
  }
  if (from_event) return;
  if (const auto v = verdict_for_code_name(d.reason.code)) {
    out[*v].push_back({d.dumped_at_ns, d.rank, d.reason.code + ": " + d.reason.message, nullptr});
  }
}

Finding finding_for(const Analysis& a, Verdict v, std::vector<Statement> statements) {
  std::sort(statements.begin(), statements.end(), [](const Statement& x, const Statement& y) {
    return x.t_ns != y.t_ns ? x.t_ns < y.t_ns : x.rank < y.rank;
  });
  Finding f;
  f.kind = std::string(verdict_name(v));
  for (const Statement& s : statements) {
    f.ranks.push_back(s.rank);
    f.details.push_back("rank " + std::to_string(s.rank) + ": " + s.message);
  }
  const Statement& first = statements.front();
  if (first.event != nullptr) {
    f.group = a.str(first.event->group);
    f.op = a.str(first.event->op);
    f.group_seq = first.event->group_seq;
  }
  f.summary = std::string(class_title(v)) + " raised by rank " + std::to_string(first.rank) +
              (f.op.empty() ? "" : " at " + describe_op(a, first.event->op, f.group_seq, first.event->group)) +
              ": " + first.message;
  return f;
}

}  // namespace

std::vector<Finding> find_reason_codes(const Analysis& a) {
  std::map<Verdict, std::vector<Statement>> by_class;
  for (const Dump& d : a.set.dumps) collect_statements(a, d, by_class);
  // Specificity order within the classes a rank can state.
  constexpr Verdict kOrder[] = {Verdict::kWrongGroup, Verdict::kParity, Verdict::kPlanMismatch, Verdict::kDigest,
                                Verdict::kProtocol};
  std::vector<Finding> out;
  for (const Verdict v : kOrder) {
    auto it = by_class.find(v);
    if (it != by_class.end()) out.push_back(finding_for(a, v, std::move(it->second)));
  }
  return out;
}

}  // namespace lockstep::doctor
