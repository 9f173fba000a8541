"""Compiled (numba) inner loops of ``RandomForestPZ.estimate_pdf``: the walk of every row down every tree, and
the per-row leaf density (gather, shrink, kernel) with the per-tree predictions.

Why compiled: in NumPy these steps were the forest's whole cost in a survey-scale run, and they are per-object
work that vectorises badly. sklearn's ``apply`` walks one row at a time down one tree, so every level waits for
the previous node to load and mispredicts half its branches (~19 µs per row for 100 trees of ~25k nodes); the
gather of ~300 leaf entries per row, the shrink and the dense (nzbins × nzbins) kernel product took another
~19 µs per row as NumPy temporaries. Here each tree is walked by 32 rows at once, with a select instead of a
branch per level, and the density is built row by row in cache, one contiguous block per leaf (measured numbers
in the class docstring and BENCHMARKS.md).

Nothing here is approximate except the kernel's truncation at 9σ (a Gaussian's tail beyond it is below 2.6e-18
of its peak, under float64 rounding of the peak's own contribution).
"""

import numba
import numpy as np

#: rows walked down a tree together (enough independent node loads in flight to hide their latency, few enough
#: that the block's paths stay alike: rows are sorted by the first tree's prediction), and the levels walked
#: between the checks for rows that reached their leaf. Measured per row, 100 trees, one thread: 16 × 2
#: 10.3 µs, 32 × 4 8.4–9.4 µs, 64 × 4 9.0 µs, 128 × 8 9.6 µs, 8 × 1 15.7 µs.
WALK_BLOCK = 32
WALK_LEVELS = 4
#: the kernel is truncated where the Gaussian falls below exp(−KERNEL_SIGMAS² / 2) of its peak
KERNEL_SIGMAS = 9.0


