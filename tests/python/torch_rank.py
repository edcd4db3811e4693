"""One rank of a torch break-it case, run under `lockstep launch` by test_torch_breakit.py.

Usage: torch_rank.py CASE CULPRIT

pp1 layout: rank 0 is Stage 0, ranks 1..N-1 the mesh; groups are made on
every rank in the same order (world, mesh, boundary = {0, 1}). CULPRIT is
the global rank that misbehaves. LOCKSTEP_TEST_DEVICE=cuda puts the mesh on
NCCL, one GPU per mesh rank (Stage 0 and the boundary stay on Gloo). Every case ends by itself: a rank that
would otherwise wait sleeps at most LONG_SLEEP_S, far past the deadline,
so only lockstep can end it early.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
import torch.distributed as dist

import lockstep
import lockstep.torch as lt

DEADLINE_S = 2.0     # steady-state deadline of every guarded call and watch
LONG_SLEEP_S = 60.0  # "would hang": far past DEADLINE_S + the test's bound
CHUNKS = 3
LONG_KERNEL_CYCLES = 1_000_000_000  # ~0.5 s of GPU clock: far longer than a host call, well inside DEADLINE_S
CUDA = os.environ.get("LOCKSTEP_TEST_DEVICE", "cpu") == "cuda"
MESH_DEVICE = "cpu"  # set in main(): the mesh ranks' device


def main() -> int:
    case, culprit = sys.argv[1], int(sys.argv[2])
    global MESH_DEVICE
    rt = lockstep.init(timeout=DEADLINE_S, startup_timeout=30.0)
    if CUDA and rt.rank > 0:
        torch.cuda.set_device((rt.rank - 1) % torch.cuda.device_count())
        MESH_DEVICE = "cuda"
    dist.init_process_group("gloo")
    world = lt.world()
    mesh = lt.new_group("mesh", range(1, dist.get_world_size()), backend="nccl" if CUDA else "gloo")
    boundary = lt.new_group("boundary", [0, 1])
    lt.install()
    lockstep.set_phase("control")
    me = rt.rank
    CASES[case](me, culprit, world, mesh, boundary)
    world.barrier()
    return 0


def record_fault_time() -> None:
    """Wall-clock time of the planted fault, for the test's time bound."""
    path = os.path.join(os.environ["LOCKSTEP_JOB_DIR"], "fault-time")
    with open(path + ".tmp", "w") as f:
        f.write(repr(time.time()))
    os.replace(path + ".tmp", path)


def mesh_chunks(me: int, mesh: lt.GuardedGroup, skip_at: int = -1, count_for=lambda chunk: 1024,
                inputs=lambda chunk: torch.ones(16), stop_after_skip: bool = True) -> None:
    """The mesh's chunk loop: two all_reduces per chunk in the generator phase, then verify."""
    for chunk in range(CHUNKS):
        lockstep.set_context(chunk + 1, chunk, 0)
        x = inputs(chunk)
        with lockstep.phase("generator"):
            if chunk == skip_at:
                # The culprit skips this chunk's collectives and waits elsewhere.
                record_fault_time()
                time.sleep(LONG_SLEEP_S)
            h = torch.ones(count_for(chunk), device=MESH_DEVICE)
            mesh.all_reduce(h)
            mesh.all_reduce(torch.ones(8, device=MESH_DEVICE))
        mesh.verify(input=lt.digest(x))


def case_ok(me, culprit, world, mesh, boundary):
    if mesh.is_member():
        mesh_chunks(me, mesh)


def case_skip(me, culprit, world, mesh, boundary):
    if mesh.is_member():
        mesh_chunks(me, mesh, skip_at=1 if me == culprit else -1)
    else:
        time.sleep(LONG_SLEEP_S)


def case_b1(me, culprit, world, mesh, boundary):
    # pp1: Stage 0 must never join a mesh collective; torch would skip it silently.
    if me == 0:
        dist.all_reduce(torch.ones(4), group=mesh.process_group or dist.GroupMember.NON_GROUP_MEMBER)
    if mesh.is_member():
        mesh_chunks(me, mesh)


