"""The lockstep Python package in one process (label python): codec, flow rules, runtime, channel."""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
import unittest

import numpy as np

import lockstep
from lockstep import _core

TOKEN = _core.job_token_digest("secret-job-py-0123", 0)


def latents(frames: int = 2, tokens: int = 3, dim: int = 4) -> np.ndarray:
    return np.arange(frames * tokens * dim, dtype=np.float32).reshape(frames * tokens, dim)


def infer(call_id: int = 1, **changes) -> lockstep.Envelope:
    fields = dict(action="INFER", call_id=call_id, chunk_index=0, cache_epoch=0,
                  plan=lockstep.Plan(plan_id=9, num_denoise_steps=2, timesteps=[1.0, 0.5]), geometry=(2, 3, 4),
                  meta={"prompt": "a cat", "seed": 7, "guidance": 5.5, "flags": [True, False], "tags": ["x", "y"]},
                  tensors={"latents": latents()})
    fields.update(changes)
    return lockstep.Envelope(**fields)


class Errors(unittest.TestCase):
    def code_of(self, fn) -> str:
        with self.assertRaises(lockstep.LockstepError) as raised:
            fn()
        return raised.exception

    def test_errors_carry_code_and_exit_code_and_survive_pickling(self):
        error = lockstep.LockstepError("x", "ledger", 33)
        again = pickle.loads(pickle.dumps(error))
        self.assertEqual((again.code, again.exit_code, str(again)), ("ledger", 33, "x"))
        self.assertEqual(_core.exit_code_for("timeout"), 20)
        with self.assertRaises(lockstep.LockstepError) as raised:
            _core.exit_code_for("no-such-code")
        self.assertEqual(raised.exception.code, "invalid_argument")
        self.assertEqual(raised.exception.exit_code, 2)


