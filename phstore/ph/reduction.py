"""Z/2 boundary matrices of filtered complexes and their persistence pairs (numba-compiled).

The reduction is the standard column algorithm with *twist* (clearing): dimensions are reduced
from the top down, and a column whose index is already the pivot of a reduced column is zero
without any work. numba is chosen by measurement (``benchmarks/README.md``): it is faster than
HomCloud's phat fed column by column from Python, and it compiles the matrix assembly too. Compiled code is
cached on disk (``cache=True``): a new process loads it in a fraction of a second.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def boundary_matrix(
    values: list[np.ndarray], bounds: list[np.ndarray], max_value: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Filtration order and mod-2 boundary columns of a complex given per dimension.

    ``values[d]`` are the values of the d-simplices, ``bounds[d]`` their faces' indices among
    the (d-1)-simplices (one row per simplex). Simplices above ``max_value`` are left out.
    Returns ``dims``, ``values`` in filtration order (value, then dimension: faces come before
    cofaces of equal value) and the columns ``indptr``, ``indices`` (rows = filtration
    positions, sorted, faces met an even number of times cancelled).
    """
    keep = [v <= max_value for v in values]
    dims = np.concatenate([np.full(int(k.sum()), d, dtype=np.int8) for d, k in enumerate(keep)])
    vals = np.concatenate([v[k] for v, k in zip(values, keep)])
    local = np.concatenate([np.flatnonzero(k) for k in keep])
    order = np.lexsort((local, dims, vals))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    start = np.cumsum([0] + [int(k.sum()) for k in keep])
    where = []  # filtration position of every simplex of each dimension (-1: left out)
    for d, k in enumerate(keep):
        w = np.full(len(k), -1, dtype=np.int64)
        w[k] = position[start[d] : start[d + 1]]
        where.append(w)
    raw = np.full((len(order), 4), -1, dtype=np.int64)
    for d in range(1, 4):
        rows = where[d - 1][bounds[d][keep[d]]]
        raw[position[start[d] : start[d + 1]], : d + 1] = rows
    indptr, indices = _columns(raw)
    return dims[order], vals[order], indptr, indices


@njit(cache=True)
def _columns(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compressed columns from padded rows of face positions: sorted, pairs cancelled mod 2."""
    m = raw.shape[0]
    indptr = np.zeros(m + 1, dtype=np.int64)
    indices = np.empty(raw.size, dtype=np.int64)
    buf = np.empty(4, dtype=np.int64)
    n = 0
    for j in range(m):
        k = 0
        for i in range(4):
            if raw[j, i] >= 0:
                buf[k] = raw[j, i]
                k += 1
        for i in range(1, k):  # insertion sort of at most 4 entries
            v = buf[i]
            h = i - 1
            while h >= 0 and buf[h] > v:
                buf[h + 1] = buf[h]
                h -= 1
            buf[h + 1] = v
        i = 0
        while i < k:
            if i + 1 < k and buf[i] == buf[i + 1]:
                i += 2
            else:
                indices[n] = buf[i]
                n += 1
                i += 1
        indptr[j + 1] = n
    return indptr, indices[:n]


@njit(cache=True)
def _reduce(indptr: np.ndarray, indices: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Twist reduction; returns ``owner[i]``: the column whose reduced pivot is row ``i`` (-1:
    none)."""
    m = len(dims)
    owner = np.full(m, -1, dtype=np.int64)
    cleared = np.zeros(m, dtype=np.bool_)
    start = np.zeros(m, dtype=np.int64)
    length = np.zeros(m, dtype=np.int64)
    pool = np.empty(max(16, 2 * len(indices)), dtype=np.int64)
    used = 0
    work = np.empty(m, dtype=np.int64)
    other = np.empty(m, dtype=np.int64)
    top = 0
    for j in range(m):
        top = max(top, dims[j])
    for d in range(top, 0, -1):
        for j in range(m):
            if dims[j] != d or cleared[j]:
                continue
            k = indptr[j + 1] - indptr[j]
            work[:k] = indices[indptr[j] : indptr[j + 1]]
            while k > 0:
                low = work[k - 1]
                c = owner[low]
                if c < 0:
                    break
                # work <- work xor reduced column c (both sorted)
                a, b, n = 0, start[c], 0
                end = start[c] + length[c]
                while a < k and b < end:
                    if work[a] < pool[b]:
                        other[n] = work[a]
                        a += 1
                        n += 1
                    elif work[a] > pool[b]:
                        other[n] = pool[b]
                        b += 1
                        n += 1
                    else:
                        a += 1
                        b += 1
                while a < k:
                    other[n] = work[a]
                    a += 1
                    n += 1
                while b < end:
                    other[n] = pool[b]
                    b += 1
                    n += 1
                work, other = other, work
                k = n
            if k == 0:
                continue
            low = work[k - 1]
            owner[low] = j
            cleared[low] = True
            if used + k > len(pool):
                bigger = np.empty(2 * (used + k), dtype=np.int64)
                bigger[:used] = pool[:used]
                pool = bigger
            pool[used : used + k] = work[:k]
            start[j] = used
            length[j] = k
            used += k
    return owner


def persistence_pairs(dims: np.ndarray, values: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows ``(degree, birth, death)`` of every pair of positive persistence, and of every class
    never killed (``death = inf``), sorted by degree, birth, death."""
    owner = _reduce(indptr, indices, dims)
    births = np.flatnonzero(owner >= 0)
    deaths = owner[births]
    negative = np.zeros(len(dims), dtype=bool)
    negative[deaths] = True
    essential = np.flatnonzero(~negative & (owner < 0))
    rows = np.concatenate(
        [
            np.column_stack([dims[births], values[births], values[deaths]]),
            np.column_stack([dims[essential], values[essential], np.full(len(essential), np.inf)]),
        ]
    )
    rows = rows[rows[:, 1] != rows[:, 2]]
    return rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
