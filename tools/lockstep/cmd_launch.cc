// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep launch`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand("launch", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep launch' is not built yet"); });
}

}  // namespace lockstep::cli
