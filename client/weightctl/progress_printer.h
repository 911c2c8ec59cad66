// Renders a load's progress events on stderr: a redrawn bar on a terminal, one
// line per phase otherwise (logs, CI).
// Not thread-safe: one printer per load stream.
#pragma once

#include "weightd/v1/loader.pb.h"

namespace weightd::ctl {

class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool enabled);
  void Update(const v1::LoadEvent& event);
  // Ends the bar's line.
  void Finish();

 private:
  bool enabled_;
  bool terminal_;
  bool drawn_ = false;
  v1::Phase last_phase_ = v1::PHASE_UNSPECIFIED;
};

}  // namespace weightd::ctl
