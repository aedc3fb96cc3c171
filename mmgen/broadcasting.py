"""Shape arithmetic in plain Python: torch.broadcast_shapes' first call in a process imports sympy (~470 modules,
seconds) in the middle of sampling, and a Ctrl-C landing in that import left sympy half-loaded."""

from __future__ import annotations


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of `shape` broadcasts to exactly `target` (torch.broadcast_shapes(shape, target) == target):
    no more dimensions, and each of its trailing ones `target`'s or 1."""
    if len(shape) > len(target):
        return False
    return all(size == wanted or size == 1 for size, wanted in zip(reversed(shape), reversed(target), strict=False))
