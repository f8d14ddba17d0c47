"""Positive sets of AVID+CMA: the k rows of strongest cross-modal agreement.

For memory banks V, A [N, D] the positive set P_i of row i holds the k rows
j != i with the largest agreement rho_ij (docs/methods.md, "AVID+CMA"):
  consensus  min(v_i^T v_j, a_i^T a_j)   (the released choice)
  union      max(v_i^T v_j, a_i^T a_j)
  video      v_i^T v_j
  audio      a_i^T a_j
in decreasing order of rho, equal rho by increasing j. Row i is excluded by
its index, so an exact duplicate j of row i is a valid positive (the
reference drops the first hit of a top-(k+1) search instead, which is wrong
when duplicates or ties come first).

The search is exact and tiled. The rows are cut into T tiles of B rows and
rho is symmetric, so only the T (T + 1) / 2 tiles (a, c), c >= a, are
scored: tile (a, c) serves the rows of tile a (its columns are tile c's
rows) and the rows of tile c (columns: tile a's rows), half the matmuls of
a full search; no more than B x B scores exist at a time. Running a top-k
on every tile would cost more than the matmuls (tf.math.top_k takes ~5 us
per row for k = 32 on a CPU), so each tile is filtered and only the few
scores that can still enter P_i are kept:

* a per-row lower bound t_i of the final k-th largest rho_ij: the columns
  seen so far are dealt into k disjoint bins and t_i = min over bins of
  the bin's largest score (k distinct columns reach it, so the k-th
  largest does too). It rises as the search goes on;
* a score survives if it is >= t_i, found through the maxima of groups of
  16 consecutive rows or columns (`tf.where` on the surviving groups, then
  on their scores);
* a survivor is kept as an int64 key ordered by (rho, -j), so ranking keys
  puts equal rho at the lower index whatever order survivors are stored
  in, and every key of a row is distinct. When tile a has been scored
  against all tiles, each of its rows ranks its keys with one
  `tf.math.top_k`.

Every score of the final P_i is >= t_i when it is seen, so the result
equals a full search. A row that collects more than max(`_CANDIDATE_CAP`,
4 k) survivors (many exact ties) is cut to its top k, and later scores
must then beat the k-th strictly, which bounds memory for any input. With
random unit rows a row keeps about 4 k (1 + ln(N / B)) survivors (~500 for
N = 100,000, k = 32); those of rows whose tile comes later are held until
then, 16 bytes each (estimated ~0.4 GB at the peak for N = 100,000, ~7
GB for N = 1.8M).

The dense work of a tile (two matmuls, min/max, masks, group and bin
maxima, survivor counts) is one XLA cluster (~33 ms for B = 4000 on 2 CPU
cores, its two matmuls ~25 ms; ~20% faster than the same ops unfused);
the filtering after it needs dynamic shapes and runs in a TF graph loop
over the tiles c of a tile a. On 2 idle CPU cores N = 100,000, D = 128
takes ~16 s (benchmarks.cma_search measures it); the time grows as
N^2.

Precision: scores are float32 matmuls, so pairs whose agreements differ by
less than float32 rounding (~1e-7 to 1e-6 for D = 128) may be ordered
differently from an exact computation. On GPUs TensorFloat-32 (TF's
default for float32 matmuls) rounds the inputs to 10 mantissa bits,
errors of ~1e-3 that reorder many neighbours in a bank of a million rows
(and would break the exact integer sums the cluster does with a matmul);
the search turns TF32 off while it runs and restores the setting. That
costs ~7x the matmul time of TF32 on Ampere and later GPUs, affordable:
N = 1.8M is ~0.8 PFLOP of float32 matmuls, ~20 s at 40 TFLOP/s (an
estimate; not measured on a GPU).

Distribution: call `positive_sets` eagerly in the cross-replica context; it
runs once, on one device, and the caller assigns the result to a mirrored
variable, so every replica gets identical sets.
"""

import functools
import math

import numpy as np
import tensorflow as tf

from avid_tf.memory import memory_bank

AGREEMENTS = ("consensus", "union", "video", "audio")

