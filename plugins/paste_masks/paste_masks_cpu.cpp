// paste_masks_cpu.cpp - CPU build of PasteMasks.
//
// A thin OpenMP loop around paste_masks_math.h, which holds all of the math; the CUDA kernel of
// the TensorRT plugin is an equally thin loop around the same header.  Plain C interface for ctypes; no torch, no Python C API.  Inputs are assumed valid: edgeseg/ops.py checks them.
//
// Work is proportional to the boxes' areas: only pixels inside a box's paste rectangle go
// through paste_pixel(); every other byte of the output is cleared with memset.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "common/cpu_threads.h"
#include "paste_masks/paste_masks_math.h"

extern "C" {

// Pastes K masks into K binary frame planes.
//   masks      float32 [num_masks, mask_size, mask_size], probabilities (logits if logits != 0)
//   boxes      float32 [num_masks, 4]: x0, y0, x1, y1 in frame pixels
//   output     uint8 [num_masks, height, width], fully written: 1 = foreground, 0 = background
//   mode       0 = torchvision (value > threshold), 1 = continuous (value >= threshold),
//              2 = zoom (matterport; value >= threshold; boxes rounded to integers)
//   threads    OpenMP threads; 0 = OpenMP's default
//   per_pixel  0: hoist the row / column taps and the sigmoid out of the pixel loop (fast path);
//              1: call paste_pixel() for every pixel, as the CUDA kernel does (for tests).
//              Both give identical bytes.
// Returns 0, or 1 on bad arguments (nothing written).
int32_t edgeseg_paste_masks_u8(const float* masks, int64_t num_masks, int64_t mask_size,
                               const float* boxes, int64_t height, int64_t width,
                               float threshold, int32_t mode, int32_t logits, int32_t threads,
                               int32_t per_pixel, uint8_t* output) {
  namespace pm = edgeseg::paste_masks;
  if (num_masks < 0 || mask_size < 1 || height < 0 || width < 0 ||
      (mode != pm::kModeTorchvision && mode != pm::kModeContinuous && mode != pm::kModeZoom) ||
      (num_masks > 0 && (masks == nullptr || boxes == nullptr || output == nullptr))) {
    return 1;
  }
  if (num_masks == 0 || height == 0 || width == 0) return 0;

  const int m = static_cast<int>(mask_size);
  const int bordered_size = m + 2;
  const int64_t mask_stride = mask_size * mask_size;
  const int64_t bordered_stride = static_cast<int64_t>(bordered_size) * bordered_size;
  const bool use_logits = logits != 0;
  const int nt = edgeseg::cpu_thread_count(threads);

  const bool zoom = mode == pm::kModeZoom;
  // Per-box parameters (in mode 2 with the mask's clip range: once per mask, both paths); for the
  // fast path also the bordered (sigmoid-applied) mask and the column taps of the box's rectangle
  // (AxisTap, or ZoomTap in mode 2).
  std::vector<pm::PasteBox> params(static_cast<size_t>(num_masks));
  std::vector<int64_t> tap_offset(static_cast<size_t>(num_masks) + 1, 0);
  for (int64_t k = 0; k < num_masks; ++k) {
    params[k] = pm::make_paste_box(boxes + 4 * k, m, static_cast<int>(height),
                                   static_cast<int>(width), mode);
    tap_offset[k + 1] = tap_offset[k] + (per_pixel ? 0 : params[k].x_end - params[k].x_begin);
  }
  if (zoom) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t k = 0; k < num_masks; ++k) {
      const pm::BorderedMask<float> source = {masks + k * mask_stride, m, use_logits};
      pm::mask_range(source, m, &params[k].clip_lo, &params[k].clip_hi);
    }
  }
  std::vector<float> bordered;
  std::vector<pm::AxisTap> column_taps(static_cast<size_t>(zoom ? 0 : tap_offset[num_masks]));
  std::vector<edgeseg::ZoomTap> zoom_column_taps(static_cast<size_t>(zoom ? tap_offset[num_masks] : 0));
  if (!per_pixel) {
    bordered.resize(static_cast<size_t>(num_masks * bordered_stride));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t k = 0; k < num_masks; ++k) {
      const pm::BorderedMask<float> source = {masks + k * mask_stride, m, use_logits};
      float* dst = bordered.data() + k * bordered_stride;
      for (int r = 0; r < bordered_size; ++r) {
        for (int c = 0; c < bordered_size; ++c) dst[r * bordered_size + c] = source(r, c);
      }
      const pm::PasteBox& p = params[k];
      for (int x = p.x_begin; x < p.x_end; ++x) {
        if (zoom) {
          zoom_column_taps[tap_offset[k] + (x - p.x_begin)] = pm::zoom_axis_tap(p, 0, x);
        } else {
          column_taps[tap_offset[k] + (x - p.x_begin)] = pm::axis_tap(p, m, mode, 0, x);
        }
      }
    }
  }

  const int64_t rows = num_masks * height;  // one job = one output row of one mask
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t job = 0; job < rows; ++job) {
    const int64_t k = job / height;
    const int y = static_cast<int>(job % height);
    const pm::PasteBox& p = params[k];
    uint8_t* row = output + job * width;
    if (y < p.y_begin || y >= p.y_end || p.x_begin >= p.x_end) {
      memset(row, 0, static_cast<size_t>(width));
      continue;
    }
    memset(row, 0, static_cast<size_t>(p.x_begin));
    memset(row + p.x_end, 0, static_cast<size_t>(width - p.x_end));
    if (per_pixel) {
      const float* mask = masks + k * mask_stride;
      for (int x = p.x_begin; x < p.x_end; ++x) {
        row[x] = pm::paste_pixel(mask, m, p, x, y, threshold, mode, use_logits);
      }
      continue;
    }
    const pm::DenseBorderedMask source = {bordered.data() + k * bordered_stride, bordered_size};
    if (zoom) {
      const edgeseg::ZoomTap ty = pm::zoom_axis_tap(p, 1, y);
      const edgeseg::ZoomTap* taps = zoom_column_taps.data() + tap_offset[k] - p.x_begin;
      for (int x = p.x_begin; x < p.x_end; ++x) {
        row[x] = pm::zoom_pixel_from_taps(source, ty, taps[x], p, threshold);
      }
      continue;
    }
    const pm::AxisTap ty = pm::axis_tap(p, m, mode, 1, y);
    if (!ty.inside) {
      memset(row + p.x_begin, 0, static_cast<size_t>(p.x_end - p.x_begin));
      continue;
    }
    const pm::AxisTap* taps = column_taps.data() + tap_offset[k] - p.x_begin;
    for (int x = p.x_begin; x < p.x_end; ++x) {
      row[x] = pm::pixel_from_taps(source, ty, taps[x], threshold, mode);
    }
  }
  return 0;
}

}  // extern "C"
