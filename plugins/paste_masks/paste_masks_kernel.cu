// paste_masks_kernel.cu - CUDA kernel and launcher of PasteMasks.
//
// Grid: blockIdx.y = mask k, blockIdx.x = a tile of consecutive output rows of that mask's plane
// (both grid-stride, so any K and any frame size fit).  Masks from the device-side count on are
// skipped: their blocks return at once, so an unused detection slot costs a block launch, not a
// frame-size plane of writes.  Per (mask, tile) a block
//   1. computes the box parameters once (thread 0, make_paste_box) into shared memory;
//   2. if the tile meets the box rectangle, stages the mask with its one-sample zero border,
//      sigmoid applied (BorderedMask), as (M + 2)^2 floats in shared memory; in mode 2 (zoom)
//      the block then reduces the staged samples to their min and max (warp shuffles, then one
//      value per warp in shared memory) into the box's clip range: each block that pastes part
//      of a mask computes the range itself, which costs M * M / 256 reads per thread and needs no
//      workspace or second launch;
//   3. writes the tile's bytes, a contiguous range of the plane, each exactly once: aligned 32-bit
//      words (plus at most 6 single bytes at the ends), pixels in the box rectangle from
//      axis_tap + pixel_from_taps (mode 2: zoom_axis_tap + zoom_pixel_from_taps, in double) on
//      the staged mask, every other pixel 0.
// The math is the CPU build's fast path (paste_masks_cpu.cpp): same functions, same order, so
// the same bytes.  Compile with --fmad=false (and without --use_fast_math); nvcc otherwise
// contracts the interpolation's a * b + c into fused multiply-adds and pixels right at the
// threshold can flip.  (With logits, the device expf may differ from the host's by an ulp.)
#include "paste_masks/paste_masks_kernel.h"

#include "common/cuda_check.h"
#include "paste_masks/paste_masks_math.h"