class Codec(unittest.TestCase):
    def setUp(self) -> None:
        self.codec = lockstep.Codec(TOKEN, sender_rank=0)

    def refused(self, envelope: lockstep.Envelope) -> lockstep.LockstepError:
        with self.assertRaises(lockstep.LockstepError) as raised:
            self.codec.encode_envelope(envelope)
        return raised.exception

    def test_envelope_round_trips_with_a_canonical_manifest(self):
        envelope = infer(tensors={"latents": latents(), "aux": [np.ones(3, np.int64), np.zeros(2, np.uint8)]})
        frame = self.codec.encode_envelope(envelope)
        decoded = self.codec.decode_envelope(frame)
        got = decoded.message
        self.assertEqual((got.action, got.call_id, got.geometry), ("INFER", 1, (2, 3, 4)))
        self.assertEqual(got.meta, envelope.meta)
        self.assertEqual(got.plan.timesteps, [1.0, 0.5])
        self.assertEqual(got.plan.expected_generator_calls, 2)
        self.assertEqual([(s.key, s.index, s.dtype, s.shape) for s in decoded.manifest],
                         [("aux", 0, "i64", (3,)), ("aux", 1, "u8", (2,)), ("latents", 0, "f32", (6, 4))])
        self.assertEqual([t.dtype for t in lockstep.payload_order(envelope.tensors)],
                         [np.int64, np.uint8, np.float32])
        # Equal meta => equal bytes, whatever the insertion order.
        shuffled = infer(meta=dict(reversed(list(envelope.meta.items()))), tensors=envelope.tensors)
        self.assertEqual(self.codec.encode_envelope(shuffled), frame)

    def test_a1_a3_meta_that_cannot_be_encoded_or_hides_a_tensor_is_refused_before_any_frame(self):
        error = self.refused(infer(meta={"nested": {"a": 1}}))
        self.assertEqual((error.code, error.exit_code), ("encode", 10))
        self.assertIn("meta 'nested'", str(error))
        self.assertEqual(self.refused(infer(meta={"nan": float("nan")})).code, "encode")
        self.assertEqual(self.refused(infer(meta={"mixed": [1, "a"]})).code, "encode")
        error = self.refused(infer(meta={"hidden": latents()}))
        self.assertEqual(error.code, "schema")
        self.assertIn("tensors travel in the manifest", str(error))
        error = self.refused(infer(meta=[("seed", 7)]))  # not a dict: refused naming the field, not a TypeError
        self.assertEqual(error.code, "encode")
        self.assertIn("meta has type list, not dict", str(error))

    def test_meta_of_every_type_round_trips_and_what_does_not_fit_is_refused_naming_the_key(self):
        meta = {"i": -(2 ** 63), "f": 0.25, "b": True, "s": "\u00e9t\u00e9", "il": (1, 2 ** 63 - 1), "fl": [0.5],
                "bl": [False, True], "sl": ["a", "\u65e5"], "empty": []}
        got = self.codec.decode_envelope(self.codec.encode_envelope(infer(meta=meta))).message.meta
        self.assertEqual(got, {**meta, "il": [1, 2 ** 63 - 1]})
        self.assertEqual([type(got[k]) for k in ("i", "f", "b", "bl")], [int, float, bool, list])
        self.assertEqual(type(got["bl"][0]), bool)
        for bad, words in (({"big": 2 ** 63}, "meta 'big' integer does not fit"),
                           ({"big": [1, -(2 ** 64)]}, "meta 'big' integer does not fit"),
                           ({"lone": "\ud800"}, "meta 'lone' string cannot be encoded"),
                           ({"ints": [1, True]}, "meta 'ints' list mixes int and bool"),
                           ({7: 1}, "meta key of type int")):
            error = self.refused(infer(meta=bad))
            self.assertEqual(error.code, "encode", bad)
            self.assertIn(words, str(error))
        with self.assertRaises(lockstep.LockstepError) as raised:
            self.codec.decode_envelope(12)
        self.assertEqual(raised.exception.code, "decode")
        self.assertIn("not int", str(raised.exception))
        frame = self.codec.encode_envelope(infer(meta=meta))
        self.assertEqual(self.codec.decode_envelope(memoryview(bytearray(frame))).message.meta["i"], -(2 ** 63))
        with self.assertRaises(lockstep.LockstepError) as raised:
            self.codec.decode_envelope(memoryview(frame)[::-1])
        self.assertIn("contiguous", str(raised.exception))

    def test_a2_unsupported_dtype_and_non_contiguous_tensors_are_refused(self):
        error = self.refused(infer(tensors={"latents": latents().astype(np.int8)}))
        self.assertEqual(error.code, "encode")
        self.assertIn("tensor 'latents[0]' has dtype int8", str(error))
        strided = np.zeros((4, 12), np.float32)[:, ::2]
        self.assertEqual(self.refused(infer(tensors={"latents": strided[:6]})).code, "schema")

    def test_f1_recompute_without_context_override_and_bad_plans_fail_preflight(self):
        plan = lockstep.Plan(plan_id=9, num_denoise_steps=2, timesteps=[1.0, 0.5], do_kv_recompute=True)
        error = self.refused(infer(plan=plan))
        self.assertEqual(error.code, "schema")
        self.assertIn("context_override", str(error))
        wrong = lockstep.Plan(plan_id=9, num_denoise_steps=2, timesteps=[1.0, 0.5], expected_generator_calls=3)
        self.assertEqual(self.refused(infer(plan=wrong)).code, "schema")
        self.assertEqual(self.refused(infer(action="PAUSE")).code, "schema")

    def test_a5_a_corrupted_byte_or_another_jobs_frame_is_rejected(self):
        frame = bytearray(self.codec.encode_envelope(infer()))
        frame[-5] ^= 0x01
        with self.assertRaises(lockstep.LockstepError) as raised:
            self.codec.decode_envelope(bytes(frame))
        self.assertEqual(raised.exception.code, "checksum")
        other_job = lockstep.Codec(_core.job_token_digest("secret-job-other-0123", 0), sender_rank=1)
        with self.assertRaises(lockstep.LockstepError) as raised:
            other_job.decode_envelope(self.codec.encode_envelope(infer()))
        self.assertIn("token", str(raised.exception))
        next_generation = lockstep.Codec(_core.job_token_digest("secret-job-py-0123", 1), sender_rank=1)
        with self.assertRaises(lockstep.LockstepError) as raised:
            next_generation.decode_envelope(self.codec.encode_envelope(infer()))
        self.assertEqual(raised.exception.code, "stale_work")

    def test_result_round_trips(self):
        result = lockstep.Result("INFER", 4, 2, 1, plan_id=9, observed_generator_calls=2, geometry=(2, 3, 4),
                                 stage1_us=1500, digests=(1, 2, 3, 4), kv_frames=2, tensors={"output": latents()})
        decoded = self.codec.decode_result(self.codec.encode_result(result))
        got = decoded.message
        self.assertEqual((got.call_id, got.cache_epoch, got.stage1_us, got.digests, got.kv_frames),
                         (4, 1, 1500, (1, 2, 3, 4), 2))
        self.assertEqual(decoded.manifest[0].key, "output")