# Rows per tile. On 2 idle CPU cores N = 100,000 takes 15.6-16.1 s with 4096
# (tiles of 4000, 1.9 GB peak RSS), 15.5 s with 8192 (2.6 GB), 17.1 s with
# 2048. On GPUs larger tiles amortise the ~50 small kernels of a tile (not
# measured).
_CPU_TILE = 4096
_GPU_TILE = 16384
_GROUP = 16
# Survivors a row may hold before it is cut to its top k (see the module
# docstring), at least 4 k; far above the ~500 expected for k = 32, so
# random banks never cut.
_CANDIDATE_CAP = 4096
_MAX_COLUMN = 2**31 - 1


def _rows(bank, name):
  """The rows of a bank argument as a float32 tensor [N, D]."""
  if isinstance(bank, memory_bank.MemoryBank):
    bank = bank.bank.value
  rows = tf.cast(tf.convert_to_tensor(bank), tf.float32)
  if rows.shape.rank != 2:
    raise ValueError(f"{name} must be a matrix [N, D], got shape "
                     f"{rows.shape}")
  return rows


def tile_size(num_rows, block_size=None, on_gpu=False):
  """Rows per tile B of a search of N rows.

  Tiles are evened out over the rows (N = 100,000 with 4096 gives 25 tiles
  of 4000), so the last one, which is shifted back to end at row N, repeats
  few rows. Tiles of 256 rows or more are rounded up to a multiple of 16,
  the width of the column groups.

  Args:
    num_rows: N.
    block_size: the `positive_sets` argument; None for the default.
    on_gpu: whether None means the GPU default.

  Returns:
    B <= N.

  Raises:
    ValueError: if block_size is not an int >= 1.
  """
  if block_size is None:
    block_size = _GPU_TILE if on_gpu else _CPU_TILE
  if not isinstance(block_size, (int, np.integer)) or block_size < 1:
    raise ValueError(f"block_size must be a positive int (rows of the "
                     f"square tiles), got {block_size!r}")
  size = math.ceil(num_rows / math.ceil(num_rows / min(block_size, num_rows)))
  if size >= 256:
    size = min(-(-size // _GROUP) * _GROUP, num_rows)
  return int(size)


def _agreement(agreement, queries, keys):
  video = audio = None
  if agreement != "audio":
    video = tf.matmul(queries[0], keys[0], transpose_b=True)
  if agreement != "video":
    audio = tf.matmul(queries[1], keys[1], transpose_b=True)
  if agreement == "consensus":
    return tf.minimum(video, audio)
  if agreement == "union":
    return tf.maximum(video, audio)
  return audio if video is None else video


def _raise_bounds(group_max, bins, threshold, tile, axis):
  """Deals group maxima into the bins and raises t_i.

  Group j of tile b goes to bin (b * G + j) mod k, so bins fill up even
  when a tile has fewer than k groups.

  Args:
    group_max: [R, G] (axis 1) or [G, R] (axis 0) group maxima of R rows.
    bins: [R, k].
    threshold: [R].
    tile: b.
    axis: the groups' axis of group_max.

  Returns:
    bins and threshold.
  """
  num_groups = group_max.shape[axis]
  num_bins = bins.shape[1]
  padding = [[0, 0], [0, 0]]
  padding[axis] = [0, -num_groups % num_bins]
  padded = tf.pad(group_max, padding, constant_values=-np.inf)
  if axis:
    tile_bins = tf.reduce_max(
        tf.reshape(padded, [padded.shape[0], -1, num_bins]), axis=1)
  else:
    tile_bins = tf.transpose(tf.reduce_max(
        tf.reshape(padded, [-1, num_bins, padded.shape[1]]), axis=0))
  shift = (tile * num_groups) % num_bins
  bins = tf.maximum(bins, tf.gather(
      tile_bins, (tf.range(num_bins) - shift) % num_bins, axis=1))
  return bins, tf.maximum(threshold, tf.reduce_min(bins, axis=1))


@tf.function(jit_compile=True)
def _tile_scores(queries, keys, row_start, key_start, query_tile, key_tile,
                 bounds, key_bounds, key_fill, *, agreement, group):
  """Scores tile (a, c) and does its dense filtering (one XLA cluster).

  Shapes do not depend on N, so one compilation serves every bank size.
  For the rows of tile c (the columns of the scores) it also counts, per
  group of g rows of tile a, the survivors and where the first goes in the
  row's list: most surviving groups hold one survivor, their maximum,
  which then needs no gather from the scores (TF gathers cost ~15 ns per
  value on a CPU, more than all the rest of a survivor's work).

  Args:
    queries: (video, audio) rows of tile a, each [B, D].
    keys: (video, audio) rows of tile c, each [B, D].
    row_start: bank index of the first row of tile a.
    key_start: bank index of the first row of tile c; the last tile is
      shifted back to end at N and its rows before c * B are masked.
    query_tile: a.
    key_tile: c.
    bounds: (bins [B, k], t [B]) of the rows of tile a.
    key_bounds: the same for the rows of tile c.
    key_fill: [B] survivors per row of tile c so far.
    agreement: one of AGREEMENTS.
    group: g, rows or columns per group (divides B).

  Returns:
    scores [B, B] (excluded pairs at -inf); for tile a's rows the surviving
    groups [B, G] and bounds; for tile c's rows, each [G, B], the surviving
    groups, survivors per group (packed with their offsets), first slot per
    group and the group maximum, then key_bounds and the new key_fill.
  """
  scores = _agreement(agreement, queries, keys)
  size = scores.shape[0]
  num_groups = size // group
  rows = row_start + tf.range(size)[:, None]
  columns = key_start + tf.range(size)[None, :]
  scores = tf.where((columns >= key_tile * size) & (columns != rows), scores,
                    -np.inf)
  group_max = tf.reduce_max(
      tf.reshape(scores, [size, num_groups, group]), axis=2)
  # Reductions over the g rows of a group as g slices: XLA's reduction
  # over a middle axis is ~4 ms slower per 4000 x 4000 tile on a CPU.
  blocks = tf.reshape(scores, [num_groups, group, size])
  rows_of = [blocks[:, offset, :] for offset in range(group)]
  key_max = functools.reduce(tf.maximum, rows_of)
  bounds = _raise_bounds(group_max, *bounds, key_tile, axis=1)
  key_bounds = _raise_bounds(key_max, *key_bounds, query_tile, axis=0)
  kept = (group_max >= bounds[1][:, None]) & (group_max > -np.inf)
  key_kept = (key_max >= key_bounds[1][None, :]) & (key_max > -np.inf)
  # Per group, the count of survivors (low byte) and the sum of their
  # offsets (above it: the offset of a lone survivor) in one sum.
  key_count = tf.add_n([
      tf.where((row >= key_bounds[1][None, :]) & (row > -np.inf),
               1 + 256 * offset, 0) for offset, row in enumerate(rows_of)])
  count = tf.cast(key_count % 256, tf.float32)
  # Exclusive cumsum over the groups as a product with a triangular
  # matrix (exact: float32 holds integers to 2^24; TF32 is off).
  earlier = tf.cast(tf.range(num_groups)[:, None]
                    > tf.range(num_groups)[None, :], tf.float32)
  key_slot = key_fill[None, :] + tf.cast(tf.matmul(earlier, count),
                                         tf.int32)
  key_fill = key_fill + tf.cast(tf.reduce_sum(count, axis=0), tf.int32)
  return (scores, kept, bounds, key_kept, key_count, key_slot, key_max,
          key_bounds, key_fill)


def _pack(values, columns):
  """Survivor keys ordered as (value, -column), int64.

  Ranking keys instead of values makes equal values go to the lower column
  whatever order the survivors are stored in. Negative floats are mapped
  one up, so that -0.0 and +0.0 tie.
  """
  bits = tf.bitcast(values, tf.int32)
  ordered = tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, _MAX_COLUMN) + 1,
                     bits)
  return (tf.cast(ordered, tf.int64) * 2**32
          + tf.cast(_MAX_COLUMN - columns, tf.int64))


