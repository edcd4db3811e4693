// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep doctor`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_doctor(CLI::App& app) {
  auto* cmd = app.add_subcommand("doctor", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep doctor' is not built yet"); });
}

}  // namespace lockstep::cli
