// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep run`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep run' is not built yet"); });
}

}  // namespace lockstep::cli
