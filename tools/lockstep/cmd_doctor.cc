// `lockstep doctor [DIR] [--torch-fr PREFIX] [--export-fr OUT [--export-fr-format pickle|json]] [--json]
// [--world-size N]`: the
// verdict on a job's flight-recorder dumps — lockstep's (rank-R.json) and
// PyTorch's (<prefix>R, pickle or JSON) — merged by rank. The exit status is
// the verdict class (lockstep::Verdict).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "lockstep/doctor.h"

namespace lockstep::cli {

void register_doctor(CLI::App& app) {
  struct Args {
    std::string dir;
    std::string torch_fr;
    std::string export_fr;
    std::string export_fr_format = "pickle";
    bool json = false;
    int world_size = 0;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("doctor", "Read every rank's flight-recorder dump (lockstep's and PyTorch's) "
                                           "and state a verdict (exit status = verdict class)");
  cmd->add_option("dir", args->dir,
                  "job directory (reads DIR/dumps) or a dumps directory: rank-*.json and PyTorch's "
                  "nccl_trace_rank_* files");
  cmd->add_option("--torch-fr", args->torch_fr,
                  "PyTorch flight-recorder dumps by their prefix, as TORCH_NCCL_DEBUG_INFO_TEMP_FILE names "
                  "them (e.g. /tmp/nccl_trace_rank_)");
  auto* export_fr = cmd->add_option("--export-fr", args->export_fr,
                  "also write every lockstep dump as a PyTorch flight-recorder dump into this directory, "
                  "for python -m torch.distributed.flight_recorder.fr_trace");
  cmd->add_option("--export-fr-format", args->export_fr_format,
                  "pickle (nccl_trace_rank_<R>, what torch writes and fr_trace reads; default) or json "
                  "(nccl_trace_rank_<R>.json)")
      ->check(CLI::IsMember({"pickle", "json"}))
      ->needs(export_fr);
  cmd->add_flag("--json", args->json, "print the diagnosis as JSON");
  cmd->add_option("--world-size", args->world_size, "expected number of ranks (default: from the dumps)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->callback([args] {
    DoctorOptions options;
    options.world_size = args->world_size;
    std::filesystem::path dir = args->dir;
    if (!args->torch_fr.empty()) {
      const std::filesystem::path prefix = args->torch_fr;
      if (dir.empty()) dir = prefix.has_parent_path() ? prefix.parent_path() : std::filesystem::path(".");
      options.torch_fr_prefix = prefix.filename().string();
    }
    if (dir.empty()) throw CLI::ValidationError("dir", "give a job or dumps directory, or --torch-fr PREFIX");
    if (!args->export_fr.empty()) {
      const TorchFrFormat format = args->export_fr_format == "json" ? TorchFrFormat::kJson : TorchFrFormat::kPickle;
      for (const auto& path : export_torch_flight_recorder(dir, args->export_fr, format)) {
        std::fprintf(stderr, "lockstep doctor: wrote %s\n", path.c_str());
      }
    }
    const Diagnosis diagnosis = diagnose(dir, options);
    const std::string report = args->json ? format_json(diagnosis) : format_text(diagnosis);
    std::fwrite(report.data(), 1, report.size(), stdout);
    std::fflush(stdout);
    if (diagnosis.verdict != Verdict::kHealthy) throw CLI::RuntimeError(static_cast<int>(diagnosis.verdict));
  });
}

}  // namespace lockstep::cli
