"""A PyTorch streaming pipeline on lockstep: Stage 0 (rank 0) plus a TP mesh (ranks 1..N-1), pp1.

    lockstep launch --nproc 3 -- python3 examples/torch_stream/stream.py --chunks 12

Stage 0 makes each chunk's latents and plan, sends the envelope on
lockstep's shared-memory control channel (instead of broadcast_object_list)
and the latents over the guarded `boundary` group; keeps --depth envelopes in
flight; accepts results by epoch and call_id (stale ones after a hard cut are
dropped, never emitted); "decodes" each output (real CPU work of --decode-ms)
and prints the overlap summary. The mesh runs the reference model
(model.py) with heads sharded, every all-reduce on the guarded `mesh` group
inside lockstep.phase("generator") under a deadline, checks the plan's call
count, and compares ledgers, input and KV-state digests once per chunk.
Works on Gloo (CPU) and NCCL (--device cuda, one GPU per mesh rank).

Under `lockstep launch --on-fault restart` the per-generation part (groups,
channels, the stream loop) runs through lockstep.run_generations: a killed
or stopped rank ends the generation, the launcher restarts only the dead,
survivors keep their process and model, and Stage 0 resumes after the last
chunk it emitted under a new epoch. `--inject kill:RANK:CHUNK` (or
`stall:RANK:CHUNK`, a hang past the deadline) strikes once, in generation 0.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import time
from typing import Deque, Dict, List, Tuple

import torch
import torch.distributed as dist

import lockstep
import lockstep.torch as lt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import CONFIGS, KvCache, ModelConfig, ShardedDiT  # noqa: E402

STARTUP_TIMEOUT_S = 60.0  # joining a generation, and its first chunk


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2, help="denoise steps per chunk")
    parser.add_argument("--depth", type=int, default=2, help="envelopes in flight (D_in)")
    parser.add_argument("--hard-cut-every", type=int, default=6, help="0: never")
    parser.add_argument("--recompute-every", type=int, default=4, help="0: never")
    parser.add_argument("--decode-ms", type=float, default=5.0, help="Stage 0's decode cost per chunk")
    parser.add_argument("--deadline-s", type=float, default=5.0, help="steady-state deadline")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="", help="save the emitted outputs (torch.save) here")
    parser.add_argument("--inject", default="", help="kill:RANK:CHUNK or stall:RANK:CHUNK (generation 0 only)")
    return parser.parse_args()


class Injection:
    """A break-it fault: rank RANK, on chunk CHUNK of generation 0, kills itself or stalls past the deadline
    (Stage 0 as it sends the chunk, a mesh rank inside its deadline for the chunk)."""

    def __init__(self, spec: str, deadline_s: float) -> None:
        self.kind, self.rank, self.chunk = "", -1, -1
        # Past the deadline, and back well within the hard-exit deadline after it fired.
        self.stall_s = deadline_s + 0.25
        if spec:
            parts = spec.split(":")
            if len(parts) != 3 or parts[0] not in ("kill", "stall") or not all(p.isdigit() for p in parts[1:]):
                raise lockstep.LockstepError(f"--inject {spec!r}: expected kill:RANK:CHUNK or stall:RANK:CHUNK",
                                             "invalid_argument", 2)
            self.kind, self.rank, self.chunk = parts[0], int(parts[1]), int(parts[2])

    def strike(self, rank: int, generation: int, chunk: int) -> None:
        if not self.kind or (self.rank, self.chunk, generation) != (rank, chunk, 0):
            return
        print(f"INJECT {self.kind} chunk {chunk} unix_ms {time.time() * 1000:.0f}", flush=True)
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.stall_s)


class Stream:
    """What every rank keeps across generations: arguments, runtime, model, what Stage 0 emitted."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config: ModelConfig = CONFIGS[args.model]
        self.rt = lockstep.init(timeout=args.deadline_s, startup_timeout=STARTUP_TIMEOUT_S,
                                role="stage0" if int(os.environ["RANK"]) == 0 else "mesh")
        if self.rt.world_size < 2:
            raise lockstep.LockstepError("stream.py needs Stage 0 and at least one mesh rank (--nproc >= 2)",
                                         "invalid_argument", 2)
        self.mesh_ranks = list(range(1, self.rt.world_size))
        if args.device == "cuda" and self.rt.rank > 0:  # one GPU per mesh rank; Stage 0 decodes on the CPU
            torch.cuda.set_device((self.rt.local_rank - 1) % torch.cuda.device_count())
        self.device = f"cuda:{torch.cuda.current_device()}" if args.device == "cuda" and self.rt.rank > 0 else "cpu"
        self.injection = Injection(args.inject, args.deadline_s)
        # The model is loaded once per process and kept across generations.
        self.model = None if self.rt.rank == 0 else ShardedDiT(self.config, self.rt.rank - 1, len(self.mesh_ranks),
                                                                device=self.device)
        self.emitted: List[Tuple[int, torch.Tensor]] = []  # by this process, across its generations

    def connect(self, generation: lockstep.Generation) -> None:
        """This generation's process groups: every rank makes every group, in one order (rank 0 too)."""
        # World and boundary carry host data (Gloo); only the mesh runs on NCCL.
        lt.init_process_group("gloo")
        self.world = lt.world()
        self.mesh = lt.new_group("mesh", self.mesh_ranks, backend="nccl" if self.args.device == "cuda" else "gloo")
        self.boundary = lt.new_group("boundary", [0, 1], backend="gloo")  # host tensors cross the boundary
        lt.install()
        self.codec = lockstep.codec()
        print(f"GENERATION {generation.number} pid {os.getpid()} start "
              f"{generation.start.next_chunk} epoch {generation.start.epoch}", flush=True)

    def geometry(self) -> Tuple[int, int, int]:
        c = self.config
        return c.frames_per_chunk, c.tokens_per_frame, c.dim


