"""In-memory cosine search over L2-normalized vectors: exact while small, IVF when large.

A flat scan of 100k x 384 float32 vectors reads 150 MB per lookup, far over a few-ms
budget. When the index first reaches `ivf_from` vectors it clusters them once with k-means
into `nlist` lists (an inverted file, as in FAISS's IVF-Flat); later vectors join their
nearest list, and a search scans only the `nprobe` lists nearest the query. Cache hits need a
cosine near 0.9 or more, so the true neighbour sits in the query's own cluster or next to
it: recall at that similarity stays near 1 (measured by `tierwise bench cache`).
"""

from __future__ import annotations

import math

import numpy as np

_GROW = 1.5


class _Block:
    """A growable matrix of vectors with their ids; removal swaps in the last row."""

    def __init__(self, dim: int) -> None:
        self.vectors = np.zeros((16, dim), dtype=np.float32)
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_id: str, vector: np.ndarray) -> int:
        n = len(self.ids)
        if n == len(self.vectors):
            grown = np.zeros((math.ceil(n * _GROW) + 1, self.vectors.shape[1]), dtype=np.float32)
            grown[:n] = self.vectors
            self.vectors = grown
        self.vectors[n] = vector
        self.ids.append(item_id)
        return n

    def remove_at(self, row: int) -> str | None:
        """Remove a row; return the id that moved into it (or None)."""
        last = len(self.ids) - 1
        moved = None
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.ids[row] = self.ids[last]
            moved = self.ids[row]
        self.ids.pop()
        return moved

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.vectors[: len(self.ids)] @ query


class VectorIndex:
    """add / remove / search by cosine; one instance per cache partition."""

    def __init__(
        self, dim: int, ivf_from: int = 4096, nlist: int = 256, nprobe: int = 8, seed: int = 0
    ) -> None:
        self.dim = dim
        self.ivf_from = ivf_from
        self.nlist = nlist
        self.nprobe = nprobe
        self._rng = np.random.default_rng(seed)
        self._blocks: list[_Block] = [_Block(dim)]
        self._centroids: np.ndarray | None = None
        self._where: dict[str, tuple[int, int]] = {}  # id -> (block, row)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._where

    def add(self, item_id: str, vector: np.ndarray) -> None:
        if item_id in self._where:
            return
        block = self._nearest_block(vector)
        row = self._blocks[block].add(item_id, vector)
        self._where[item_id] = (block, row)
        if self._centroids is None and len(self) >= self.ivf_from:
            self._train()

    def remove(self, item_id: str) -> None:
        place = self._where.pop(item_id, None)
        if place is None:
            return
        block, row = place
        moved = self._blocks[block].remove_at(row)
        if moved is not None:
            self._where[moved] = (block, row)

    def search(self, query: np.ndarray, k: int = 4) -> list[tuple[float, str]]:
        """Best k (cosine, id) pairs, best first."""
        if not self._where:
            return []
        if self._centroids is None:
            probe = [0]
        else:
            near = self._centroids @ query
            probe = np.argsort(-near)[: self.nprobe].tolist()
        found: list[tuple[float, str]] = []
        for b in probe:
            block = self._blocks[b]
            if not len(block):
                continue
            scores = block.scores(query)
            take = min(k, len(scores))
            top = np.argpartition(-scores, take - 1)[:take]
            found += [(float(scores[i]), block.ids[i]) for i in top]
        found.sort(key=lambda pair: -pair[0])
        return found[:k]

    def _nearest_block(self, vector: np.ndarray) -> int:
        if self._centroids is None:
            return 0
        return int(np.argmax(self._centroids @ vector))

    def _train(self) -> None:
        """Cluster the vectors so far with spherical k-means (8 rounds) into nlist lists."""
        ids = list(self._blocks[0].ids)
        data = self._blocks[0].vectors[: len(ids)].copy()
        nlist = min(self.nlist, len(ids) // 4)
        sample = data[self._rng.choice(len(data), size=min(len(data), nlist * 40), replace=False)]
        centroids = sample[self._rng.choice(len(sample), size=nlist, replace=False)].copy()
        for _ in range(8):
            assign = np.argmax(sample @ centroids.T, axis=1)
            for c in range(nlist):
                members = sample[assign == c]
                if len(members):
                    mean = members.sum(axis=0)
                    centroids[c] = mean / (np.linalg.norm(mean) or 1.0)
        self._centroids = centroids.astype(np.float32)
        self._blocks = [_Block(self.dim) for _ in range(nlist)]
        self._where = {}
        assign = np.argmax(data @ self._centroids.T, axis=1)
        for item_id, vector, block in zip(ids, data, assign, strict=True):
            row = self._blocks[int(block)].add(item_id, vector)
            self._where[item_id] = (int(block), row)
