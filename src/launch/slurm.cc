// SLURM's view of a job, for `lockstep launch` under srun (one task per
// machine): how many machines, which one this is, and where node 0 lives.
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/launcher.h"

namespace lockstep {
namespace {

[[noreturn]] void bad_list(const std::string& nodelist, const std::string& why) {
  throw Error(ErrorCode::kInvalidArgument, "SLURM_JOB_NODELIST '" + nodelist + "': " + why);
}

// Splits at commas outside brackets.
std::vector<std::string> split_top_level(const std::string& text, const std::string& nodelist) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (const char c : text) {
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) bad_list(nodelist, "']' without '['");
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
      continue;
    }
    current.push_back(c);
  }
  if (depth != 0) bad_list(nodelist, "'[' without ']'");
  parts.push_back(current);
  return parts;
}

std::size_t parse_index(const std::string& digits, const std::string& nodelist) {
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) {
    bad_list(nodelist, "range bound '" + digits + "' is not a number");
  }
  return std::stoul(digits);
}

void expand_item(const std::string& item, const std::string& nodelist, std::vector<std::string>& hosts) {
  const std::size_t open = item.find('[');
  if (open == std::string::npos) {
    if (item.empty()) bad_list(nodelist, "empty host name");
    if (hosts.size() >= static_cast<std::size_t>(kLaunchNodesMax)) {
      bad_list(nodelist, "more than kLaunchNodesMax = " + std::to_string(kLaunchNodesMax) + " hosts");
    }
    hosts.push_back(item);
    return;
  }
  const std::size_t close = item.find(']', open);
  const std::string prefix = item.substr(0, open);
  const std::string rest = item.substr(close + 1);
  for (const std::string& range : split_top_level(item.substr(open + 1, close - open - 1), nodelist)) {
    const std::size_t dash = range.find('-');
    const std::string low_text = range.substr(0, dash);
    const std::size_t low = parse_index(low_text, nodelist);
    const std::size_t high = dash == std::string::npos ? low : parse_index(range.substr(dash + 1), nodelist);
    if (high < low) bad_list(nodelist, "range '" + range + "' runs backwards");
    if (high - low >= static_cast<std::size_t>(kLaunchNodesMax)) {
      bad_list(nodelist, "range '" + range + "' has more than " + std::to_string(kLaunchNodesMax) + " hosts");
    }
    for (std::size_t i = low; i <= high; ++i) {
      std::string index = std::to_string(i);
      if (index.size() < low_text.size()) index.insert(0, low_text.size() - index.size(), '0');  // "01"
      expand_item(prefix + index + rest, nodelist, hosts);
    }
  }
}

int parse_count(const std::string& name, const std::string& text, int min, int max) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) {
    throw Error(ErrorCode::kInvalidArgument, name + " = '" + text + "' is not a whole number");
  }
  const int value = std::stoi(text);
  if (value < min || value > max) {
    throw Error(ErrorCode::kInvalidArgument,
                name + " = " + text + " outside " + std::to_string(min) + ".." + std::to_string(max));
  }
  return value;
}

}  // namespace

std::vector<std::string> expand_slurm_nodelist(const std::string& nodelist) {
  std::vector<std::string> hosts;
  for (const std::string& item : split_top_level(nodelist, nodelist)) expand_item(item, nodelist, hosts);
  return hosts;
}

std::optional<SlurmPlacement> slurm_placement(
    const std::function<std::optional<std::string>(const std::string&)>& lookup) {
  const std::optional<std::string> job = lookup("SLURM_JOB_ID");
  if (!job) return std::nullopt;
  auto required = [&](const std::string& name) {
    const std::optional<std::string> value = lookup(name);
    if (!value) throw Error(ErrorCode::kInvalidArgument, name + " is not set, but SLURM_JOB_ID is");
    return *value;
  };
  SlurmPlacement placement;
  placement.nnodes = parse_count("SLURM_NNODES", required("SLURM_NNODES"), 1, kLaunchNodesMax);
  placement.node_rank = parse_count("SLURM_NODEID", required("SLURM_NODEID"), 0, placement.nnodes - 1);
  const std::vector<std::string> hosts = expand_slurm_nodelist(required("SLURM_JOB_NODELIST"));
  if (static_cast<int>(hosts.size()) != placement.nnodes) {
    throw Error(ErrorCode::kInvalidArgument, "SLURM_JOB_NODELIST names " + std::to_string(hosts.size()) +
                                                 " hosts but SLURM_NNODES = " + std::to_string(placement.nnodes));
  }
  placement.master_addr = hosts.front();
  placement.job_id = "slurm-" + *job;
  return placement;
}

}  // namespace lockstep
