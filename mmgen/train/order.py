"""Which clips each training step sees: a pure function of (seed, step), so a resumed run sees exactly the
batches the uninterrupted run would have, and DataLoader prefetching cannot disturb it.

The clips form an endless stream: epoch e is a permutation of the training clips drawn from seed + e, and
step s takes stream positions [s·B, (s+1)·B) — a batch may span two epochs; a dataset smaller than the batch
simply repeats. Under torchrun every process computes the same global batch and takes every world-th clip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class BatchOrder:
    """Batches of dataset indices for steps start_step, start_step + 1, … (an endless batch sampler)."""

    def __init__(
        self,
        indices: Sequence[int],
        batch_size: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} does not split evenly over {world_size} processes")
        self.indices = torch.as_tensor(list(indices), dtype=torch.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self._epoch: tuple[int, torch.Tensor] | None = None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The training indices in epoch `epoch`'s order."""
        if self._epoch is None or self._epoch[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch = (epoch, self.indices[torch.randperm(len(self.indices), generator=generator)])
        return self._epoch[1]

    def epoch_at(self, step: int) -> float:
        """Fractional epoch reached after `step` steps (for the log)."""
        return step * self.batch_size / len(self.indices)

    def global_batch(self, step: int) -> list[int]:
        """The dataset indices all processes together train on at `step`: stream positions [s·B, (s+1)·B), cut
        from the orders of the epochs they span as tensors — one list of B indices in the end, whatever B."""
        n = len(self.indices)
        start = step * self.batch_size
        first, last = start // n, (start + self.batch_size - 1) // n
        stream = torch.cat([self.epoch_order(epoch) for epoch in range(first, last + 1)])
        offset = start - first * n
        return stream[offset : offset + self.batch_size].tolist()

    def batch(self, step: int) -> list[int]:
        """This process's share of the global batch at `step`."""
        return self.global_batch(step)[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1
