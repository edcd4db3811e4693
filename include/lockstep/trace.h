// `lockstep trace`: every rank's flight-recorder timeline as Chrome trace-event
// JSON (opens in Perfetto and chrome://tracing). One process per rank, one
// thread track per recorder thread; collectives, p2p, waits and stages are
// complete ("X") events from start to completion or failure; commit points and
// notes are instant events; failures carry args.state and args.error.
#pragma once

#include <cstddef>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

namespace lockstep {

struct TraceSummary {
  std::size_t events_written = 0;  // trace events, metadata records included
  std::vector<int> ranks;          // ranks whose dump was used
  std::vector<std::string> problems;  // "file: message" for each unusable dump
};

// Reads the dumps of `dir` (a job directory or its dumps/ directory, as for
// diagnose()) and writes one JSON object {"traceEvents": [...]} to `out`.
// Blocking; any thread may call it. Unusable dumps are skipped and listed in
// the summary; throws Error(kResource) when writing to `out` fails.
TraceSummary write_trace(const std::filesystem::path& dir, std::ostream& out);

}  // namespace lockstep