namespace edgeseg {
namespace paste_masks {
namespace detail {

constexpr int kThreads = 256;
// Output bytes one block iteration writes (whole rows, at least one).
constexpr int kTileBytes = 8192;
constexpr int64_t kMaxGridX = 65535;
constexpr int64_t kMaxGridY = 65535;  // CUDA's limit for gridDim.y
constexpr int kMaxSharedBytes = 48 * 1024;
constexpr int kWarps = kThreads / 32;
static_assert(kThreads % 32 == 0, "the range reduction works on whole warps");
static_assert((kMaxMaskSize + 2) * (kMaxMaskSize + 2) * static_cast<int>(sizeof(float)) +
                      static_cast<int>(sizeof(PasteBox)) +
                      2 * kWarps * static_cast<int>(sizeof(float)) <=
                  kMaxSharedBytes,
              "kMaxMaskSize: the staged mask must fit 48 KiB of shared memory");

template <typename T>
struct PasteArgs {
  const T* masks;
  const float* boxes;
  const int32_t* count;  // nullptr: all num_masks
  uint8_t* output;
  int64_t num_masks;
  int mask_size;
  int height;
  int width;
  float threshold;
  int mode;
  bool logits;
  int rows_per_tile;
  int num_tiles;
};

// Thread `first` of `step` threads: its share of the (M + 2) x (M + 2) bordered copy of `mask`.
template <typename T>
EDGESEG_HD void stage_bordered(const T* mask, int mask_size, bool logits, float* dst, int first,
                               int step) {
  const BorderedMask<T> src = {mask, mask_size, logits};
  const int side = mask_size + 2;
  for (int i = first; i < side * side; i += step) dst[i] = src(i / side, i % side);
}

// What pixel_at() needs: the staged mask and the box.
struct TileView {
  const float* bordered;  // (M + 2) x (M + 2), row-major
  PasteBox box;
  int mask_size;
  int mode;
  float threshold;
};

// Output byte of pixel (x, y): the CPU build's fast path, pixel by pixel.
EDGESEG_HD uint8_t pixel_at(const TileView& v, int y, int x) {
  const PasteBox& p = v.box;
  if (x < p.x_begin || x >= p.x_end || y < p.y_begin || y >= p.y_end) return 0;
  const DenseBorderedMask src = {v.bordered, v.mask_size + 2};
  if (v.mode == kModeZoom) {
    return zoom_pixel_from_taps(src, zoom_axis_tap(p, 1, y), zoom_axis_tap(p, 0, x), p, v.threshold);
  }
  const AxisTap ty = axis_tap(p, v.mask_size, v.mode, 1, y);
  const AxisTap tx = axis_tap(p, v.mask_size, v.mode, 0, x);
  return pixel_from_taps(src, ty, tx, v.threshold, v.mode);
}

// Thread `first` of `step` threads: its share of bytes [begin, end) of a `width`-wide plane
// (offsets y * width + x), each byte of the range written by exactly one thread, once.  With
// `active` false the range does not meet the box rectangle and is zero-filled.
EDGESEG_HD void write_span(const TileView& v, bool active, int width, uint8_t* plane,
                           uint32_t begin, uint32_t end, int first, int step) {
  uint8_t* p = plane + begin;
  const uint32_t len = end - begin;
  // Bytes up to the first 4-byte boundary and after the last whole word are single stores.
  uint32_t head = static_cast<uint32_t>((4u - (reinterpret_cast<uintptr_t>(p) & 3u)) & 3u);
  if (head > len) head = len;
  const uint32_t words = (len - head) / 4u;
  const uint32_t tail = head + 4u * words;
  const uint32_t singles = head + (len - tail);  // <= 6
  const uint32_t w = static_cast<uint32_t>(width);
  const uint32_t s = static_cast<uint32_t>(step);

  for (uint32_t j = static_cast<uint32_t>(first); j < singles; j += s) {
    const uint32_t o = j < head ? j : tail + (j - head);
    uint8_t byte = 0;
    if (active) {
      const uint32_t at = begin + o;
      byte = pixel_at(v, static_cast<int>(at / w), static_cast<int>(at % w));
    }
    p[o] = byte;
  }

  uint32_t* out = reinterpret_cast<uint32_t*>(p + head);
  for (uint32_t j = static_cast<uint32_t>(first); j < words; j += s) {
    uint32_t word = 0;
    if (active) {
      const uint32_t at = begin + head + 4u * j;
      uint32_t y = at / w;
      uint32_t x = at - y * w;
      for (uint32_t b = 0; b < 4u; ++b) {  // little-endian: byte b is bits 8b..8b+7
        word |= static_cast<uint32_t>(pixel_at(v, static_cast<int>(y), static_cast<int>(x)))
                << (8u * b);
        if (++x == w) {
          x = 0;
          ++y;
        }
      }
    }
    out[j] = word;
  }
}

// Mode 2: the min and max of the M x M samples staged in `bordered` (interior of the
// (M + 2) x (M + 2) copy) into box->clip_lo / clip_hi.  Called by every thread of the block
// after the staging barrier; returns after a barrier, with the range visible to all threads.
__device__ void reduce_mask_range(const float* bordered, int mask_size, float* warp_lo,
                                  float* warp_hi, PasteBox* box) {
  const int side = mask_size + 2;
  // Every thread starts from the empty range, neutral for threads without samples of their own;
  // NaN samples are skipped (hd_min / hd_max keep the first argument), as skimage's nanmin /
  // nanmax and the CPU build's mask_range do.  Seeding from a sample would let a NaN there
  // poison the range while NaNs elsewhere were ignored.
  float lo = INFINITY;
  float hi = -INFINITY;
  for (int i = static_cast<int>(threadIdx.x); i < mask_size * mask_size; i += blockDim.x) {
    const float s = bordered[(i / mask_size + 1) * side + (i % mask_size + 1)];
    lo = hd_min(lo, s);
    hi = hd_max(hi, s);
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    lo = hd_min(lo, __shfl_down_sync(0xffffffffu, lo, offset));
    hi = hd_max(hi, __shfl_down_sync(0xffffffffu, hi, offset));
  }
  const int warp = static_cast<int>(threadIdx.x) / 32;
  if (threadIdx.x % 32 == 0) {
    warp_lo[warp] = lo;
    warp_hi[warp] = hi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x) / 32; ++w) {
      lo = hd_min(lo, warp_lo[w]);
      hi = hd_max(hi, warp_hi[w]);
    }
    box->clip_lo = lo;
    box->clip_hi = hi;
  }
  __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(kThreads) paste_masks_kernel(const PasteArgs<T> a) {
  extern __shared__ float bordered[];
  __shared__ PasteBox shared_box;
  __shared__ float warp_lo[kWarps];
  __shared__ float warp_hi[kWarps];
  const int64_t mask_elems = static_cast<int64_t>(a.mask_size) * a.mask_size;
  const int64_t plane_bytes = static_cast<int64_t>(a.height) * a.width;
  int64_t live = a.num_masks;
  if (a.count != nullptr) {
    const int64_t c = *a.count;
    live = c < 0 ? 0 : (c < live ? c : live);
  }

  for (int64_t k = blockIdx.y; k < live; k += gridDim.y) {
    for (int tile = static_cast<int>(blockIdx.x); tile < a.num_tiles;
         tile += static_cast<int>(gridDim.x)) {
      if (threadIdx.x == 0) {
        float box[4];
        for (int i = 0; i < 4; ++i) box[i] = a.boxes[4 * k + i];
        shared_box = make_paste_box(box, a.mask_size, a.height, a.width, a.mode);
      }
      __syncthreads();
      const int y0 = tile * a.rows_per_tile;
      const int y1 = min(y0 + a.rows_per_tile, a.height);
      // Same value in every thread of the block, so the barriers below are reached by all or none.
      const bool active = shared_box.x_begin < shared_box.x_end && shared_box.y_begin < y1 &&
                          y0 < shared_box.y_end;
      if (active) {
        stage_bordered(a.masks + k * mask_elems, a.mask_size, a.logits, bordered,
                       static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
        __syncthreads();
        if (a.mode == kModeZoom) reduce_mask_range(bordered, a.mask_size, warp_lo, warp_hi, &shared_box);
      }
      const TileView v = {bordered, shared_box, a.mask_size, a.mode, a.threshold};
      write_span(v, active, a.width, a.output + k * plane_bytes,
                 static_cast<uint32_t>(y0) * static_cast<uint32_t>(a.width),
                 static_cast<uint32_t>(y1) * static_cast<uint32_t>(a.width),
                 static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x));
      __syncthreads();  // shared_box and bordered are rewritten by the next iteration
    }
  }
}

}  // namespace detail

template <typename T>
cudaError_t launch_paste_masks(const T* masks, const float* boxes, const int32_t* count,
                               int64_t num_masks, int mask_size, int height, int width,
                               float threshold, int mode, bool logits, uint8_t* output,
                               cudaStream_t stream) {
  int64_t plane_bytes = 0;
  if (num_masks < 0 || mask_size < 1 || mask_size > kMaxMaskSize || height < 0 || width < 0 ||
      (mode != kModeTorchvision && mode != kModeContinuous && mode != kModeZoom) ||
      !checked_mul(height, width, INT32_MAX, &plane_bytes)) {
    return cudaErrorInvalidValue;
  }
  if (num_masks == 0 || plane_bytes == 0) return cudaSuccess;
  if (masks == nullptr || boxes == nullptr || output == nullptr) return cudaErrorInvalidValue;

  detail::PasteArgs<T> args;
  args.masks = masks;
  args.boxes = boxes;
  args.count = count;
  args.output = output;
  args.num_masks = num_masks;
  args.mask_size = mask_size;
  args.height = height;
  args.width = width;
  args.threshold = threshold;
  args.mode = mode;
  args.logits = logits;
  args.rows_per_tile = width >= detail::kTileBytes ? 1 : detail::kTileBytes / width;
  if (args.rows_per_tile > height) args.rows_per_tile = height;
  args.num_tiles = (height + args.rows_per_tile - 1) / args.rows_per_tile;

  const dim3 grid(static_cast<unsigned int>(args.num_tiles < detail::kMaxGridX ? args.num_tiles
                                                                                : detail::kMaxGridX),
                  static_cast<unsigned int>(num_masks < detail::kMaxGridY ? num_masks
                                                                          : detail::kMaxGridY));
  const size_t shared_bytes =
      static_cast<size_t>(mask_size + 2) * static_cast<size_t>(mask_size + 2) * sizeof(float);
  detail::paste_masks_kernel<T><<<grid, detail::kThreads, shared_bytes, stream>>>(args);
  return cudaGetLastError();
}

template cudaError_t launch_paste_masks<float>(const float*, const float*, const int32_t*,
                                               int64_t, int, int, int, float, int, bool, uint8_t*,
                                               cudaStream_t);
template cudaError_t launch_paste_masks<__half>(const __half*, const float*, const int32_t*,
                                                int64_t, int, int, int, float, int, bool, uint8_t*,
                                                cudaStream_t);

}  // namespace paste_masks
}  // namespace edgeseg
