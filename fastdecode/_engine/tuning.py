"""Every tuning constant of the engine, with the measurement behind it.

They set block sizes, thread teams and the choice between equivalent forms of a computation:
results never depend on the thread count, and the forms agree to rounding, so these constants
change speed and memory only (the block sizes can change the last bits of a sum: they are fixed
by the shapes, never by the thread count). The engine reads them as ``tuning.NAME`` at call
time, so that tests can change them.
"""

# --- GEMM blocks ------------------------------------------------------------------------------

#: Elements of the per-thread GEMM result buffer the blocked kernels aim at (2 MiB in float32),
#: so that a block's operands stay in cache however large the images or maps. Set with the GEMM
#: kernels; no measurement of other values was recorded.
GEMM_BLOCK_ELEMENTS = 1 << 19
#: GEMM width (columns) the blocked kernels aim at, wide enough for the BLAS's packed kernels.
#: Set with the GEMM kernels; no measurement of other values was recorded.
GEMM_WIDTH = 512
#: Below this many FLOPs a GEMM kernel runs on one thread: waking a team costs more than it
#: saves (set with the benchmark suite, on its small LeNet cases).
PARALLEL_MIN_FLOPS = 2e7
#: Arrays from this many elements are copied (transposed, padded) and transformed (Winograd
#: weights) by several threads; smaller ones by one (a threshold of the same kind as
#: PARALLEL_MIN_FLOPS; no measurement recorded).
PARALLEL_COPY_ELEMENTS = 1 << 16
#: Arrays from this many elements are checked for NaN and inf by the compiled, parallel scan;
#: smaller ones by numpy, which starts no threads (no measurement recorded).
PARALLEL_CHECK_ELEMENTS = 1 << 20

# --- work buffers -----------------------------------------------------------------------------

#: Largest work buffer kept between calls, per key and Python thread, outside a reusing scope
#: (:func:`fastdecode._engine.workspace.reuse`): the kernels' per-thread scratch (a few MiB)
#: stays allocated across calls and batches, larger arrays are released after each call (a
#: memory bound, not a speed setting).
SCRATCH_KEEP_BYTES = 32 * 2**20

# --- correlation ------------------------------------------------------------------------------

#: Output pixels per image from which the correlation writes its GEMM results straight into the
#: output planes (one GEMM per block of rows); below it, blocks of pixels span several images
#: (LeNet's decoded layer5 filters give one pixel per image: one GEMM over the whole dataset).
#: Set with the plane-wise kernel; no measurement of other values was recorded.
PLANES_MIN_PIXELS = 64

# --- substitution: phase-wise shifted GEMMs ---------------------------------------------------

#: GEMM rows per task of a phase-wise substitution, by itemsize: measured on VGG-16's layers
#: (fewer rows keep the GEMM's operands in cache, more rows pack the weights less often).
PHASED_GEMM_ROWS = {4: 512, 8: 1024}
#: Channels (GEMM columns) per task of a phase-wise substitution, at most (as GEMM_WIDTH).
PHASED_MAX_CHANNELS = 512
#: Tasks a phase-wise substitution aims at, at least, when its blocks allow it (several per
#: core, so that dynamic scheduling evens them out; no measurement recorded).
PHASED_MIN_TASKS = 8

# --- substitution: Winograd -------------------------------------------------------------------

#: Output tile m by (itemsize, r): in float32 the tiles whose points are 0, +-1 (rounding errors
#: within about twice those of the direct sums); in float64 4x4 tiles (errors about 1e-14 of the
#: output's range; in float32 they would reach 1e-5).
WINOGRAD_TILE = {(4, 3): 2, (8, 3): 4}
#: Winograd replaces the other forms when it does at most this fraction of their multiply-adds
#: (by itemsize) and the maps and the weights have at least WINOGRAD_MIN_CHANNELS channels: below
#: that, its transforms cost more than the products it saves (measured on VGG-16's layers).
WINOGRAD_MAX_WORK = {4: 0.6, 8: 0.35}
WINOGRAD_MIN_CHANNELS = 64
#: Weight of a Winograd product against a FLOP of the other forms when decode weighs the chain
#: against the layer recursion: the transforms run at memory speed and the GEMMs are smaller
#: (decoding VGG-16's conv5_3 in float32, both take the same time for about 52 filters; with
#: this weight decode changes to the recursion at 57, with the products counted once at 85).
WINOGRAD_COST = 2.0
#: Tasks a Winograd substitution aims at, at least, when its tiles allow it (no measurement
#: recorded).
WINOGRAD_MIN_TASKS = 4
#: Tiles per task (the GEMMs' rows) aimed at, channels per GEMM at most, and the per-thread
#: work buffer (transformed maps and products) that bounds the tiles per task (set with the
#: Winograd kernel on VGG-16's layers; no measurement of other values was recorded).
WINOGRAD_TILES = 256
WINOGRAD_CHANNELS = 512
WINOGRAD_SCRATCH_BYTES = 64 * 2**20