def _unpack(keys):
  """(values, columns) of survivor keys."""
  ordered = tf.cast(tf.bitwise.right_shift(keys, 32), tf.int32)
  bits = tf.where(ordered < 0,
                  tf.bitwise.bitwise_xor(ordered - 1, _MAX_COLUMN), ordered)
  columns = tf.cast(tf.bitwise.bitwise_and(keys, 2**32 - 1), tf.int32)
  return tf.bitcast(bits, tf.float32), _MAX_COLUMN - columns


def _survivors(scores, kept, threshold, fill, start, group):
  """The scores >= their row's threshold, for the rows of tile a.

  Args:
    scores: [B, B] scores of tile (a, c).
    kept: [B, G], the groups whose maximum survives.
    threshold: [B].
    fill: [B] survivors per row so far.
    start: bank index of the first column.
    group: g.

  Returns:
    (rows, slots, keys), each [M], slot being the survivor's position in
    its row's list and key its `_pack`ed value and bank column; and the
    new fill.
  """
  size, num_groups = kept.shape
  kept = tf.cast(tf.where(kept), tf.int32)
  group_rows, group_ids = kept[:, 0], kept[:, 1]
  values = tf.gather(tf.reshape(scores, [size * num_groups, group]),
                     group_rows * num_groups + group_ids)
  row_threshold = tf.gather(threshold, group_rows)[:, None]
  kept = tf.cast(tf.where((values >= row_threshold) & (values > -np.inf)),
                 tf.int32)
  which, offset = kept[:, 0], kept[:, 1]
  rows = tf.gather(group_rows, which)
  # Survivors come in row order: a survivor's slot is its rank among its
  # row's.
  counts = tf.math.bincount(rows, minlength=size, maxlength=size)
  slots = (tf.gather(fill, rows) + tf.range(tf.size(rows))
           - tf.gather(tf.cumsum(counts, exclusive=True), rows))
  columns = start + tf.gather(group_ids, which) * group + offset
  keys = _pack(tf.gather_nd(values, kept), columns)
  return (rows, slots, keys), fill + counts