class Flow(unittest.TestCase):
    def test_d1_d2_d3_d4_acceptance(self):
        acceptance: lockstep.Acceptance[str] = lockstep.Acceptance(cache_epoch=0, reorder_window=2)
        for call_id in (1, 2, 3):
            acceptance.expect(call_id)
        self.assertEqual(acceptance.offer(2, 0, "r2"), [])                    # D4: held in the window
        self.assertEqual(acceptance.offer(1, 0, "r1"), [(1, "r1"), (2, "r2")])
        self.assertEqual(acceptance.offer(1, 0, "r1 again"), [])              # D1: duplicate dropped
        acceptance.begin_epoch(1)
        self.assertEqual(acceptance.offer(3, 0, "r3 of the old epoch"), [])   # D2: stale dropped
        counters = acceptance.counters
        self.assertEqual((counters["duplicate_drops"], counters["stale_drops"]), (1, 1))
        acceptance.expect(4)
        with self.assertRaises(lockstep.LockstepError) as raised:            # D3: regression is fatal
            acceptance.offer(2, 1, "r2 again")
        self.assertEqual(raised.exception.code, "stale_work")

    def test_sequencer_drops_a_resend_and_refuses_a_gap(self):
        sequencer = lockstep.Sequencer(first_call_id=1, first_chunk_index=0, first_cache_epoch=0)
        self.assertTrue(sequencer.admit(1, 0, 0, 111))
        self.assertFalse(sequencer.admit(1, 0, 0, 111))
        self.assertEqual(sequencer.duplicate_drops, 1)
        with self.assertRaises(lockstep.LockstepError) as raised:
            sequencer.admit(3, 0, 1, 333)
        self.assertEqual(raised.exception.code, "stale_work")

    def test_overlap_meter(self):
        meter = lockstep.OverlapMeter()
        ms = 1_000_000
        self.assertIsNone(meter.record(0, 10.0, 10.0, 100 * ms)["period_ms"])
        chunk = meter.record(1, 10.0, 10.0, 110 * ms)  # period 10 = max: fully overlapped
        self.assertAlmostEqual(chunk["period_ms"], 10.0)
        self.assertAlmostEqual(chunk["score"], 1.0)
        meter.record(2, 10.0, 10.0, 130 * ms)          # period 20 = sum: serial
        summary = meter.summary()
        self.assertEqual(summary["chunks"], 3)
        self.assertAlmostEqual(summary["period_ms"]["median"], 10.0)


