"""How a long driving video is cut into overlapping chunks (ENGINE-SPEC section 1).

Pure integer arithmetic, no torch: the app uses it to show the plan before any
model is loaded, and the engine uses it to schedule work and to merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Literal

Role = Literal["anchor", "base", "cond"]


class ChunkPlanError(ValueError):
    """A chunk setting or a video length that cannot be planned."""


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@dataclass(frozen=True)
class ChunkSpec:
    """Chunk length N and the overlaps of a cond chunk with its neighbours."""

    frames: int = 81  # N
    head: int = 21  # Hd: overlap of cond chunk i with the end of chunk i-1
    tail: int = 20  # Tl: overlap of cond chunk i with the start of chunk i+1

    def validate(self) -> ChunkSpec:
        # Latent frames are the first pixel frame plus groups of 4, hence the congruences.
        for name, value in (("frames", self.frames), ("head", self.head), ("tail", self.tail)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ChunkPlanError(f"--{name} {value!r}: must be a positive integer")
        if self.frames % 4 != 1:
            raise ChunkPlanError(
                f"--frames {self.frames}: chunk length must be 1 mod 4 (e.g. 81)")
        if self.head % 4 != 1:
            raise ChunkPlanError(
                f"--head {self.head}: head length must be 1 mod 4 (e.g. 21)")
        if self.tail % 4 != 0:
            raise ChunkPlanError(
                f"--tail {self.tail}: tail length must be 0 mod 4 (e.g. 20)")
        if self.head + self.tail >= self.frames:
            raise ChunkPlanError(
                f"--head {self.head} + --tail {self.tail} = {self.head + self.tail} must be "
                f"less than --frames {self.frames}; shrink the overlaps or lengthen the chunk")
        return self

    @property
    def stride(self) -> int:
        """Frames advanced from one base chunk to the next (2N - Hd - Tl)."""
        return 2 * self.frames - self.head - self.tail


def count_chunks(total_frames: int, spec: ChunkSpec = ChunkSpec(), pad: bool = True) -> int:
    """Number of chunks K (always odd) needed for a driving video of ``total_frames``."""
    spec.validate()
    _check_total(total_frames)
    excess = total_frames - spec.frames
    if pad:
        # The last base chunk may run past the end; its conditions get mirror-padded.
        return max(1, 2 * _ceil_div(excess, spec.stride) + 1)
    k = 2 * (excess // spec.stride) + 1
    if k <= 0:
        raise ChunkPlanError(
            f"driving video shorter than one chunk of N frames: it has {total_frames} frames, "
            f"a chunk needs N={spec.frames}; turn padding on or use a longer video")
    return k


def chunk_start(i: int, spec: ChunkSpec = ChunkSpec()) -> int:
    """First driving-video frame of chunk ``i``."""
    if i < 0:
        raise ChunkPlanError(f"chunk index {i} is negative")
    return i * spec.frames - _ceil_div(i, 2) * spec.head - (i // 2) * spec.tail


def covered_length(num_chunks: int, spec: ChunkSpec = ChunkSpec()) -> int:
    """Frames spanned by ``num_chunks`` chunks; may exceed the video length."""
    return num_chunks * spec.frames - (num_chunks // 2) * (spec.head + spec.tail)


def mirror_index(position: int, total_frames: int) -> int:
    """Map any position >= 0 into [0, L) by symmetric reflection (L-1, L-1, L-2, ...)."""
    period = 2 * total_frames
    p = position % period
    return p if p < total_frames else period - 1 - p


@dataclass(frozen=True)
class Chunk:
    index: int
    role: Role
    start: int
    end: int  # exclusive: start + N
    overlap_prev: int  # frames shared with chunk index-1 (0 for chunk 0)

    @property
    def is_base(self) -> bool:
        return self.index % 2 == 0


@dataclass(frozen=True)
class ChunkPlan:
    spec: ChunkSpec
    total_frames: int
    num_chunks: int
    anchor: int
    pad: bool
    chunks: tuple[Chunk, ...]

    @property
    def covered_frames(self) -> int:
        return covered_length(self.num_chunks, self.spec)

    @property
    def output_frames(self) -> int:
        """Frames in the merged video: the generated span cut back to the video length."""
        return min(self.covered_frames, self.total_frames)

    def _chunk(self, i: int) -> Chunk:
        if not 0 <= i < self.num_chunks:
            raise IndexError(
                f"chunk {i} out of range: the plan has chunks 0..{self.num_chunks - 1}")
        return self.chunks[i]

    def condition_indices(self, i: int) -> list[int]:
        """Driving-video frame index for each of chunk ``i``'s N condition frames.

        Positions inside the video map to themselves; positions past the end are
        mirror-reflected (frame L-1 repeated, then L-2, ...), as often as needed,
        so a chunk that starts past the end or a video shorter than N still works.
        """
        c = self._chunk(i)
        return [mirror_index(p, self.total_frames) for p in range(c.start, c.end)]

    def dependencies(self, i: int) -> tuple[int, ...]:
        """Chunks that must be finished before chunk ``i`` can start."""
        c = self._chunk(i)
        if c.role == "anchor":
            return ()
        if c.role == "base":
            return (self.anchor,)  # reads the anchor's KV cache
        return (i - 1, i + 1)  # a cond chunk is conditioned on both decoded neighbours

    def order(self) -> list[int]:
        """A valid work order: anchor, the other base chunks, then cond chunks."""
        bases = [c.index for c in self.chunks if c.role == "base"]
        conds = [c.index for c in self.chunks if c.role == "cond"]
        return [self.anchor, *bases, *conds]

    def ready(self, done: set[int]) -> list[int]:
        """Chunks not yet done whose dependencies are all done, in work order."""
        return [i for i in self.order()
                if i not in done and all(d in done for d in self.dependencies(i))]


def make_plan(total_frames: int, spec: ChunkSpec = ChunkSpec(), num_chunks: int | None = None,
              anchor: int = 0, pad: bool = True) -> ChunkPlan:
    """Plan the chunks for a driving video of ``total_frames`` frames."""
    spec.validate()
    _check_total(total_frames)
    if num_chunks is None:
        k = count_chunks(total_frames, spec, pad)
    else:
        if num_chunks < 1:
            raise ChunkPlanError(f"--num-chunks {num_chunks}: must be at least 1")
        # Chunks alternate base/cond and must end on a base chunk, so K is odd.
        k = num_chunks - 1 if num_chunks % 2 == 0 else num_chunks
        k = max(k, 1)
        if not pad and covered_length(k, spec) > total_frames:
            most = count_chunks(total_frames, spec, pad=False)
            raise ChunkPlanError(
                f"--num-chunks {num_chunks}: {k} chunks span {covered_length(k, spec)} frames but "
                f"the driving video has {total_frames}; with padding off use at most {most} "
                f"chunks, or turn padding on")
    if anchor % 2 != 0 or not 0 <= anchor < k:
        valid = ", ".join(str(a) for a in range(0, k, 2))
        raise ChunkPlanError(
            f"--anchor {anchor}: the anchor must be an even (base) chunk of this {k}-chunk "
            f"plan; valid values: {valid}")
    chunks = tuple(_make_chunk(i, spec, anchor) for i in range(k))
    return ChunkPlan(spec=spec, total_frames=total_frames, num_chunks=k, anchor=anchor,
                     pad=pad, chunks=chunks)


def _make_chunk(i: int, spec: ChunkSpec, anchor: int) -> Chunk:
    start = chunk_start(i, spec)
    # A cond chunk shares its head with the chunk before; a base chunk its tail.
    overlap = 0 if i == 0 else (spec.head if i % 2 == 1 else spec.tail)
    role: Role = "anchor" if i == anchor else ("base" if i % 2 == 0 else "cond")
    return Chunk(index=i, role=role, start=start, end=start + spec.frames, overlap_prev=overlap)


def _check_total(total_frames: int) -> None:
    if total_frames < 1:
        raise ChunkPlanError(
            f"driving video has {total_frames} frames; it needs at least 1 "
            f"(check that the file decodes)")