def _key_survivors(scores, kept, count, slot, maximum, threshold, start,
                   group):
  """The scores >= their row's threshold, for the rows of tile c.

  Args:
    scores: [B, B] scores of tile (a, c); tile c's rows are its columns.
    kept, count, slot, maximum: [G, B] per group of g rows of tile a and
      row of tile c, from `_tile_scores`.
    threshold: [B] of the rows of tile c.
    start: bank index of the first row of tile a.
    group: g.

  Returns:
    (rows, slots, keys), each [M], as `_survivors`.
  """
  size = kept.shape[1]
  kept = tf.cast(tf.where(kept), tf.int32)
  flat = kept[:, 0] * size + kept[:, 1]
  # One gather of (group, row, packed count, slot) per subset, not four.
  groups = tf.concat([kept, tf.stack(
      [tf.gather(tf.reshape(part, [-1]), flat) for part in (count, slot)],
      axis=1)], axis=1)
  count = tf.bitwise.bitwise_and(groups[:, 2], 255)
  one = tf.gather(groups, tf.where(count == 1)[:, 0])
  singles = (one[:, 1], one[:, 3], _pack(
      tf.gather(tf.reshape(maximum, [-1]), one[:, 0] * size + one[:, 1]),
      start + one[:, 0] * group + tf.bitwise.right_shift(one[:, 2], 8)))
  group_ids, rows, count, slot = tf.unstack(
      tf.gather(groups, tf.where(count > 1)[:, 0]), axis=1)
  count = tf.bitwise.bitwise_and(count, 255)
  query_rows = group_ids[:, None] * group + tf.range(group)[None, :]
  # int64: B^2 exceeds int32 from B = 46341.
  values = tf.gather(tf.reshape(scores, [-1]),
                     tf.cast(query_rows, tf.int64) * size
                     + tf.cast(rows[:, None], tf.int64))
  hits = tf.cast(tf.where((values >= tf.gather(threshold, rows)[:, None])
                          & (values > -np.inf)), tf.int32)
  which = hits[:, 0]
  # Hits come in group order, count of them per group.
  rank = tf.range(tf.size(which)) - tf.gather(
      tf.cumsum(count, exclusive=True), which)
  severals = (tf.gather(rows, which), tf.gather(slot, which) + rank, _pack(
      tf.gather_nd(values, hits),
      start + tf.gather(group_ids, which) * group + hits[:, 1]))
  return tuple(tf.concat(parts, axis=0)
               for parts in zip(singles, severals))


def _cut(survivors, fill, threshold, k):
  """Cuts each row to its top k survivors.

  A row left with k survivors then needs a score above the k-th (a later
  column loses a tie), hence the next float as its threshold.

  Returns:
    The kept survivors, min(fill, k), the threshold and the top-k columns
    [R, k] (meaningless past fill for rows with fewer than k survivors).
  """
  rows, slots, keys = survivors
  num_rows = tf.size(fill)
  shape = tf.stack([num_rows, tf.maximum(tf.reduce_max(fill), k)])
  dense = tf.tensor_scatter_nd_update(
      tf.fill(shape, tf.int64.min), tf.stack([rows, slots], axis=1), keys)
  top = tf.math.top_k(dense, k).values
  values, columns = _unpack(top)
  beaten = tf.math.nextafter(values[:, -1], np.inf)
  threshold = tf.where(fill >= k, tf.maximum(threshold, beaten), threshold)
  keep = tf.range(k)[None, :] < fill[:, None]
  grid = tf.meshgrid(tf.range(num_rows), tf.range(k), indexing="ij")
  kept = tuple(tf.boolean_mask(part, keep) for part in (*grid, top))
  return kept, tf.minimum(fill, k), threshold, columns