class Runtime(unittest.TestCase):
    """init() once for the class: one runtime per process."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.scratch = tempfile.TemporaryDirectory(prefix="lockstep-pyrt-")
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCKSTEP_JOB_DIR": cls.scratch.name,
                           "LOCKSTEP_JOB_ID": f"pytest-{os.getpid()}", "LOCKSTEP_JOB_TOKEN": "secret-0123456789"})
        cls.rt = lockstep.init(timeout=10.0, fatal_on_uncaught=False)

    @classmethod
    def tearDownClass(cls) -> None:
        lockstep.shutdown()
        cls.scratch.cleanup()

    def test_init_twice_is_refused(self):
        with self.assertRaises(lockstep.LockstepError) as raised:
            lockstep.init()
        self.assertEqual(raised.exception.code, "internal")

    def test_watch_and_phase_scopes(self):
        with lockstep.watch("a short block", timeout=5.0):
            pass
        self.assertEqual(lockstep.current_phase(), "startup")
        with lockstep.phase("generator"):
            self.assertEqual(lockstep.current_phase(), "generator")
        self.assertEqual(lockstep.current_phase(), "startup")
        with self.assertRaises(lockstep.LockstepError) as raised:
            lockstep.set_phase("warmup")
        self.assertEqual(raised.exception.code, "invalid_argument")
        with self.assertRaises(lockstep.LockstepError):
            lockstep.watch("negative", timeout=-1.0)

    def test_control_channel_delivers_and_a6_refuses_a_second_thread(self):
        writer = lockstep.ControlChannel.create("ctl-test", readers=1)
        reader = lockstep.ControlChannel.open("ctl-test", reader=0, readers=1, timeout=5.0)
        self.assertIn(f"g{self.rt.generation}-ctl-test", writer.segment_name)
        frame = lockstep.Codec(self.rt.token_digest, 0).encode_envelope(infer())
        writer.publish(frame, timeout=5.0)
        self.assertEqual(reader.receive(timeout=5.0), frame)
        errors = []

        def other_thread() -> None:
            try:
                writer.publish(frame, timeout=1.0)
            except lockstep.LockstepError as error:
                errors.append(error)

        thread = threading.Thread(target=other_thread, name="intruder")
        thread.start()
        thread.join(timeout=10.0)
        self.assertEqual([e.code for e in errors], ["ownership"])
        self.assertIn("thread", str(errors[0]))

    def test_publish_and_receive_envelopes_and_results_in_one_call_each(self):
        writer = lockstep.ControlChannel.create("ctl-decode", readers=1, slots=4)
        reader = lockstep.ControlChannel.open("ctl-decode", reader=0, readers=1, slots=4, timeout=5.0)
        codec = lockstep.Codec(self.rt.token_digest, 0)
        envelope = infer(tensors={"latents": latents()})
        writer.publish_envelope(codec, envelope, timeout=5.0)
        # A2 on the fused path: refused before anything reaches the ring.
        with self.assertRaises(lockstep.LockstepError) as raised:
            writer.publish_envelope(codec, infer(call_id=9, tensors={"latents": latents().astype(np.int8)}))
        self.assertEqual(raised.exception.code, "encode")
        corrupted = bytearray(codec.encode_envelope(infer(call_id=2)))
        corrupted[-5] ^= 0x01
        writer.publish(bytes(corrupted), timeout=5.0)
        result = lockstep.Result("INFER", 3, 2, 1, plan_id=9, observed_generator_calls=2, geometry=(2, 3, 4),
                                 digests=(1, 2, 3, 4), kv_frames=2, tensors={"output": latents()})
        writer.publish_result(codec, result, timeout=5.0)

        got = reader.receive_envelope(codec, timeout=5.0)
        self.assertEqual((got.message.action, got.message.call_id, got.message.meta), ("INFER", 1, envelope.meta))
        self.assertEqual(got, codec.decode_envelope(codec.encode_envelope(envelope)))
        with self.assertRaises(lockstep.LockstepError) as raised:
            reader.receive_envelope(codec, timeout=5.0)
        self.assertEqual(raised.exception.code, "checksum")
        # The corrupted frame was taken off the ring: the next receive gets the result after it.
        got = reader.receive_result(codec, timeout=5.0)
        self.assertEqual(got, codec.decode_result(codec.encode_result(result)))
        with self.assertRaises(lockstep.LockstepError) as raised:
            reader.receive_envelope(codec, timeout=0.05)
        self.assertEqual(raised.exception.code, "timeout")

    def test_run_generations_under_exit_runs_the_body_once_after_the_handshake(self):
        def body(generation: lockstep.Generation) -> tuple:
            generation.advance(5, 0)  # under "exit" nothing resumes: no position is kept
            return generation.number, tuple(generation.start), generation.resumed

        self.assertEqual(self.rt.on_fault, "exit")
        self.assertEqual(lockstep.run_generations(body, parity={"model": "tiny"}, fingerprint=lambda: 0xabc),
                         (0, (0, 0), False))
        # The weights this rank recorded at its first handshake are the ones it must keep.
        with self.assertRaises(lockstep.LockstepError) as raised:
            lockstep.run_generations(body, fingerprint=lambda: 0xabd)
        self.assertEqual(raised.exception.code, "parity")
        self.assertIn("recorded in generation 0", str(raised.exception))

    def test_dump_on_request(self):
        path = self.rt.dump("asked by the test")
        self.assertTrue(os.path.exists(path), path)


if __name__ == "__main__":
    unittest.main()