def chunk_tensor(rows: int, dim: int, *key: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(hash(key) & 0x7FFFFFFF)
    return torch.randn(rows, dim, generator=generator)


class DecodeWork:
    """Stage 0's decode: real CPU work (a small conv stack over the output) of about decode_ms."""

    def __init__(self, decode_ms: float) -> None:
        self.decode_ms = decode_ms
        self.kernel = torch.randn(8, 1, 3, 3, generator=torch.Generator().manual_seed(7))

    def __call__(self, output: torch.Tensor) -> None:
        image = output.reshape(1, 1, output.shape[0], -1)
        deadline = time.perf_counter() + self.decode_ms / 1000.0
        while time.perf_counter() < deadline:
            features = torch.nn.functional.conv2d(image, self.kernel, padding=1)
            image = torch.nn.functional.interpolate(features.mean(dim=1, keepdim=True), size=image.shape[-2:])


def run_stage0(s: Stream, generation: lockstep.Generation) -> Dict[str, object]:
    args, cfg = s.args, s.config
    readers = len(s.mesh_ranks)
    envelopes = lockstep.ControlChannel.create("envelopes", readers=readers, slots=args.depth + 2,
                                               slot_bytes=64 * 1024)
    s.world.barrier()  # rings exist before anyone opens them
    results = lockstep.ControlChannel.open("results", reader=0, readers=1, slots=args.depth + 2,
                                           slot_bytes=64 * 1024)
    lockstep.set_phase("control")
    start = generation.start  # chunk 0 in epoch 0, or after a recovery where the last Stage 0 stopped emitting
    acceptance: lockstep.Acceptance[Tuple[torch.Tensor, float]] = lockstep.Acceptance(start.epoch,
                                                                                       reorder_window=args.depth)
    meter = lockstep.OverlapMeter()
    decode = DecodeWork(args.decode_ms)
    inflight: Deque[Tuple[int, int]] = collections.deque()  # (call_id, epoch) of sent envelopes
    produce_ms: Dict[int, float] = {}
    payload_sends: Dict[int, list] = {}  # call_id -> [(work, tensor)]: completed once the leader received them
    emitted = s.emitted
    call_id, epoch, hard_cuts, recomputes, first_of_epoch = 0, start.epoch, 0, 0, True
    started = time.perf_counter()

    def send(chunk: int) -> None:
        nonlocal call_id, epoch, hard_cuts, recomputes, first_of_epoch
        begin = time.perf_counter()
        if args.hard_cut_every and chunk != start.next_chunk and chunk % args.hard_cut_every == 0:
            epoch += 1
            hard_cuts += 1
            first_of_epoch = True
            acceptance.begin_epoch(epoch)  # in-flight results of the old epoch are dropped on arrival
            generation.advance(chunk, epoch)  # the chunks before it are emitted or dropped at this cut
            meter.break_segment()
        recompute = bool(args.recompute_every) and chunk % args.recompute_every == args.recompute_every - 1 \
            and not first_of_epoch
        recomputes += recompute
        s.injection.strike(0, generation.number, chunk)
        call_id += 1
        n = cfg.tokens_per_chunk
        tensors = {"latents": chunk_tensor(n, cfg.dim, epoch, chunk)}
        if recompute:
            tensors["context_override"] = chunk_tensor(2 * cfg.tokens_per_frame, cfg.dim, epoch, chunk, 1)
        plan = lockstep.Plan(plan_id=call_id, num_denoise_steps=args.steps,
                             timesteps=[1.0 - i / args.steps for i in range(args.steps)],
                             do_kv_recompute=recompute, init_cache=first_of_epoch, attention_bias=-0.5)
        envelope = lockstep.Envelope("INFER", call_id, chunk, epoch, plan, s.geometry(),
                                     {"prompt": "a red fox in snow", "seed": 1234}, tensors)
        frame = s.codec.encode_envelope(envelope)  # every check before anything is sent
        lockstep.set_context(call_id, chunk, epoch)
        envelopes.publish(frame)
        lockstep.commit("envelope_published", "boundary")
        payload_sends[call_id] = [(s.boundary.isend(t, dst=1), t) for t in lockstep.payload_order(tensors)]
        acceptance.expect(call_id)
        inflight.append((call_id, epoch))
        first_of_epoch = False
        produce_ms[call_id] = (time.perf_counter() - begin) * 1000.0

    def receive() -> None:
        decoded = results.receive_result(s.codec)
        result = decoded.message
        output = torch.empty(cfg.tokens_per_chunk, cfg.dim)
        s.boundary.recv(output, src=1)
        inflight.popleft()
        for work, _ in payload_sends.pop(result.call_id):
            work.wait()
        for released_id, (tensor, stage1_ms) in acceptance.offer(result.call_id, result.cache_epoch,
                                                                 (output, result.stage1_us / 1000.0)):
            begin = time.perf_counter()
            decode(tensor)
            generation.advance(result.chunk_index + 1, result.cache_epoch)  # the emit fence, then the emit
            stage0_ms = produce_ms.pop(released_id) + (time.perf_counter() - begin) * 1000.0
            meter.record(result.chunk_index, stage0_ms, stage1_ms, time.monotonic_ns())
            emitted.append((result.chunk_index, tensor))
            print(f"EMIT chunk {result.chunk_index} epoch {result.cache_epoch} unix_ms {time.time() * 1000:.0f}",
                  flush=True)

    chunk, emitted_here = start.next_chunk, False
    while chunk < args.chunks or inflight:
        while chunk < args.chunks and len(inflight) < args.depth:
            send(chunk)
            chunk += 1
        # A generation's first result waits for the pipeline to warm up (a
        # restarted rank's first kernels and connections): the start-up deadline.
        with lockstep.watch("result", timeout=args.deadline_s if emitted_here else STARTUP_TIMEOUT_S):
            receive()
            emitted_here = True
    call_id += 1
    envelopes.publish_envelope(s.codec, lockstep.Envelope("SHUTDOWN", call_id, 0, epoch))
    wall_s = time.perf_counter() - started
    summary = meter.summary()
    counters = acceptance.counters
    report = {"emitted": len(emitted), "chunks": args.chunks, "generation": generation.number,
              "first_chunk": start.next_chunk, "wall_s": wall_s, "fps": len(emitted) / wall_s,
              "period_ms": summary["period_ms"]["median"], "stage0_ms": summary["stage0_ms"]["median"],
              "stage1_ms": summary["stage1_ms"]["median"], "overlap_score": summary["overlap_score"],
              "stale_drops": counters["stale_drops"], "hard_cuts": hard_cuts, "recomputes": recomputes}
    if args.out:
        torch.save({"outputs": emitted, "report": report}, args.out)
    return report


def run_mesh(s: Stream, generation: lockstep.Generation) -> None:
    args, cfg = s.args, s.config
    tp_rank, tp_size = s.mesh.rank, s.mesh.size
    leader = tp_rank == 0
    model = s.model
    cache = KvCache(cfg)  # the cache does not outlive its generation: a recovery is a hard cut
    s.world.barrier()
    envelopes = lockstep.ControlChannel.open("envelopes", reader=tp_rank, readers=tp_size, slots=args.depth + 2,
                                             slot_bytes=64 * 1024)
    results = lockstep.ControlChannel.create("results", readers=1, slots=args.depth + 2,
                                             slot_bytes=64 * 1024) if leader else None
    lockstep.set_phase("control")
    sequencer = lockstep.Sequencer(first_call_id=1, first_chunk_index=generation.start.next_chunk,
                                   first_cache_epoch=generation.start.epoch)
    pending_output = None  # (work, tensor) of the last output sent to Stage 0

    def all_reduce(tensor: torch.Tensor) -> None:
        s.mesh.all_reduce(tensor)

    while True:
        # Stage 0 sends one chunk at a time; it may decode meanwhile.
        decoded = envelopes.receive_envelope(s.codec, timeout=60.0)
        begin = time.perf_counter()
        env = decoded.message
        if env.action == "SHUTDOWN":
            if pending_output is not None:
                pending_output[0].wait()
            return
        if not sequencer.admit(env.call_id, env.cache_epoch, env.chunk_index, decoded.body_checksum):
            continue  # a resend: nothing is applied twice
        lockstep.set_context(env.call_id, env.chunk_index, env.cache_epoch)
        payload = lockstep.allocate(decoded.manifest, device="cpu")
        ordered = lockstep.payload_order(payload)
        if leader:
            for tensor in ordered:
                s.boundary.recv(tensor, src=0)
        ordered = [t.to(s.device) for t in ordered]
        for tensor in ordered:
            s.mesh.broadcast(tensor, src=s.mesh_ranks[0])
        by_key = dict(zip([spec.key for spec in decoded.manifest], ordered))
        latents = by_key["latents"]
        plan = env.plan
        if plan.init_cache:
            cache.reset()
        calls = 0
        timeout = STARTUP_TIMEOUT_S if env.chunk_index == generation.start.next_chunk else args.deadline_s
        with lockstep.phase("generator"), lockstep.watch("chunk", timeout=timeout):
            s.injection.strike(s.rt.rank, generation.number, env.chunk_index)
            if plan.do_kv_recompute:
                _, kv = model.call(by_key["context_override"], 0.0, None, plan.attention_bias, all_reduce)
                cache.reset()
                cache.commit(kv, advance=False)
                cache.recomputes += 1
                calls += 1
            x = latents
            for t in plan.timesteps:
                x, kv = model.call(x, t, cache, plan.attention_bias, all_reduce)
                calls += 1
        if calls != plan.expected_generator_calls:
            raise lockstep.LockstepError(f"chunk {env.chunk_index}: {calls} generator calls, plan expects "
                                         f"{plan.expected_generator_calls}", "plan", 34)
        cache.commit(kv)
        s.mesh.verify(input=lt.digest(latents), kv_state=hash(tuple(cache.digest_words())))
        if leader:
            output = x.to("cpu")
            result = lockstep.Result("INFER", env.call_id, env.chunk_index, env.cache_epoch, plan_id=plan.plan_id,
                                     observed_generator_calls=calls, geometry=env.geometry,
                                     stage1_us=int((time.perf_counter() - begin) * 1e6),
                                     kv_frames=len(cache.frames[0]), tensors={"output": output})
            results.publish_result(s.codec, result)
            if pending_output is not None:
                pending_output[0].wait()  # Stage 0 took the previous output by now, or is about to
            pending_output = (s.boundary.isend(output, dst=0), output)


def main() -> int:
    s = Stream(parse_args())

    def stream(generation: lockstep.Generation) -> None:
        s.connect(generation)
        if s.rt.rank == 0:
            report = run_stage0(s, generation)
            print("lockstep torch_stream: " + ", ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()), flush=True)
        else:
            run_mesh(s, generation)
        s.world.barrier()

    lockstep.run_generations(stream, parity={"model": s.args.model, "steps": s.args.steps, "depth": s.args.depth},
                             fingerprint=None if s.model is None else lambda: lt.fingerprint(s.model.tensors()))
    dist.destroy_process_group()
    lockstep.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
