#include "launch/report.h"

#include <string.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "lockstep/error.h"

namespace lockstep {

std::string exit_code_meaning(int exit_code) {
  switch (exit_code) {
    case 1: return "uncaught_exception";
    case kExitHardDeadline: return "hard_deadline";
    default: break;
  }
  std::string meaning;
  for (int value = static_cast<int>(ErrorCode::kInvalidArgument);
       value <= static_cast<int>(ErrorCode::kInternal); ++value) {
    const auto code = static_cast<ErrorCode>(value);
    if (exit_code_for(code) != exit_code) continue;
    if (!meaning.empty()) meaning += '/';
    meaning += error_code_name(code);
  }
  return meaning;
}

namespace launch_detail {
namespace {

constexpr int kJsonFormatVersion = 1;

std::string signal_label(int signal_number) {
  const char* abbrev = ::sigabbrev_np(signal_number);
  return "signal " + std::to_string(signal_number) +
         (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
}

std::string seconds_text(std::int64_t ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms) / 1000.0);
  return text;
}

std::string plural(int count, const char* noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

const char* end_name(LaunchEnd end) {
  switch (end) {
    case LaunchEnd::kSuccess: return "success";
    case LaunchEnd::kRankFailed: return "rank_failed";
    case LaunchEnd::kTimeout: return "timeout";
    case LaunchEnd::kLauncherSignaled: return "launcher_signaled";
    case LaunchEnd::kPeerNodeFailed: return "peer_node_failed";
  }
  return "unknown";
}

nlohmann::json rank_json(const RankStatus& status) {
  return {{"rank", status.rank},
          {"pid", status.pid},
          {"end", status.end == RankStatus::End::kExited ? "exited" : "signaled"},
          {"code", status.code},
          {"exit_code", exit_code_of(status)},
          {"described", describe_rank_end(status)},
          {"stopped_by_launcher", status.stopped_by_launcher},
          {"killed_by_launcher", status.killed_by_launcher},
          {"ended_after_ms", status.ended_after_ms}};
}

}  // namespace

std::string describe_rank_end(const RankStatus& status) {
  if (status.end == RankStatus::End::kSignaled) return signal_label(status.code);
  const std::string meaning = exit_code_meaning(status.code);
  return "exit " + std::to_string(status.code) + (meaning.empty() ? "" : " (" + meaning + ")");
}

int exit_code_of(const RankStatus& status) {
  return status.end == RankStatus::End::kSignaled ? kExitSignalBase + status.code : status.code;
}

std::string summarize(const LaunchResult& result) {
  const std::string after = " after " + seconds_text(result.wall_ms);
  const std::string head = "lockstep launch: ";
  switch (result.end) {
    case LaunchEnd::kSuccess:
      return head + plural(static_cast<int>(result.ranks.size()), "rank") + " exited 0" + after;
    case LaunchEnd::kRankFailed: {
      const RankStatus& first = result.ranks.at(static_cast<std::size_t>(result.first_failed_rank));
      const RankStatus& cause = result.ranks.at(static_cast<std::size_t>(result.cause_rank));
      const std::string first_text = "rank " + std::to_string(first.rank) + " failed first: " +
                                     describe_rank_end(first) + " after " +
                                     seconds_text(first.ended_after_ms);
      const std::string stopped = "; stopped " + std::to_string(result.stopped_ranks) +
                                  (result.stopped_ranks == 1 ? " other" : " others");
      if (cause.rank == first.rank) return head + first_text + stopped;
      return head + "rank " + std::to_string(cause.rank) + " caused the failure: " +
             describe_rank_end(cause) + " after " + seconds_text(cause.ended_after_ms) + " (" +
             first_text + ")" + stopped;
    }
    case LaunchEnd::kTimeout:
      if (result.first_failed_rank >= 0) {  // the end bound: a rank hung after another ended cleanly
        return head + "rank " + std::to_string(result.ranks.at(static_cast<std::size_t>(result.first_failed_rank)).rank) +
               " hung at the end of the job (still running past the end bound)" + after + "; stopped " +
               plural(result.stopped_ranks, "rank");
      }
      return head + "job timed out" + after + "; stopped " + plural(result.stopped_ranks, "rank");
    case LaunchEnd::kLauncherSignaled:
      return head + "launcher got " + signal_label(result.launcher_signal) + after + "; stopped " +
             plural(result.stopped_ranks, "rank");
    case LaunchEnd::kPeerNodeFailed:
      return head + "another machine failed (" + result.peer_node_failure + ")" + after + "; stopped " +
             plural(result.stopped_ranks, "rank");
  }
  return head + "unknown end";
}

std::vector<std::string> list_dump_files(const std::string& job_dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(job_dir + "/dumps", error)) {
    if (files.size() == kLaunchDumpFilesMax) break;
    if (entry.is_regular_file(error)) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

void write_launch_json(const LaunchResult& result) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankStatus& status : result.ranks) ranks.push_back(rank_json(status));
  nlohmann::json recoveries = nlohmann::json::array();
  for (const LaunchResult::Recovery& recovery : result.recoveries) {
    recoveries.push_back({{"generation", recovery.generation}, {"cause", recovery.cause},
                          {"after_ms", recovery.after_ms}, {"restarted_ranks", recovery.restarted_ranks}});
  }
  const nlohmann::json document = {
      {"format", "lockstep.launch"}, {"version", kJsonFormatVersion},
      {"job_id", result.job_id}, {"job_dir", result.job_dir}, {"node_rank", result.node_rank},
      {"peer_node_failure", result.peer_node_failure},
      {"end", end_name(result.end)}, {"exit_code", result.exit_code},
      {"first_failed_rank", result.first_failed_rank}, {"cause_rank", result.cause_rank},
      {"launcher_signal", result.launcher_signal}, {"stopped_ranks", result.stopped_ranks},
      {"wall_ms", result.wall_ms}, {"started_unix_ms", result.started_unix_ms}, {"summary", result.summary},
      {"dump_files", result.dump_files}, {"ranks", ranks},
      {"generation", result.generation}, {"recoveries", recoveries},
      {"console_lines_dropped", result.console_lines_dropped},
      {"log_lines_dropped", result.log_lines_dropped}};
  const std::string path = result.job_dir + "/launch.json";
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << document.dump(2) << '\n';
    if (!out.flush()) throw Error(ErrorCode::kResource, "launch: cannot write " + temporary);
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) throw Error(ErrorCode::kResource, "launch: rename to " + path + ": " + error.message());
}

}  // namespace launch_detail
}  // namespace lockstep
