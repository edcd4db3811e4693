#include "lockstep/launcher.h"

#include <cstdio>
#include <filesystem>
#include <string>

#include "launch/job.h"
#include "launch/report.h"
#include "launch/supervisor.h"

namespace lockstep {
namespace {

// Shared-memory segments a job's ranks created (lockstep's control rings are
// /dev/shm/lockstep-<job_id>-g<generation>-<channel>). A rank killed by a signal never
// unlinks its own; once every rank is reaped nobody can use them, so the
// launcher removes them and a crashed job leaks no shared memory.
void remove_job_segments(const std::string& job_id) {
  const std::string prefix = "lockstep-" + job_id + "-";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
    if (entry.path().filename().string().starts_with(prefix)) std::filesystem::remove(entry.path(), error);
  }
}

}  // namespace

LaunchResult launch(const LaunchOptions& options) {
  launch_detail::JobSetup job = launch_detail::prepare_job(options);
  LaunchResult result;
  {
    // Scoped so the sentinel is disarmed and the signal mask restored before
    // the caller's on_failure runs.
    launch_detail::NodeGroup nodes(options, job);
    launch_detail::Supervisor supervisor(options, std::move(job), nodes);
    supervisor.start_ranks();
    result = supervisor.supervise();
  }
  remove_job_segments(result.job_id);
  result.summary = launch_detail::summarize(result);
  if (result.exit_code != 0) {
    result.dump_files = launch_detail::list_dump_files(result.job_dir);
    std::fprintf(stderr, "%s\n", result.summary.c_str());
    for (const std::string& dump : result.dump_files) {
      std::fprintf(stderr, "lockstep launch: dump %s\n", dump.c_str());
    }
  }
  launch_detail::write_launch_json(result);
  if (result.exit_code != 0 && options.on_failure) options.on_failure(result);
  return result;
}

}  // namespace lockstep