def _sweep(queries, banks, query_tile, first_tile, bounds, fill, survivors,
           key_bounds, key_fill, *, agreement, group, cap):
  """Scores tiles (a, c), c = first_tile.., for the rows of tile a.

  Stops after the last tile or after the one that takes a row of tile a
  past `cap` survivors; either way tile a's rows are then cut to their top
  k.

  Args:
    queries: (video, audio) rows of tile a.
    banks: (video, audio) banks [N, D].
    query_tile: a.
    first_tile: c of the first tile to score (>= a; a is the diagonal).
    bounds: (bins, t) of tile a's rows.
    fill: [B] survivors per row of tile a.
    survivors: (rows, slots, keys) of tile a so far.
    key_bounds: (bins [T - a, B, k], t [T - a, B]) of tiles a..T-1; entry
      0 (tile a itself, whose columns the diagonal already serves) must
      have t = +inf so that it takes nothing.
    key_fill: [T - a, B], survivors per row of those tiles.
    agreement: one of AGREEMENTS.
    group: g.
    cap: survivors a row may hold (> k, so that every call scores a tile).

  Returns:
    The next c; tile a's bounds, fill, cut survivors and top-k columns;
    and for the tiles scored, in order, their key bounds and key fill
    (stacked) and their rows' new survivors (concatenated, with the count
    per tile).
  """
  size = queries[0].shape[0]
  k = bounds[0].shape[1]
  num_rows = tf.shape(banks[0])[0]
  num_tiles = (num_rows + size - 1) // size
  row_start = tf.minimum(query_tile * size, num_rows - size)

  def survivor_arrays():
    return [tf.TensorArray(dtype, size=0, dynamic_size=True,
                           infer_shape=False, element_shape=[None])
            for dtype in (tf.int32, tf.int32, tf.int64)]

  arrays = [array.write(0, part)
            for array, part in zip(survivor_arrays(), survivors)]
  key_arrays = survivor_arrays()
  key_states = [tf.TensorArray(dtype, size=0, dynamic_size=True)
                for dtype in (tf.float32, tf.float32, tf.int32, tf.int32)]

  def body(tile, bounds, fill, arrays, key_arrays, key_states):
    key_start = tf.minimum(tile * size, num_rows - size)
    keys = [tf.slice(bank, [key_start, 0], [size, -1]) for bank in banks]
    index = tile - query_tile
    (scores, kept, bounds, key_kept, key_count, key_slot, key_max,
     tile_key_bounds, tile_key_fill) = _tile_scores(
         queries, keys, row_start, key_start, query_tile, tile, bounds,
         (key_bounds[0][index], key_bounds[1][index]), key_fill[index],
         agreement=agreement, group=group)
    survivors, fill = _survivors(scores, kept, bounds[1], fill, key_start,
                                 group)
    arrays = [array.write(array.size(), part) for array, part in
              zip(arrays, survivors)]
    survivors = _key_survivors(scores, key_kept, key_count, key_slot,
                               key_max, tile_key_bounds[1], row_start, group)
    key_arrays = [array.write(array.size(), part) for array, part in
                  zip(key_arrays, survivors)]
    key_states = [array.write(array.size(), part) for array, part in
                  zip(key_states, (*tile_key_bounds, tile_key_fill,
                                   tf.size(survivors[0])))]
    return tile + 1, bounds, fill, arrays, key_arrays, key_states

  def more(tile, bounds, fill, *arrays):
    del bounds, arrays
    return (tile < num_tiles) & (tf.reduce_max(fill) <= cap)

  tile, bounds, fill, arrays, key_arrays, key_states = tf.while_loop(
      more, body, (first_tile, bounds, fill, arrays, key_arrays, key_states))
  survivors, fill, threshold, top_columns = _cut(
      tuple(array.concat() for array in arrays), fill, bounds[1], k)
  return (tile, (bounds[0], threshold), fill, survivors, top_columns,
          tuple(array.stack() for array in key_states),
          tuple(array.concat() for array in key_arrays))


