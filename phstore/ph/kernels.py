"""numba kernels of the periodic alpha filtration: the per-simplex loops of :mod:`.filtration`.

Every geometric quantity of a simplex is computed from its vertices' atoms and integer lattice
offsets: edge vectors are ``(frac[a_j] - frac[a_0] + (o_j - o_0)) @ vectors``, written out term by
term, so every translate of a simplex, and every call, gives the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always", error_model="numpy")
def _edge(frac, vectors, a0, o0, a, o, out):
    d0 = frac[a, 0] - frac[a0, 0] + (o[0] - o0[0])
    d1 = frac[a, 1] - frac[a0, 1] + (o[1] - o0[1])
    d2 = frac[a, 2] - frac[a0, 2] + (o[2] - o0[2])
    for k in range(3):
        out[k] = d0 * vectors[0, k] + d1 * vectors[1, k] + d2 * vectors[2, k]


@njit(cache=True, inline="always", error_model="numpy")
def _cross(a, b, out):
    out[0] = a[1] * b[2] - a[2] * b[1]
    out[1] = a[2] * b[0] - a[0] * b[2]
    out[2] = a[0] * b[1] - a[1] * b[0]


@njit(cache=True, inline="always", error_model="numpy")
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True, error_model="numpy")
def _centre(e, k, out):
    """Centre (relative to vertex 0) of the smallest sphere through vertex 0 and the ends of
    the ``k`` edge vectors ``e[0..k-1]``; returns its squared radius."""
    if k == 1:
        for i in range(3):
            out[i] = 0.5 * e[0, i]
    elif k == 2:
        n = np.empty(3)
        t = np.empty(3)
        u = np.empty(3)
        _cross(e[0], e[1], n)
        _cross(e[1], n, t)
        _cross(n, e[0], u)
        aa, bb, nn = _dot(e[0], e[0]), _dot(e[1], e[1]), _dot(n, n)
        for i in range(3):
            out[i] = (t[i] * aa + u[i] * bb) / (2 * nn)
    else:
        bc = np.empty(3)
        ca = np.empty(3)
        ab = np.empty(3)
        _cross(e[1], e[2], bc)
        _cross(e[2], e[0], ca)
        _cross(e[0], e[1], ab)
        den = 2 * _dot(e[0], bc)
        aa, bb, cc = _dot(e[0], e[0]), _dot(e[1], e[1]), _dot(e[2], e[2])
        for i in range(3):
            out[i] = (bc[i] * aa + ca[i] * bb + ab[i] * cc) / den
    return _dot(out, out)


@njit(cache=True, error_model="numpy")
def canonical_tetrahedra(simplices, code, n):
    """Rows of ``simplices`` with vertices sorted by ``code`` (atom, offset order), keeping one
    translate per orbit: those whose smallest vertex is a home point (index < ``n``). Returns
    the sorted rows and their indices in ``simplices``."""
    out = np.empty_like(simplices)
    index = np.empty(simplices.shape[0], dtype=np.int64)
    m = 0
    row = np.empty(4, dtype=simplices.dtype)
    for s in range(simplices.shape[0]):
        for i in range(4):
            row[i] = simplices[s, i]
        for i in range(1, 4):  # insertion sort by code
            v = row[i]
            j = i - 1
            while j >= 0 and code[row[j]] > code[v]:
                row[j + 1] = row[j]
                j -= 1
            row[j + 1] = v
        if row[0] < n:
            out[m] = row
            index[m] = s
            m += 1
    return out[:m], index[:m]


@njit(cache=True, error_model="numpy")
def tetrahedra(frac, vectors, inverse, heights, atoms, offsets):
    """Per tetrahedron: circumcentre (relative to its first vertex) and circumradius² (Å²), six
    times its signed volume (Å³), the cube of its longest edge (Å³, the scale of a flatness
    test) and the skin (Å) its circumball needs to lie inside the replicated region."""
    t = atoms.shape[0]
    centre = np.empty((t, 3))
    r2 = np.empty(t)
    volume6 = np.empty(t)
    scale = np.empty(t)
    need = np.empty(t)
    e = np.empty((3, 3))
    x = np.empty(3)
    for s in range(t):
        c = centre[s]
        a0 = atoms[s, 0]
        longest = 0.0
        for j in range(3):
            _edge(frac, vectors, a0, offsets[s, 0], atoms[s, j + 1], offsets[s, j + 1], e[j])
            longest = max(longest, _dot(e[j], e[j]))
        _cross(e[1], e[2], x)
        volume6[s] = _dot(e[0], x)
        scale[s] = longest**1.5
        r2[s] = _centre(e, 3, c)
        r = np.sqrt(r2[s])
        worst = -np.inf
        for k in range(3):
            f = frac[a0, k] + offsets[s, 0, k] + c[0] * inverse[0, k] + c[1] * inverse[1, k] + c[2] * inverse[2, k]
            rf = r / heights[k]
            worst = max(worst, max(rf - f, f + rf - 1.0) * heights[k])
        need[s] = worst
    return centre, r2, volume6, scale, need


@njit(cache=True, error_model="numpy")
def own_values(frac, vectors, atoms, offsets):
    """Smallest circumradius² (Å²) of each simplex (edges or triangles) in its own frame."""
    s_count, k = atoms.shape[0], atoms.shape[1] - 1
    out = np.empty(s_count)
    e = np.empty((3, 3))
    c = np.empty(3)
    for s in range(s_count):
        for j in range(k):
            _edge(frac, vectors, atoms[s, 0], offsets[s, 0], atoms[s, j + 1], offsets[s, j + 1], e[j])
        out[s] = _centre(e, k, c)
    return out


@njit(cache=True, error_model="numpy")
def attach(frac, vectors, atoms, offsets, values, face_of, own):
    """Alpha values of the facets of the simplices ``atoms``/``offsets`` (with ``values``):
    facet ``face_of[s, j]`` (vertex j of s left out) takes its ``own`` smallest circumradius²
    if no coface vertex lies inside its smallest circumsphere, else the least coface value."""
    nf = own.shape[0]
    s_count, k1 = atoms.shape[0], atoms.shape[1]
    attached = np.zeros(nf, dtype=np.bool_)
    lowest = np.full(nf, np.inf)
    p = np.zeros((4, 3))
    e = np.empty((3, 3))
    c = np.empty(3)
    for s in range(s_count):
        for j in range(1, k1):
            _edge(frac, vectors, atoms[s, 0], offsets[s, 0], atoms[s, j], offsets[s, j], p[j])
        for j in range(k1):
            f = face_of[s, j]
            if values[s] < lowest[f]:
                lowest[f] = values[s]
            if attached[f]:
                continue
            base = 1 if j == 0 else 0
            m = 0
            for v in range(k1):
                if v != j and v != base:
                    for i in range(3):
                        e[m, i] = p[v, i] - p[base, i]
                    m += 1
            r2 = _centre(e, m, c)
            d2 = 0.0
            for i in range(3):
                d = p[j, i] - p[base, i] - c[i]
                d2 += d * d
            if d2 < r2:
                attached[f] = True
    out = np.empty(nf)
    for f in range(nf):
        out[f] = lowest[f] if attached[f] else own[f]
    return out


@njit(cache=True, error_model="numpy")
def cospherical(simplices, neighbors, index, first, xyz, centre, r2, tol):
    """Whether the far vertex of a neighbour of any tetrahedron ``simplices[index]`` (centre
    relative to its point ``first``) lies on its circumsphere (relative tolerance ``tol``):
    where the Delaunay triangulation is not unique."""
    for i in range(index.shape[0]):
        s = index[i]
        for j in range(4):
            nb = neighbors[s, j]
            if nb < 0:
                continue
            for v in range(4):
                q = simplices[nb, v]
                mine = False
                for w in range(4):
                    if simplices[s, w] == q:
                        mine = True
                if not mine:
                    d2 = 0.0
                    for k in range(3):
                        d = xyz[q, k] - xyz[first[i], k] - centre[i, k]
                        d2 += d * d
                    if abs(d2 - r2[i]) <= tol * r2[i]:
                        return True
    return False
