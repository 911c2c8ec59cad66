#include "services/device/parked_tensor.h"

#include <algorithm>

namespace weightd {

uint64_t ParkableRows(kernels::DType dtype, uint64_t rows) {
  const uint64_t element = kernels::DTypeSize(dtype);
  if (element < 2 || rows < 2) return 0;
  return rows / element;
}

std::vector<ParkedRun> ParkedRuns(uint64_t rows, uint64_t max_rows) {
  std::vector<ParkedRun> runs;
  const uint64_t step = std::max<uint64_t>(1, max_rows);
  for (uint64_t begin = 0; begin < rows;) {
    // A run [begin, end) in place needs end <= 2 * begin: its codes then overwrite
    // only parked bytes of rows before `begin`, converted already.
    const uint64_t end = std::min(rows, begin + (begin == 0 ? step : std::min(step, begin)));
    runs.push_back({begin, end, begin > 0});
    begin = end;
  }
  return runs;
}

absl::Status CheckStoredAndCodes(uint64_t stored, uint64_t to, uint64_t elements, uint64_t element_size) {
  if (to != stored && to < stored + elements * element_size && stored < to + elements) {
    return absl::InternalError("stored bytes quantized onto a range that overlaps them");
  }
  return absl::OkStatus();
}

}  // namespace weightd