def _cap(k):
  return max(_CANDIDATE_CAP, 4 * k)


@functools.lru_cache(maxsize=None)
def _graphs(agreement, size, k, dim):
  """(`_sweep`, `_cut`) as graphs for one tiling, for banks of any N."""
  def spec(shape, dtype=tf.float32):
    return tf.TensorSpec(shape, dtype)

  survivors = (spec([None], tf.int32),) * 2 + (spec([None], tf.int64),)
  bounds = (spec([size, k]), spec([size]))
  sweep = tf.function(
      functools.partial(_sweep, agreement=agreement,
                        group=math.gcd(size, _GROUP), cap=_cap(k)),
      input_signature=(
          (spec([size, dim]),) * 2, (spec([None, dim]),) * 2,
          spec([], tf.int32), spec([], tf.int32), bounds,
          spec([size], tf.int32), survivors,
          (spec([None, size, k]), spec([None, size])),
          spec([None, size], tf.int32)))
  cut = tf.function(
      functools.partial(_cut, k=k),
      input_signature=(survivors, spec([size], tf.int32), spec([size])))
  return sweep, cut


def _joined(chunks):
  return tuple(tf.concat(parts, axis=0) for parts in zip(*chunks))


def _search(banks, k, agreement, size):
  """P_i of every row, int32 [N, k]."""
  num_rows, dim = (int(n) for n in banks[0].shape)
  num_tiles = math.ceil(num_rows / size)
  sweep, cut = _graphs(agreement, size, k, dim)
  bins = [tf.fill([size, k], -np.inf)] * num_tiles
  threshold = [tf.fill([size], -np.inf)] * num_tiles
  fill = [tf.zeros([size], tf.int32)] * num_tiles
  no_survivors = (tf.zeros([0], tf.int32),) * 2 + (tf.zeros([0], tf.int64),)
  held = [[no_survivors] for _ in range(num_tiles)]
  takes_nothing = tf.fill([size], np.inf)
  sets = []
  for query_tile in range(num_tiles):
    row_start = min(query_tile * size, num_rows - size)
    queries = tuple(bank[row_start:row_start + size] for bank in banks)
    survivors = _joined(held[query_tile])
    held[query_tile] = None
    first = query_tile
    while first < num_tiles:
      # Entry 0 stands for tile a itself, whose rows the diagonal tile
      # serves as queries only.
      key_bounds = (tf.stack(bins[query_tile:]),
                    tf.stack([takes_nothing] + threshold[query_tile + 1:]))
      (last, (bins[query_tile], threshold[query_tile]), fill[query_tile],
       survivors, top_columns, key_states, key_survivors) = sweep(
           queries, banks, tf.constant(query_tile), tf.constant(first),
           (bins[query_tile], threshold[query_tile]), fill[query_tile],
           survivors, key_bounds, tf.stack(fill[query_tile:]))
      key_bins, key_threshold, key_fill, counts = key_states
      full = tf.reduce_max(key_fill, axis=1).numpy() > _cap(k)
      parts = zip(*(tf.split(part, counts.numpy()) for part in key_survivors))
      for offset, part in enumerate(parts):
        tile = first + offset
        if tile == query_tile:
          continue
        bins[tile], threshold[tile], fill[tile] = (
            key_bins[offset], key_threshold[offset], key_fill[offset])
        held[tile].append(part)
        if full[offset]:
          kept, fill[tile], threshold[tile], _ = cut(
              _joined(held[tile]), fill[tile], threshold[tile])
          held[tile] = [kept]
      first = int(last)
    sets.append(top_columns[query_tile * size - row_start:])
  return tf.concat(sets, axis=0)


