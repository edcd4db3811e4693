// diagnose(): load, align, run the rules in specificity order, pick the
// verdict; format_text/format_json render the same Diagnosis.
#include "lockstep/doctor.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "doctor/analysis.h"
#include "doctor/pickle_writer.h"
#include "doctor/torch_fr.h"
#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

constexpr Verdict kAllVerdicts[] = {
    Verdict::kHealthy, Verdict::kNoDumps, Verdict::kHang, Verdict::kMismatch, Verdict::kMissingParticipant,
    Verdict::kWrongGroup, Verdict::kPlanMismatch, Verdict::kParity, Verdict::kDigest, Verdict::kStrandedCommit,
    Verdict::kCrash, Verdict::kProtocol};

Verdict verdict_from_kind(const std::string& kind) {
  for (const Verdict v : kAllVerdicts) {
    if (verdict_name(v) == kind) return v;
  }
  LOCKSTEP_ASSERT(false && "a rule produced a finding kind that is not a verdict");
  return Verdict::kCrash;
}

// Most specific first: a rank's own statement of a broken rule, then what the
// alignment proves (mismatch, stranding, stuck, missing), then who failed first.
std::vector<Finding> ordered_findings(const doctor::Analysis& a) {
  std::vector<Finding> stated = doctor::find_reason_codes(a);
  std::vector<Finding> out;
  auto take_stated = [&](Verdict v) {
    for (Finding& f : stated) {
      if (f.kind == verdict_name(v)) out.push_back(std::move(f));
    }
  };
  auto take = [&](std::optional<Finding> f) {
    if (f) out.push_back(std::move(*f));
  };
  take_stated(Verdict::kWrongGroup);
  take_stated(Verdict::kParity);
  take_stated(Verdict::kPlanMismatch);
  take(doctor::find_mismatch(a));
  take(doctor::find_stranded_commit(a));
  take_stated(Verdict::kDigest);
  take_stated(Verdict::kProtocol);
  take(doctor::find_stuck(a));
  take(doctor::find_missing_participant(a));
  take(doctor::find_first_failure(a));
  return out;
}

Finding no_dumps_finding(const doctor::DumpSet& set, const std::filesystem::path& dir) {
  Finding f;
  f.kind = std::string(verdict_name(Verdict::kNoDumps));
  f.summary = "no readable dump in " + doctor::dumps_dir_for(dir).string();
  f.ranks = set.ranks_missing;
  return f;
}

Finding healthy_finding(const doctor::DumpSet& set) {
  Finding f;
  f.kind = std::string(verdict_name(Verdict::kHealthy));
  f.summary = "no fault found in " + std::to_string(set.dumps.size()) + " dump(s)";
  return f;
}

}  // namespace

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kHealthy: return "healthy";
    case Verdict::kNoDumps: return "no_dumps";
    case Verdict::kHang: return "hang";
    case Verdict::kMismatch: return "mismatch";
    case Verdict::kMissingParticipant: return "missing_participant";
    case Verdict::kWrongGroup: return "wrong_group";
    case Verdict::kPlanMismatch: return "plan_mismatch";
    case Verdict::kParity: return "parity";
    case Verdict::kDigest: return "digest";
    case Verdict::kStrandedCommit: return "stranded_commit";
    case Verdict::kCrash: return "crash";
    case Verdict::kProtocol: return "protocol";
  }
  return "unknown";
}

namespace {

// The generations of a job directory that recovered, oldest first, each with
// the directory its dumps live in (recovery.h generation_dir): the job
// directory for generation 0, generations/g<G> after it, up to the last
// generation launch.json names (else the highest found). Empty for a job
// that never recovered and for a dumps directory.
std::vector<std::pair<std::uint32_t, std::filesystem::path>> job_generations(const std::filesystem::path& dir) {
  std::error_code error;
  const std::filesystem::path root = dir / "generations";
  if (!std::filesystem::is_directory(root, error)) return {};
  std::uint32_t last = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 2 || name[0] != 'g' || name.find_first_not_of("0123456789", 1) != std::string::npos ||
        name.size() > 8) {
      continue;
    }
    last = std::max(last, static_cast<std::uint32_t>(std::stoul(name.substr(1))));
  }
  std::ifstream launch(dir / "launch.json");
  const nlohmann::json record = nlohmann::json::parse(launch, nullptr, false);
  if (record.is_object() && record.value("generation", nlohmann::json()).is_number_unsigned()) {
    last = std::min(record["generation"].get<std::uint32_t>(), kDoctorGenerationsMax);
  }
  std::vector<std::pair<std::uint32_t, std::filesystem::path>> generations;
  for (std::uint32_t g = 0; g <= last && g <= kDoctorGenerationsMax; ++g) {
    generations.emplace_back(g, g == 0 ? dir : root / ("g" + std::to_string(g)));
  }
  return generations;
}

Diagnosis diagnose_generation(const std::filesystem::path& dir, const DoctorOptions& options);

}  // namespace

Diagnosis diagnose(const std::filesystem::path& dir, const DoctorOptions& options) {
  if (options.world_size < 0) {
    throw Error(ErrorCode::kInvalidArgument, "doctor: world_size " + std::to_string(options.world_size) + " < 0");
  }
  const auto generations = job_generations(dir);
  if (generations.size() < 2) return diagnose_generation(dir, options);
  Diagnosis last = diagnose_generation(generations.back().second, options);
  for (std::size_t i = 0; i + 1 < generations.size(); ++i) {
    const Diagnosis earlier = diagnose_generation(generations[i].second, options);
    last.earlier_generations.push_back({generations[i].first, earlier.verdict, earlier.primary.summary});
  }
  return last;
}

