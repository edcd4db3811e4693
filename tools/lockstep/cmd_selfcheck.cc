// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep selfcheck`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_selfcheck(CLI::App& app) {
  auto* cmd = app.add_subcommand("selfcheck", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep selfcheck' is not built yet"); });
}

}  // namespace lockstep::cli