def flatten_forest(trees, leaf_slot):
    """The fitted trees as one node table for :func:`walk`: ``(roots, nodes)``.

    ``roots`` (T,) int32 is the first node of every tree in the table; ``nodes`` (n_nodes, 4) int32 holds one
    16-byte record per node — (threshold as float32 bits, feature, left child, right child) — with global node
    numbers (tree t's nodes are offset by the node counts of the trees before it, the numbering of
    ``RandomForestPZ.node_offset_``), so that one cache line brings a whole node. A leaf is its own left and
    right child, so a walk that has reached it stays there, and its threshold slot holds ``leaf_slot[l]`` for
    leaf l (the forest's leaves numbered in node order, ``RandomForestPZ.leaf_index_``), which the walk
    reports: whatever a comparison with those bits gives, both branches lead back to the leaf.

    sklearn sends a row left when ``float64(x) <= threshold`` with float32 ``x`` and a float64 threshold;
    rounding the threshold *down* to float32 gives exactly the same decision for every float32 ``x`` (x ≤ t
    ⟺ x ≤ the largest float32 ≤ t), so the walk compares float32 to float32.
    """
    counts = np.array([t.node_count for t in trees], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nodes = np.empty((int(counts.sum()), 4), dtype=np.int32)
    thr = np.empty(nodes.shape[0], dtype=np.float64)
    for t, off in zip(trees, offsets):
        sl = slice(off, off + t.node_count)
        leaf = t.children_left == -1
        own = np.arange(off, off + t.node_count, dtype=np.int32)
        nodes[sl, 1] = np.where(leaf, 0, t.feature)
        nodes[sl, 2] = np.where(leaf, own, t.children_left + off)
        nodes[sl, 3] = np.where(leaf, own, t.children_right + off)
        thr[sl] = np.where(leaf, 0.0, t.threshold)
    thr32 = thr.astype(np.float32)
    up = thr32.astype(np.float64) > thr  # rounded up: step down to the float32 below
    thr32[up] = np.nextafter(thr32[up], np.float32(-np.inf))
    nodes.view(np.float32)[:, 0] = thr32
    is_leaf = nodes[:, 2] == np.arange(nodes.shape[0])
    nodes[is_leaf, 0] = leaf_slot
    return offsets.astype(np.int32), nodes


def leaf_blocks(leaf_value, leaf_pdf):
    """Every leaf's data for :func:`leaf_density` in one contiguous block: ``(offsets, blocks)``.

    ``blocks`` is an int32 array; leaf l's block starts at the even index ``offsets[l]`` and holds its value
    (its tree's prediction; float64, two int32 slots), its number c of entries, then c (grid index, weight)
    pairs (int32, float32 bits) of its row of the CSR matrix ``leaf_pdf`` (one row per leaf), padded to an
    even length. A leaf is then one random read of ~1 cache line; held as three arrays (values, starts,
    entries), the density cost 1.5× as much on fresh rows. Raises ``OverflowError`` past 2³¹ slots (the walk
    reports offsets as int32): ~10⁹ leaf entries, far beyond any forest pzkit fits."""
    counts = np.diff(leaf_pdf.indptr).astype(np.int64)
    size = 3 + 2 * counts
    size += size % 2
    offsets = np.concatenate([[0], np.cumsum(size)[:-1]])
    total = int(size.sum())
    if total >= 2**31:
        raise OverflowError(f"the forest's leaf tables need {total} int32 slots, more than 2**31")
    blocks = np.zeros(total, dtype=np.int32)
    blocks.view(np.float64)[offsets // 2] = leaf_value
    blocks[offsets + 2] = counts
    first = np.repeat(offsets + 3, counts) + 2 * (np.arange(leaf_pdf.nnz) - np.repeat(leaf_pdf.indptr[:-1], counts))
    blocks[first] = leaf_pdf.indices
    blocks.view(np.float32)[first + 1] = leaf_pdf.data
    return offsets.astype(np.int32), blocks


@numba.njit(nogil=True, cache=True)
def walk(X, roots, nodes, out):
    """``out[i, t]`` = ``leaf_slot`` (:func:`flatten_forest`) of the leaf that row ``i`` of ``X`` (float32,
    C order) reaches in tree ``t``.
    Blocks of :data:`WALK_BLOCK` rows go down a tree together, :data:`WALK_LEVELS` levels between checks;
    rows that reach their leaf leave the block, so a block costs its rows' own depths, not the deepest one's."""
    n = X.shape[0]
    thresholds = nodes.view(np.float32)
    node = np.empty(WALK_BLOCK, np.int32)
    row = np.empty(WALK_BLOCK, np.int64)
    for t in range(roots.size):
        root = roots[t]
        for i0 in range(0, n, WALK_BLOCK):
            m = min(WALK_BLOCK, n - i0)
            for b in range(m):
                node[b] = root
                row[b] = i0 + b
            while m > 0:
                for _ in range(WALK_LEVELS):
                    for b in range(m):
                        nd = node[b]
                        right = X[row[b], nodes[nd, 1]] > thresholds[nd, 0]
                        node[b] = nodes[nd, 3] if right else nodes[nd, 2]
                kept = 0
                for b in range(m):
                    nd = node[b]
                    if nodes[nd, 2] == nd:
                        out[row[b], t] = nodes[nd, 0]
                    else:
                        node[kept] = nd
                        row[kept] = row[b]
                        kept += 1
                m = kept
    return out


def kernel_operands(K):
    """``(K, lo, hi)`` for :func:`leaf_density`: the kernel matrix and, for each row j, the columns
    [lo[j], hi[j]) where its Gaussian is above exp(−KERNEL_SIGMAS²/2) of the row's peak. ``K = None`` (no
    kernel) gives empty arrays, which the density takes to mean "no smoothing"."""
    if K is None:
        return np.empty((0, 0)), np.empty(0, np.int64), np.empty(0, np.int64)
    peak = K.max(axis=1, keepdims=True)
    live = K >= peak * np.exp(-0.5 * KERNEL_SIGMAS**2)
    lo = live.argmax(axis=1)
    hi = K.shape[1] - live[:, ::-1].argmax(axis=1)
    return K, lo.astype(np.int64), hi.astype(np.int64)


@numba.njit(nogil=True, cache=True)
def leaf_density(leaves, blocks, grid, spread, K, lo, hi, rows, out, zmean, zstd):
    """For every row i of ``leaves`` (n, T) — leaf block offsets from :func:`walk` — the forest density on the
    grid, into ``out[rows[i]]`` (``out``: (N, nzbins)), and the mean / standard deviation of the T trees'
    predictions into ``zmean[rows[i]]`` / ``zstd[rows[i]]`` (``blocks``: :func:`leaf_blocks`). Writing straight
    to the caller's rows saves a per-chunk output array and the copy back into input order.

    Per row: (1) the mean over trees of the leaves' redshift distributions, summed in tree order; (2) unless
    ``spread`` is 1, every grid point's mass moved to z̄ + spread·(z − z̄), z̄ the row's mean, and deposited
    linearly back on the grid; (3) unless ``K`` is empty, the product with the kernel matrix over its band
    [lo[j], hi[j]) of every grid point j that holds mass."""
    n, T = leaves.shape
    nz = grid.size
    step = (grid[nz - 1] - grid[0]) / (nz - 1)
    mix = np.empty(nz)
    shrunk = np.empty(nz)
    use_kernel = K.shape[0] == nz
    values = blocks.view(np.float64)
    weights = blocks.view(np.float32)
    for i in range(n):
        # the leaves' values first: T loads that do not wait for one another bring the T blocks (random reads
        # over the whole model) into cache for the sums
        s = 0.0
        for t in range(T):
            s += values[leaves[i, t] >> 1]
        mix[:] = 0.0
        for t in range(T):
            o = leaves[i, t]
            for e in range(o + 3, o + 3 + 2 * blocks[o + 2], 2):
                mix[blocks[e]] += weights[e + 1]
        mean = s / T
        v = 0.0
        for t in range(T):
            d = values[leaves[i, t] >> 1] - mean
            v += d * d
        r = rows[i]
        zmean[r] = mean
        zstd[r] = np.sqrt(v / T)
        total = 0.0
        for j in range(nz):
            mix[j] /= T
            total += mix[j]
        if spread != 1.0:
            zbar = 0.0
            for j in range(nz):
                mix[j] /= total
                zbar += mix[j] * grid[j]
            shrunk[:] = 0.0
            for j in range(nz):
                p = mix[j]
                if p == 0.0:
                    continue
                pos = ((zbar + spread * (grid[j] - zbar)) - grid[0]) / step
                k = min(max(int(np.floor(pos)), 0), nz - 2)
                f = min(max(pos - k, 0.0), 1.0)
                shrunk[k] += p * (1.0 - f)
                shrunk[k + 1] += p * f
            src = shrunk
        else:
            src = mix
        row = out[r]
        if use_kernel:
            row[:] = 0.0
            for j in range(nz):
                p = src[j]
                if p == 0.0:
                    continue
                for col in range(lo[j], hi[j]):
                    row[col] += p * K[j, col]
        else:
            row[:] = src
    return out
