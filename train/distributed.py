"""One process or many under torchrun: rank, world size, device and the few collectives training needs."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Distributed:
    """Rank, world size and device; a no-op single process outside torchrun."""

    def __init__(self, gpu: bool) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if gpu else "cpu")
        if gpu:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if gpu else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t)
        return bool(t.item())

    def gather(self, rows: list) -> list:
        if self.world == 1:
            return rows
        out: list = [None] * self.world
        dist.all_gather_object(out, rows)
        return [r for part in out for r in part]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()
