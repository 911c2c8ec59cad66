// weightctl quantize IN OUT --scheme S [--ignore ...] [--nonfinite ...]: an FP8
// checkpoint on disk, byte for byte what a load of IN with the same options holds.
#include <chrono>
#include <cstdio>

#include "base/byte_size.h"
#include "base/duration_text.h"
#include "client/weightctl/checkpoint_quantizer.h"
#include "client/weightctl/cli.h"
#include "client/weightctl/progress_printer.h"

namespace weightd::ctl {

int RunQuantize(const CliOptions& options, const Args& args) {
  if (args.size() != 2) {
    return Usage("weightctl quantize IN OUT [--scheme per-tensor|per-channel|block|none] [--ignore ...] "
                 "[--nonfinite fail|saturate] [--layout checkpoint|vllm]");
  }
  QuantizeOptions quantize;
  auto scheme = ParseScheme(options.scheme);
  if (!scheme.ok()) return ReportError(scheme.status());
  auto policy = ParseNonFinite(options.nonfinite);
  if (!policy.ok()) return ReportError(policy.status());
  quantize.scheme = *scheme;
  quantize.policy = *policy == v1::NONFINITE_SATURATE ? kernels::NonFinitePolicy::kSaturate
                                                      : kernels::NonFinitePolicy::kFail;
  quantize.ignore = options.ignore;
  auto layout = ParseLayout(options.layout);
  if (!layout.ok()) return ReportError(layout.status());
  quantize.layout = *layout;

  using Clock = std::chrono::steady_clock;
  const Clock::time_point started = Clock::now();
  Clock::time_point last_drawn;
  ProgressPrinter printer(options.progress);
  quantize.progress = [&](uint64_t bytes, uint64_t total_bytes, uint32_t tensors, uint32_t total_tensors) {
    const Clock::time_point now = Clock::now();
    if (tensors != total_tensors && now - last_drawn < std::chrono::milliseconds(100)) return;
    last_drawn = now;
    v1::LoadEvent event;
    event.set_phase(tensors == total_tensors ? v1::PHASE_READY : v1::PHASE_LOADING);
    event.set_bytes_done(bytes);
    event.set_bytes_total(total_bytes);
    event.set_tensors_done(tensors);
    event.set_tensors_total(total_tensors);
    const double seconds = std::chrono::duration<double>(now - started).count();
    event.set_bytes_per_second(seconds > 0 ? static_cast<double>(bytes) / seconds : 0);
    printer.Update(event);
  };
  auto summary = QuantizeCheckpoint(args[0], args[1], quantize);
  printer.Finish();
  if (!summary.ok()) return ReportError(summary.status());
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("quantized %s -> %s: %u tensors (%u to FP8), %s -> %s in %s; wrote", args[0].c_str(),
              args[1].c_str(), summary->tensors, summary->quantized, FormatByteSize(summary->source_bytes).c_str(),
              FormatByteSize(summary->output_bytes).c_str(), FormatDuration(seconds).c_str());
  for (const std::string& file : summary->files) std::printf(" %s", file.c_str());
  std::printf("\n");
  return 0;
}

}  // namespace weightd::ctl