namespace {

Diagnosis diagnose_generation(const std::filesystem::path& dir, const DoctorOptions& options) {
  doctor::DumpSet set = doctor::load_dumps(dir, options.world_size, options.torch_fr_prefix);
  Diagnosis d;
  d.world_size = set.world_size;
  d.ranks_missing = set.ranks_missing;
  d.problems = set.problems;
  for (const doctor::Dump& dump : set.dumps) d.ranks_present.push_back(dump.rank);
  if (set.dumps.empty()) {
    d.verdict = Verdict::kNoDumps;
    d.primary = no_dumps_finding(set, dir);
    return d;
  }
  const doctor::Analysis analysis(set);
  std::vector<Finding> findings = ordered_findings(analysis);
  if (findings.empty()) {
    d.verdict = Verdict::kHealthy;
    d.primary = healthy_finding(set);
  } else {
    d.verdict = verdict_from_kind(findings.front().kind);
    d.primary = std::move(findings.front());
    std::move(findings.begin() + 1, findings.end(), std::back_inserter(d.supporting));
  }
  for (Finding& f : doctor::find_supporting(analysis)) d.supporting.push_back(std::move(f));
  return d;
}

}  // namespace

std::vector<std::filesystem::path> export_torch_flight_recorder(const std::filesystem::path& dir,
                                                                const std::filesystem::path& out,
                                                                TorchFrFormat format) {
  const doctor::DumpSet set = doctor::load_dumps(dir, 0);
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) throw Error(ErrorCode::kResource, out.string() + ": " + error.message());
  std::vector<std::filesystem::path> written;
  for (const doctor::Dump& dump : set.dumps) {
    if (dump.role == "torch") continue;  // already PyTorch's own
    const bool json = format == TorchFrFormat::kJson;
    const std::filesystem::path path =
        out / (std::string(doctor::kTorchFrPrefixDefault) + std::to_string(dump.rank) + (json ? ".json" : ""));
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    const nlohmann::json value = doctor::torch_fr_value(set, dump);
    file << (json ? value.dump() : doctor::write_pickle(value));
    if (!file.flush()) throw Error(ErrorCode::kResource, path.string() + ": cannot write");
    written.push_back(path);
  }
  return written;
}

namespace {

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (std::size_t i = 0; i < ranks.size(); ++i) out += (i == 0 ? "" : ",") + std::to_string(ranks[i]);
  return out.empty() ? "none" : out;
}

void append_finding(std::string& out, const Finding& f, std::string_view indent) {
  out += std::string(indent) + "[" + f.kind + "] " + f.summary + "\n";
  for (const std::string& detail : f.details) out += std::string(indent) + "    " + detail + "\n";
}

nlohmann::json finding_json(const Finding& f) {
  return {{"kind", f.kind}, {"summary", f.summary}, {"ranks", f.ranks}, {"others", f.others},
          {"group", f.group}, {"op", f.op}, {"group_seq", f.group_seq}, {"details", f.details}};
}

}  // namespace

std::string format_text(const Diagnosis& d) {
  std::string out = "VERDICT: " + std::string(verdict_name(d.verdict)) + " \xE2\x80\x94 " + d.primary.summary + "\n";
  for (const std::string& detail : d.primary.details) out += "    " + detail + "\n";
  out += "dumps: " + std::to_string(d.ranks_present.size()) + " of world_size " + std::to_string(d.world_size) +
         " (missing: " + rank_list(d.ranks_missing) + ")\n";
  for (const DumpProblem& p : d.problems) out += "unusable dump: " + p.message + "\n";
  if (!d.supporting.empty()) out += "supporting findings:\n";
  for (const Finding& f : d.supporting) append_finding(out, f, "  ");
  if (!d.earlier_generations.empty()) out += "earlier generations (warm recovery):\n";
  for (const GenerationVerdict& g : d.earlier_generations) {
    out += "  generation " + std::to_string(g.generation) + ": " + std::string(verdict_name(g.verdict)) +
           " \xE2\x80\x94 " + g.summary + "\n";
  }
  return out;
}

std::string format_json(const Diagnosis& d) {
  nlohmann::json supporting = nlohmann::json::array();
  for (const Finding& f : d.supporting) supporting.push_back(finding_json(f));
  nlohmann::json problems = nlohmann::json::array();
  for (const DumpProblem& p : d.problems) problems.push_back({{"file", p.file}, {"message", p.message}});
  nlohmann::json earlier = nlohmann::json::array();
  for (const GenerationVerdict& g : d.earlier_generations) {
    earlier.push_back({{"generation", g.generation}, {"verdict", verdict_name(g.verdict)}, {"summary", g.summary}});
  }
  const nlohmann::json j = {{"verdict", verdict_name(d.verdict)},
                            {"exit_status", static_cast<int>(d.verdict)},
                            {"primary", finding_json(d.primary)},
                            {"supporting", supporting},
                            {"world_size", d.world_size},
                            {"ranks_present", d.ranks_present},
                            {"ranks_missing", d.ranks_missing},
                            {"problems", problems},
                            {"earlier_generations", earlier}};
  // Replace, not throw, on invalid UTF-8 from a dump: the report must print.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace lockstep
