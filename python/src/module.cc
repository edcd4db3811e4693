// lockstep._core: the pybind11 extension behind the `lockstep` Python
// package. It links lockstep's C++ layers and never libtorch: it sees tensors
// only as (data pointer, dtype, shape, strides) handed over by Python, so one
// build serves every torch version (1.13 on CI, 2.x on the GPU machines).
//
// Calls that can block (joining the job, channel waits, lane waits, the
// fatal path) release the GIL. Errors become lockstep.LockstepError with the
// lockstep code name and exit code (lockstep/_errors.py).
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "cuda_event_probe.h"
#include "lockstep/digest.h"
#include "lockstep/job_token.h"
#include "lockstep/parity.h"
#include "lockstep/recovery.h"
#include "lockstep/tripwire.h"
#include "process_runtime.h"

namespace py = pybind11;

namespace lockstep::python {
namespace {

using std::chrono::milliseconds;

Phase phase_from_name(const std::string& name) {
  for (std::size_t i = 0; i < kPhaseCount; ++i) {
    const auto phase = static_cast<Phase>(i);
    if (phase_name(phase) == name) return phase;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown phase '" + name + "' (phases: startup, control, generator, shutdown)");
}

PhasePolicy policy_from(const std::map<std::string, std::vector<std::string>>& groups_by_phase) {
  PhasePolicy policy;
  for (const auto& [phase, groups] : groups_by_phase) {
    for (const std::string& group : groups) policy.allow(phase_from_name(phase), group);
  }
  return policy;
}

CollectiveOp op_from(int value) {
  if (value < 1 || value > static_cast<int>(CollectiveOp::kAllToAll)) {
    throw Error(ErrorCode::kInvalidArgument, "invalid collective op value " + std::to_string(value));
  }
  return static_cast<CollectiveOp>(value);
}

DType dtype_from(int value) {
  const auto dtype = dtype_from_wire(static_cast<std::uint8_t>(value));
  if (value < 0 || value > 255 || !dtype) {
    throw Error(ErrorCode::kInvalidArgument, "invalid dtype value " + std::to_string(value));
  }
  return *dtype;
}

CollectiveCall make_call(const std::string& group, int op, int dtype, std::uint64_t count, int root_or_peer,
                         std::int64_t timeout_ms, bool has_in, bool has_out) {
  // The gate checks only whether buffers exist; torch owns the memory.
  static const char kBuffer = 0;
  return CollectiveCall{group,
                        op_from(op),
                        dtype_from(dtype),
                        count,
                        root_or_peer,
                        milliseconds(timeout_ms),
                        has_in ? &kBuffer : nullptr,
                        has_out ? &kBuffer : nullptr};
}

RankEnv env_from(const py::dict& env) {
  RankEnv out;
  out.rank = env["rank"].cast<int>();
  out.world_size = env["world_size"].cast<int>();
  out.local_rank = env["local_rank"].cast<int>();
  out.local_world_size = env["local_world_size"].cast<int>();
  out.job_dir = env["job_dir"].cast<std::string>();
  out.store_url = env["store_url"].cast<std::string>();
  out.job_id = env["job_id"].cast<std::string>();
  out.job_token = env["job_token"].cast<std::string>();
  out.generation = env["generation"].cast<std::uint32_t>();
  return out;
}

void bind_runtime(py::module_& m) {
  m.def(
      "read_rank_env",
      [] {
        const RankEnv env = read_rank_env();
        py::dict out;
        out["rank"] = env.rank;
        out["world_size"] = env.world_size;
        out["local_rank"] = env.local_rank;
        out["local_world_size"] = env.local_world_size;
        out["job_dir"] = env.job_dir;
        out["store_url"] = env.store_url;
        out["job_id"] = env.job_id;
        out["job_token"] = env.job_token;
        out["generation"] = env.generation;
        return out;
      },
      "The rank environment (RANK, WORLD_SIZE, LOCKSTEP_*) as a dict; raises naming a bad variable.");

  py::class_<FlagProbe, std::shared_ptr<FlagProbe>>(m, "FlagProbe")
      .def("set_done", &FlagProbe::set_done)
      .def("set_failed", &FlagProbe::set_failed);

  py::class_<ProcessRuntime>(m, "ProcessRuntime")
      .def(py::init([](const py::dict& env, const std::string& role, std::int64_t startup_ms,
                       std::int64_t steady_ms, std::int64_t hard_exit_ms, int parent_pid,
                       const std::map<std::string, std::vector<std::string>>& policy, int stack_signal,
                       int stack_fd, bool end_generation_on_curable) {
             ProcessRuntimeOptions options;
             options.env = env_from(env);
             options.role = role;
             options.startup_deadline = milliseconds(startup_ms);
             options.steady_deadline = milliseconds(steady_ms);
             options.hard_exit_deadline = milliseconds(hard_exit_ms);
             options.parent_pid = parent_pid;
             if (!policy.empty()) options.policy = policy_from(policy);
             options.stack_signal = stack_signal;
             options.stack_fd = stack_fd;
             options.end_generation_on_curable = end_generation_on_curable;
             py::gil_scoped_release release;
             return std::make_unique<ProcessRuntime>(std::move(options));
           }),
           py::arg("env"), py::arg("role"), py::arg("startup_ms"), py::arg("steady_ms"),
           py::arg("hard_exit_ms"), py::arg("parent_pid"), py::arg("policy"), py::arg("stack_signal"),
           py::arg("stack_fd"), py::arg("end_generation_on_curable"))
      // Deadlines (lockstep.watch).
      .def("arm",
           [](ProcessRuntime& rt, const std::string& what, std::int64_t timeout_ms, const std::string& group) {
             const Watchdog::Ticket ticket = rt.watchdog().arm_for(milliseconds(timeout_ms), what, group);
             return std::make_pair(ticket.slot, ticket.generation);
           })
      .def("disarm",
           [](ProcessRuntime& rt, std::pair<std::uint32_t, std::uint64_t> ticket) {
             rt.watchdog().disarm(Watchdog::Ticket{ticket.first, ticket.second});
           })
      .def("set_phase", [](ProcessRuntime& rt, const std::string& name) { rt.set_phase(phase_from_name(name)); })
      .def("phase", [](ProcessRuntime& rt) { return std::string(phase_name(rt.gate().phase())); })
      .def("deadline_ms", [](ProcessRuntime& rt) { return rt.watchdog().current_deadline().count(); },
           "The deadline a guarded call or channel wait gets now: start-up until the first other phase.")
      .def("set_context",
           [](ProcessRuntime& rt, std::int64_t call_id, std::int64_t chunk_index, std::int64_t cache_epoch) {
             rt.recorder().set_context(call_id, chunk_index, cache_epoch);
           })
      .def("commit",
           [](ProcessRuntime& rt, const std::string& what, const std::string& group, const std::string& detail) {
             rt.recorder().commit(what, group, detail);
           })
      .def("fail",
           [](ProcessRuntime& rt, const std::string& code, const std::string& message, int exit_code) {
             FatalCause cause;
             cause.code = error_code_from_name(code).value_or(ErrorCode::kInternal);
             cause.code_name = code;
             cause.kind = cause.code == ErrorCode::kTimeout ? DumpReasonKind::kTimeout : DumpReasonKind::kFatal;
             cause.message = message;
             // The code's own exit status is no forced one (a forced one, such
             // as an application's, ends the process under warm recovery too).
             cause.exit_code = exit_code == exit_code_for(cause.code) ? 0 : exit_code;
             py::gil_scoped_release release;
             rt.fatal().fail(cause);
           })
      // Warm recovery (lockstep.run_generations).
      .def("await_fatal_path",
           [](ProcessRuntime& rt) {
             py::gil_scoped_release release;
             return rt.fatal().await_fatal_path();
           },
           "After a fail() that ended the generation: waits for its dump, poison mark and abort; False "
           "when the fatal path never ran.")
      .def("wait_generation_end",
           [](ProcessRuntime& rt) {
             py::gil_scoped_release release;
             return rt.wait_generation_end();
           })
      .def("release_waiters", &ProcessRuntime::release_waiters)
      .def("close", &ProcessRuntime::close)
      .def("generation_start",
           [](ProcessRuntime& rt) {
             py::gil_scoped_release release;
             const StreamPosition start = generation_start(rt.job_store());
             return std::make_pair(start.next_chunk, start.epoch);
           })
      .def("advance_stream",
           [](ProcessRuntime& rt, std::uint64_t next_chunk, std::uint64_t epoch) {
             py::gil_scoped_release release;
             advance_stream(rt.job_store(), rt.env().generation, {next_chunk, epoch});
           },
           "Stage 0's emit fence and the stream position a replacement resumes from.")
      .def("handshake",
           [](ProcessRuntime& rt, const std::map<std::string, std::string>& fields,
              std::optional<std::uint64_t> weights, std::int64_t timeout_ms) {
             ParityInputs inputs;
             inputs.topology = "torch";
             inputs.world_size = rt.env().world_size;
             inputs.resolved = fields;
             const ParityRecord mine = make_parity_record(rt.env().rank, inputs);
             py::gil_scoped_release release;
             if (weights) check_kept_weights(rt.job_store(), rt.env().rank, rt.env().generation, *weights);
             return exchange_parity(rt.store(), mine, rt.env().world_size, milliseconds(timeout_ms)).protocol_version;
           },
           "The parity handshake of this generation: `weights` (this rank's fingerprint) must equal the "
           "one recorded at its first handshake of the job, and every rank's fields must be equal; raises "
           "LockstepError('parity') naming the rank and values, or with a table of each differing field.")
      .def("dump_now",
           [](ProcessRuntime& rt, const std::string& message) {
             py::gil_scoped_release release;
             return rt.fatal().dump_now({DumpReasonKind::kRequest, "request", message, 0}).string();
           })
      // The gate (guarded groups).
      .def("add_group", [](ProcessRuntime& rt, std::string name,
                           std::vector<int> ranks) { return rt.gate().add_group(std::move(name), std::move(ranks)); })
      .def("admit",
           [](ProcessRuntime& rt, const std::string& group, int op, int dtype, std::uint64_t count,
              int root_or_peer, std::int64_t timeout_ms, bool has_in, bool has_out) {
             return rt.gate().admit(make_call(group, op, dtype, count, root_or_peer, timeout_ms, has_in, has_out)).seq;
           })
      .def("report",
           [](ProcessRuntime& rt, const std::string& group, int op, int dtype, std::uint64_t count,
              int root_or_peer, std::int64_t timeout_ms, std::uint64_t seq, const std::string& state,
              const std::string& error) {
             const CollectiveCall call = make_call(group, op, dtype, count, root_or_peer, timeout_ms, true, true);
             if (state == "started") {
               rt.gate().report(call, seq, CollectiveState::kStarted);
             } else if (state == "completed") {
               rt.gate().report(call, seq, CollectiveState::kCompleted);
             } else if (state == "failed") {
               rt.gate().mark_aborted();  // crash-only: a failed group is never used again
               rt.gate().report(call, seq, CollectiveState::kFailed, ErrorCode::kBackend, error);
             } else {
               throw Error(ErrorCode::kInvalidArgument, "report: unknown state '" + state + "'");
             }
           })
      .def("ledger",
           [](ProcessRuntime& rt, const std::string& group) {
             const LedgerSnapshot snap = rt.gate().ledger_snapshot(group);
             return std::make_pair(snap.next_seq, snap.digest);
           })
      .def(
          "check_group_digests",
          [](ProcessRuntime& rt, const std::string& group, const std::vector<int>& members,
             const std::vector<std::pair<std::string, std::uint64_t>>& digests,
             const std::function<std::vector<std::vector<std::uint64_t>>(const std::vector<std::uint64_t>&)>&
                 gather) { check_group_digests(rt.gate().ledger_snapshot(group), members, digests, gather); },
          "Compares this rank's ledger of `group` and the named digests with every member's through "
          "`gather` (an all_gather of u64 words); raises LockstepError('ledger' or 'digest') naming the "
          "first divergent entry or digest.")
      // Completion tracking.
      .def("track_flag",
           [](ProcessRuntime& rt, std::size_t lane, const std::string& group, int op, int dtype,
              std::uint64_t count, int root_or_peer, std::int64_t timeout_ms, std::uint64_t seq) {
             const CollectiveCall call = make_call(group, op, dtype, count, root_or_peer, timeout_ms, true, true);
             // The tracker polls it; Python keeps it and completes it (torch future callback).
             auto flag = std::make_shared<FlagProbe>();
             const CollectiveEvent event = rt.gate().event_of(call, seq, CollectiveState::kEnqueued);
             py::gil_scoped_release release;
             rt.tracker().track(lane, event, std::make_unique<SharedProbe>(flag), call.timeout);
             return flag;
           })
      .def("track_cuda_event",
           [](ProcessRuntime& rt, std::size_t lane, const std::string& group, int op, int dtype,
              std::uint64_t count, int root_or_peer, std::int64_t timeout_ms, std::uint64_t seq,
              std::uintptr_t event_handle) {
             const CollectiveCall call = make_call(group, op, dtype, count, root_or_peer, timeout_ms, true, true);
             // On the collective's path: no GIL release (only a full lane
             // blocks here, bounded by the call's timeout).
             rt.tracker().track(lane, rt.gate().event_of(call, seq, CollectiveState::kEnqueued),
                                std::make_unique<CudaEventProbe>(event_handle), call.timeout);
           })
      .def("wait_lane",
           [](ProcessRuntime& rt, std::size_t lane, std::int64_t timeout_ms) {
             py::gil_scoped_release release;
             rt.tracker().wait_lane(lane, milliseconds(timeout_ms));
           })
      .def("in_flight", [](ProcessRuntime& rt, std::size_t lane) { return rt.tracker().in_flight(lane); });

  m.def(
      "await_generation_after",
      [](const py::dict& env, std::uint32_t ended, std::int64_t timeout_ms) {
        const RankEnv rank_env = env_from(env);
        py::gil_scoped_release release;
        const std::unique_ptr<Store> job_store =
            job_level_store(open_store(rank_env), {rank_env.job_id, rank_env.job_token, ended});
        return await_generation_after(*job_store, ended, milliseconds(timeout_ms));
      },
      "Blocks until the launcher began a generation after `ended` and returns it; raises "
      "LockstepError('timeout') when none began in time.");

  m.def("digest_tensor", [](std::uintptr_t data, std::size_t bytes) {
    // digest_tensor of host memory the caller owns (a CPU tensor's storage):
    // the value lockstep's runtime computes for a chunk's tensors, on either side.
    py::gil_scoped_release release;
    return digest_tensor(reinterpret_cast<const void*>(data), bytes);
  });
  m.def("digest_combine", &digest_combine, "Order-sensitive fold of per-item digests (lockstep/digest.h).");
  m.attr("LANES_MAX") = kCompletionLanesMax;
  py::dict ops;
  for (int op = 1; op <= static_cast<int>(CollectiveOp::kAllToAll); ++op) {
    ops[py::str(std::string(collective_op_name(static_cast<CollectiveOp>(op))))] = op;
  }
  m.attr("OPS") = ops;
}

void translate_error(const Error& error) {
  // Leaked on purpose: it must outlive every translation, up to interpreter exit.
  static auto* error_type = new py::object(py::module_::import("lockstep._errors").attr("LockstepError"));
  const py::object instance = (*error_type)(std::string(error.what()), std::string(error_code_name(error.code())),
                                            exit_code_for(error.code()));
  PyErr_SetObject(error_type->ptr(), instance.ptr());
}

}  // namespace
}  // namespace lockstep::python

PYBIND11_MODULE(_core, m) {
  using namespace lockstep;
  m.doc() = "lockstep's C++ core for the lockstep Python package (private; use `import lockstep`).";
  py::register_exception_translator([](std::exception_ptr pointer) {
    if (!pointer) return;
    try {
      std::rethrow_exception(pointer);
    } catch (const Error& error) {
      python::translate_error(error);
    }
  });
  m.def("exit_code_for", [](const std::string& code) {
    const auto parsed = error_code_from_name(code);
    if (!parsed) throw Error(ErrorCode::kInvalidArgument, "unknown lockstep error code '" + code + "'");
    return exit_code_for(*parsed);
  });
  python::bind_runtime(m);
  python::bind_wire(m);
  python::bind_flow(m);
}
