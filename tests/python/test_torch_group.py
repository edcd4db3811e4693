"""Guarded torch process groups in one process (label torch): what lockstep keeps of torch's groups."""

from __future__ import annotations

import gc
import os
import tempfile
import unittest
import weakref

import torch.distributed as dist

import lockstep
import lockstep.torch as lt


class Registry(unittest.TestCase):
    def setUp(self) -> None:
        self.scratch = tempfile.TemporaryDirectory(prefix="lockstep-pytorch-")
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCKSTEP_JOB_DIR": self.scratch.name,
                           "LOCKSTEP_JOB_ID": f"pytorch-{os.getpid()}", "LOCKSTEP_JOB_TOKEN": "secret-0123456789"})
        lockstep.init(timeout=10.0, fatal_on_uncaught=False)
        dist.init_process_group("gloo", init_method=f"file://{self.scratch.name}/rendezvous", rank=0, world_size=1)

    def tearDown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
        lockstep.shutdown()
        self.scratch.cleanup()

    def test_a_destroyed_world_group_is_freed_at_exit_not_kept_for_finalization(self):
        world = lt.world()
        world.barrier()
        freed = weakref.ref(dist.group.WORLD)
        del world
        dist.destroy_process_group()
        gc.collect()
        self.assertIsNotNone(freed(), "lockstep's registry holds the world group until exit")
        lt._release_groups()  # what atexit runs, before the interpreter tears modules down
        gc.collect()
        self.assertIsNone(freed(), "the destroyed world group outlived lockstep's exit hook")


if __name__ == "__main__":
    unittest.main()
