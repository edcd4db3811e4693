// `lockstep trace DIR -o trace.json`: every rank's timeline as Chrome
// trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing.
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "commands.h"
#include "lockstep/doctor.h"
#include "lockstep/error.h"
#include "lockstep/trace.h"

namespace lockstep::cli {

void register_trace(CLI::App& app) {
  struct Args {
    std::string dir;
    std::string out_path;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("trace", "Write all ranks' flight-recorder timelines as a Chrome/Perfetto trace");
  cmd->add_option("dir", args->dir, "job directory (reads DIR/dumps/rank-*.json) or a dumps directory")
      ->required();
  cmd->add_option("-o,--output", args->out_path, "trace file to write")->required();
  cmd->callback([args] {
    std::ofstream out(args->out_path, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::kResource, "trace: cannot open " + args->out_path + " for writing");
    const TraceSummary summary = write_trace(args->dir, out);
    for (const std::string& problem : summary.problems) std::fprintf(stderr, "unusable dump: %s\n", problem.c_str());
    std::printf("wrote %zu trace events from %zu rank(s) to %s\n", summary.events_written, summary.ranks.size(),
                args->out_path.c_str());
    // No usable dump is the doctor's "no dumps" class, so scripts can tell.
    if (summary.ranks.empty()) throw CLI::RuntimeError(static_cast<int>(Verdict::kNoDumps));
  });
}

}  // namespace lockstep::cli
