// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep sim`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_sim(CLI::App& app) {
  auto* cmd = app.add_subcommand("sim", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep sim' is not built yet"); });
}

}  // namespace lockstep::cli