def case_b2(me, culprit, world, mesh, boundary):
    if mesh.is_member():
        with lockstep.phase("generator"):
            if me == culprit:
                dist.all_reduce(torch.ones(4))  # the world group inside the generator phase
            mesh.all_reduce(torch.ones(4, device=MESH_DEVICE))
    time.sleep(LONG_SLEEP_S if me != culprit else 0)


def case_b4(me, culprit, world, mesh, boundary):
    """One rank all_reduces another count in chunk 1 (a per-rank flag changed a shape)."""
    if mesh.is_member():
        mesh_chunks(me, mesh, count_for=lambda chunk: 512 if me == culprit and chunk == 1 else 1024)
    else:
        time.sleep(LONG_SLEEP_S)


def case_h1(me, culprit, world, mesh, boundary):
    def inputs(chunk: int) -> torch.Tensor:
        x = torch.arange(16, dtype=torch.float32) + chunk
        if me == culprit and chunk == 1:
            x[3] += 1e-3  # one rank's input perturbed
        return x
    if mesh.is_member():
        mesh_chunks(me, mesh, inputs=inputs)
    else:
        time.sleep(LONG_SLEEP_S)


def case_kill9(me, culprit, world, mesh, boundary):
    if mesh.is_member():
        for chunk in range(CHUNKS):
            with lockstep.phase("generator"):
                if me == culprit and chunk == 1:
                    record_fault_time()
                    os.kill(os.getpid(), signal.SIGKILL)  # no dump, no poison
                mesh.all_reduce(torch.ones(256, device=MESH_DEVICE))
    else:
        time.sleep(LONG_SLEEP_S)


def _latents(chunk: int) -> torch.Tensor:
    return torch.full((2 * 4, 8), float(chunk))


def _envelope(call_id: int, chunk: int, epoch: int) -> lockstep.Envelope:
    return lockstep.Envelope("INFER", call_id, chunk, epoch, lockstep.Plan(plan_id=call_id, num_denoise_steps=1,
                                                                           timesteps=[1.0]),
                             (2, 4, 8), {"prompt": "a cat", "seed": 7}, {"latents": _latents(chunk)})


def case_a5(me, culprit, world, mesh, boundary):
    """Stage 0 sends one envelope with a corrupted byte; the leader refuses it on the checksum."""
    codec = lockstep.codec()
    if me == 0:
        channel = lockstep.ControlChannel.create("envelopes", readers=1)
        world.barrier()
        frame = bytearray(codec.encode_envelope(_envelope(1, 0, 0)))
        frame[-3] ^= 0x40  # a corrupted byte in the body
        channel.publish(bytes(frame))
        time.sleep(LONG_SLEEP_S)
    elif me == 1:
        world.barrier()
        channel = lockstep.ControlChannel.open("envelopes", reader=0, readers=1)
        codec.decode_envelope(channel.receive(timeout=10.0))  # raises "checksum"
    else:
        world.barrier()
        time.sleep(LONG_SLEEP_S)


