// A per-tensor scale needs the whole tensor's amax before its first code. Instead
// of reading the tensor on the host twice (once for the amax, once to copy it to
// the device), the first rows go to the device unquantized, parked in the
// tensor's own FP8 destination (which holds rows / element-size of them), their
// amax taken from the copy on the way; the host then takes the amax of the rest,
// the parked rows are quantized in place on the device, and the rest is quantized
// as it is copied. The host reads the parked rows once and the rest twice: for
// BF16, 1.5 reads per byte instead of 2. Same scale, same codes.
//
// In place: row r's codes land at bytes [r * cols, +cols) of the destination,
// over what parked rows r / element_size and on held. Rows are converted in
// order, in runs: the first run through a separate buffer, every later run
// [a, b) in place with b <= 2a, so no run writes bytes that it or a later run
// still reads. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace weightd {

// Rows of a `rows`-row tensor of `dtype` that its FP8 destination can park: rows /
// element size; 0 for 1-byte elements (nothing to gain) and 1-row tensors.
uint64_t ParkableRows(kernels::DType dtype, uint64_t rows);

// A run of parked rows converted by one step (ParkedRuns holds for any unit of whole
// elements: rows, or single elements where a step needs no whole rows).
struct ParkedRun {
  uint64_t begin = 0, end = 0;  // rows
  bool in_place = false;        // else through a separate buffer, then copied back
};

// The runs that convert `rows` parked rows, at most `max_rows` each (>= 1): the
// first through a buffer, each later one in place. Element sizes of 2 or more.
std::vector<ParkedRun> ParkedRuns(uint64_t rows, uint64_t max_rows);

// DeviceBackend::QuantizeStored's check: INTERNAL where the `elements` stored elements
// of `element_size` bytes at offset `stored` and their codes at `to` overlap without
// being in place (`to` == `stored`), which no order of conversion makes safe.
absl::Status CheckStoredAndCodes(uint64_t stored, uint64_t to, uint64_t elements, uint64_t element_size);

}  // namespace weightd
