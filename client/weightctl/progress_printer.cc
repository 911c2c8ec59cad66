#include "client/weightctl/progress_printer.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "base/byte_size.h"
#include "base/duration_text.h"

namespace weightd::ctl {
namespace {

const char* PhaseName(v1::Phase phase) {
  switch (phase) {
    case v1::PHASE_WAITING_FOR_HEADERS: return "waiting for headers";
    case v1::PHASE_PLANNED: return "planned";
    case v1::PHASE_LOADING: return "loading";
    case v1::PHASE_READY: return "ready";
    default: return "starting";
  }
}

}  // namespace

ProgressPrinter::ProgressPrinter(bool enabled) : enabled_(enabled), terminal_(::isatty(STDERR_FILENO) == 1) {}

void ProgressPrinter::Update(const v1::LoadEvent& event) {
  if (!enabled_) return;
  std::string done = FormatByteSize(event.bytes_done());
  std::string total = FormatByteSize(event.bytes_total());
  std::string rate = FormatByteSize(static_cast<uint64_t>(event.bytes_per_second()));
  if (terminal_) {
    constexpr int kWidth = 30;
    double fraction = event.bytes_total() ? static_cast<double>(event.bytes_done()) / event.bytes_total() : 0;
    int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '=');
    bar.resize(kWidth, ' ');
    std::string eta;
    if (event.bytes_per_second() > 0 && event.bytes_total() > event.bytes_done()) {
      eta = "  ETA " + FormatDuration((event.bytes_total() - event.bytes_done()) / event.bytes_per_second());
    }
    std::fprintf(stderr, "\r\033[K%-19s [%s] %5.1f%% %s / %s  %s/s  tensors %u/%u%s", PhaseName(event.phase()),
                 bar.c_str(), fraction * 100, done.c_str(), total.c_str(), rate.c_str(), event.tensors_done(),
                 event.tensors_total(), eta.c_str());
    drawn_ = true;
  } else if (event.phase() != last_phase_) {
    std::fprintf(stderr, "%s: %s / %s, tensors %u/%u\n", PhaseName(event.phase()), done.c_str(), total.c_str(),
                 event.tensors_done(), event.tensors_total());
  }
  last_phase_ = event.phase();
}

void ProgressPrinter::Finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace weightd::ctl
