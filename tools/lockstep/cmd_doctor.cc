// `lockstep doctor DIR [--json] [--world-size N]`: the verdict on a job's
// flight-recorder dumps. The exit status is the verdict class (lockstep::Verdict).
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "lockstep/doctor.h"

namespace lockstep::cli {

void register_doctor(CLI::App& app) {
  struct Args {
    std::string dir;
    bool json = false;
    int world_size = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("doctor", "Read every rank's flight-recorder dump and state a verdict "
                                           "(exit status = verdict class)");
  cmd->add_option("dir", args->dir, "job directory (reads DIR/dumps/rank-*.json) or a dumps directory")
      ->required();
  cmd->add_flag("--json", args->json, "print the diagnosis as JSON");
  cmd->add_option("--world-size", args->world_size, "expected number of ranks (default: from the dumps)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->callback([args] {
    const Diagnosis diagnosis = diagnose(args->dir, DoctorOptions{args->world_size});
    const std::string report = args->json ? format_json(diagnosis) : format_text(diagnosis);
    std::fwrite(report.data(), 1, report.size(), stdout);
    std::fflush(stdout);
    if (diagnosis.verdict != Verdict::kHealthy) throw CLI::RuntimeError(static_cast<int>(diagnosis.verdict));
  });
}

}  // namespace lockstep::cli