def case_d2(me, culprit, world, mesh, boundary):
    """A result computed before a hard cut arrives after it: dropped by epoch, never emitted.

    Stage 0 keeps two envelopes in flight (D_in = 2); the leader takes both,
    then answers. Payloads and outputs are broadcasts on the boundary group
    in the same order on both ends, so its ledger stays comparable.
    """
    codec = lockstep.codec()
    if me == 0:
        envelopes = lockstep.ControlChannel.create("envelopes", readers=1)
        world.barrier()
        results = lockstep.ControlChannel.open("results", reader=0, readers=1)
        acceptance = lockstep.Acceptance(cache_epoch=0, reorder_window=2)
        emitted = []

        def send(call_id: int, chunk: int, epoch: int) -> None:
            envelope = _envelope(call_id, chunk, epoch)
            envelopes.publish(codec.encode_envelope(envelope))
            boundary.broadcast_payload(lockstep.payload_order(envelope.tensors), src=0)
            acceptance.expect(call_id)

        def receive() -> None:
            decoded = codec.decode_result(results.receive(timeout=10.0))
            output = lockstep.allocate(decoded.manifest)
            boundary.broadcast_payload(lockstep.payload_order(output), src=1)
            result = decoded.message
            for call_id, tensors in acceptance.offer(result.call_id, result.cache_epoch, output):
                emitted.append((call_id, float(tensors["output"][0][0, 0])))

        send(1, 0, 0)
        send(2, 1, 0)
        receive()                    # result 1 -> emitted
        acceptance.begin_epoch(1)    # hard cut while result 2 is in flight
        receive()                    # result 2 (epoch 0) arrives after the cut: stale
        send(3, 2, 1)
        receive()                    # result 3 -> emitted
        counters = acceptance.counters
        print(f"EMITTED {emitted} STALE {counters['stale_drops']}", flush=True)
        if [c for c, _ in emitted] != [1, 3] or counters["stale_drops"] != 1:
            raise lockstep.LockstepError(f"emitted {emitted}, stale drops {counters['stale_drops']}",
                                         "stale_work", 41)
    elif me == 1:
        results = lockstep.ControlChannel.create("results", readers=1)
        world.barrier()
        envelopes = lockstep.ControlChannel.open("envelopes", reader=0, readers=1)
        sequencer = lockstep.Sequencer(first_call_id=1, first_chunk_index=0, first_cache_epoch=0)

        def take() -> tuple:
            decoded = codec.decode_envelope(envelopes.receive(timeout=10.0))
            env = decoded.message
            if not sequencer.admit(env.call_id, env.cache_epoch, env.chunk_index, decoded.body_checksum):
                raise lockstep.LockstepError("unexpected duplicate envelope", "stale_work", 41)
            payload = lockstep.allocate(decoded.manifest)
            boundary.broadcast_payload(lockstep.payload_order(payload), src=0)
            return env, payload["latents"][0]

        def answer(env: lockstep.Envelope, latents: torch.Tensor) -> None:
            result = lockstep.Result("INFER", env.call_id, env.chunk_index, env.cache_epoch, plan_id=env.plan.plan_id,
                                     observed_generator_calls=1, geometry=env.geometry, kv_frames=0,
                                     tensors={"output": latents + 100})
            results.publish(codec.encode_result(result))
            boundary.broadcast_payload(lockstep.payload_order(result.tensors), src=1)

        first, second = take(), take()
        answer(*first)
        answer(*second)
        answer(*take())
    else:
        world.barrier()


def case_async(me, culprit, world, mesh, boundary):
    """A guarded collective returns before it completed; completion is observed off the caller's path."""
    flag = os.path.join(os.environ["LOCKSTEP_JOB_DIR"], "rank-0-returned")
    x = torch.full((1024,), float(me + 1))
    if me == 0:
        work = world.all_reduce(x, async_op=True)  # rank 1 has not joined yet: it cannot have completed
        returned_pending = world.in_flight() == 1 and not work.is_completed()
        open(flag, "w").close()
        work.wait()
        world.synchronize(timeout=10.0)
        print(f"RETURNED_PENDING {returned_pending} IN_FLIGHT_AFTER {world.in_flight()} SUM {x[0].item()}",
              flush=True)
    else:
        with lockstep.watch("rank 0 to return from its all_reduce", timeout=30.0):
            while not os.path.exists(flag):
                time.sleep(0.005)
        if me == 1 or world.size > 2:
            world.all_reduce(x)
    if CUDA and mesh.is_member():
        # On NCCL a blocking guarded all_reduce queued behind a long kernel returns at once: the
        # host never waits; lockstep's poller sees it complete later, off the caller's path.
        y = torch.full((1024,), float(me), device=MESH_DEVICE)
        with lockstep.phase("generator"):
            torch.cuda._sleep(LONG_KERNEL_CYCLES)
            mesh.all_reduce(y)
            returned_pending = mesh.in_flight() == 1
        mesh.synchronize(timeout=10.0)
        print(f"MESH_RETURNED_PENDING {returned_pending} IN_FLIGHT_AFTER {mesh.in_flight()} SUM {y[0].item()}",
              flush=True)


CASES = {"ok": case_ok, "skip": case_skip, "b1": case_b1, "b2": case_b2, "b4": case_b4, "h1": case_h1,
         "kill9": case_kill9, "a5": case_a5, "d2": case_d2,
         "async": case_async}

if __name__ == "__main__":
    sys.exit(main())