def _default_device():
  return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def positive_sets(video_bank, audio_bank, k=32, agreement="consensus",
                  block_size=None, device=None):
  """Computes the positive set P_i of every memory row.

  Exact (up to float32 scores) and deterministic: ties go to the lower
  index, row i is excluded by index and duplicates of it may be positives.
  Memory: the banks, ~3 B^2 float32 scores per tile (~200 MB for the CPU
  default B = 4096, ~3.2 GB for the GPU default 16384), per-row bounds of
  4 (k + 2) bytes and the held survivors (module docstring); never N x N.
  TF32 is disabled during the search (see the module docstring).

  Args:
    video_bank: video memory rows V [N, D]: a MemoryBank, a variable, a
      tensor or an array (cast to float32). Unit rows are expected but not
      required.
    audio_bank: audio memory rows A [N, D], the same N and D.
    k: size of the sets, 1 <= k <= N - 1.
    agreement: one of AGREEMENTS.
    block_size: rows B per tile (square tiles: the search uses the
      symmetry of rho), evened out over N; None: 4096 on a CPU, 16384 on
      a GPU.
    device: device to run on; None: the first GPU, else the CPU.

  Returns:
    int32 tensor [N, k], row i the indices of P_i by decreasing agreement.

  Raises:
    ValueError: unknown agreement, k outside [1, N - 1], banks that are not
      matrices of the same shape or not finite, or block_size not an int
      >= 1.
    RuntimeError: when not called eagerly in the cross-replica context
      (inside `strategy.run` each replica would search on its own).
  """
  if agreement not in AGREEMENTS:
    raise ValueError(f"agreement must be one of {AGREEMENTS}, got "
                     f"'{agreement}'")
  context = tf.distribute.get_replica_context()
  if not tf.executing_eagerly() or (
      context is not None and context.num_replicas_in_sync > 1):
    raise RuntimeError("positive_sets must be called eagerly in the "
                       "cross-replica context (not in tf.function or "
                       "strategy.run)")
  device = device or _default_device()
  with tf.device(device):
    banks = (_rows(video_bank, "video_bank"), _rows(audio_bank, "audio_bank"))
    if banks[0].shape != banks[1].shape:
      raise ValueError(f"video_bank and audio_bank must have the same shape,"
                       f" got {banks[0].shape} and {banks[1].shape}")
    num_rows = int(banks[0].shape[0])
    if not 1 <= k <= num_rows - 1:
      raise ValueError(f"k must be in [1, N - 1] = [1, {num_rows - 1}], got "
                       f"{k}")
    if not all(bool(tf.reduce_all(tf.math.is_finite(bank)))
               for bank in banks):
      raise ValueError("memory banks must be finite")
    size = tile_size(num_rows, block_size, "GPU" in device.upper())
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
      return _search(banks, int(k), agreement, size)
    finally:
      tf.config.experimental.enable_tensor_float_32_execution(tf32)


def positive_set_precision(positive_sets, labels):
  """Mean fraction of P_i sharing row i's label: how semantic the sets are.

  Rows with label < 0 (unknown) are not scored; as members of a set they
  count as not sharing the label.

  Args:
    positive_sets: int [N, k] (tensor, variable or array).
    labels: int [N], the class of every memory row, < 0 for unknown.

  Returns:
    float, in [0, 1].

  Raises:
    ValueError: if the shapes do not match or no row is labelled.
  """
  sets = np.asarray(positive_sets)
  labels = np.asarray(labels)
  if sets.ndim != 2 or labels.shape != sets.shape[:1]:
    raise ValueError(f"positive_sets [N, k] and labels [N] must match, got "
                     f"{sets.shape} and {labels.shape}")
  known = labels >= 0
  if not known.any():
    raise ValueError("no row has a label (all labels < 0)")
  return float(np.mean(labels[sets[known]] == labels[known, None]))


def positive_set_precision_chance(labels, k=None):
  """`positive_set_precision` of sets drawn at random from the other rows.

  For row i that is (rows with i's label - 1) / (N - 1), the same for every
  set size, averaged over labelled rows: the baseline the precision of the
  agreement-based sets is read against.

  Args:
    labels: int [N], < 0 for unknown.
    k: set size; only checked against N (1 <= k <= N - 1) when given.

  Returns:
    float, in [0, 1].

  Raises:
    ValueError: if no row is labelled, N < 2 or k is out of range.
  """
  labels = np.asarray(labels)
  num_rows = labels.shape[0]
  if num_rows < 2 or (k is not None and not 1 <= k <= num_rows - 1):
    raise ValueError(f"need N >= 2 and k in [1, N - 1], got N={num_rows}, "
                     f"k={k}")
  known = labels[labels >= 0]
  if not known.size:
    raise ValueError("no row has a label (all labels < 0)")
  counts = np.bincount(known)
  return float(np.mean((counts[known] - 1) / (num_rows - 1)))
