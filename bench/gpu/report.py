"""results.json -> the markdown table of ratios (suite.py; also: python3 report.py results.json)."""
import json
import sys

MIB = 1 << 20


def _mib(n):
    return "%.0f MiB" % (n / MIB) if isinstance(n, (int, float)) else "n/a"


def _ratio(num, den, fmt="%.2fx"):
    return fmt % (num / den) if num and den else "n/a"


def _footprint(run):
    """FP8 footprint: resident bytes for weightd, FP8 tensor bytes for the baselines."""
    return run.get("resident_bytes") or run.get("fp8_bytes")


def _load_row(name, run):
    if not run:
        return "| %s | not run | | | | |" % name
    if run.get("skipped") or run.get("failed"):
        return "| %s | skipped: %s | | | | |" % (name, run.get("skipped") or "failed")
    fp8 = _footprint(run)
    growth = run.get("peak_growth_bytes")
    over = growth - fp8 if growth is not None and fp8 and not run.get("oom") else None
    state = "**out of memory** (%s stage, %s loaded)" % (run.get("stage"), _mib(run.get("bf16_bytes"))) \
        if run.get("oom") else "%.2f s" % run["wall_seconds"]
    source = " (daemon's count)" if run.get("peak_source") == "daemon" else ""
    return "| %s | %s | %s | %s | %s | %s |" % (
        name, state, _mib(growth) + source, _mib(fp8), _mib(over) if over is not None else "n/a",
        _mib(run.get("max_allocated_bytes")) if "max_allocated_bytes" in run else _mib(run.get("daemon_peak_bytes")))


def _load_table(title, runs, suffix, weightd_key):
    w, a, b = runs.get(weightd_key), runs.get("baseline_a_" + suffix), runs.get("baseline_b_" + suffix)
    lines = ["### " + title, "",
             "| run | wall time | peak growth (driver) | FP8 footprint | peak over FP8 | allocator / daemon peak |",
             "|---|---|---|---|---|---|",
             _load_row("weightd", w), _load_row("(a) load all, then quantize", a),
             _load_row("(b) quantize per tensor", b), ""]
    if w and b and not b.get("skipped") and not b.get("oom") and w.get("wall_seconds"):
        lines.append("weightd vs (b): **%s faster** end to end." % _ratio(b.get("wall_seconds"), w["wall_seconds"]))
    if b and b.get("largest_tensor_bytes"):
        lines.append("Largest BF16 tensor: %s." % _mib(b["largest_tensor_bytes"]))
    lines.append("")
    return lines


def markdown(results):
    runs = results.get("runs", {})
    lines = ["## Results (%s mode, %s backend, %.0f s)" % (results.get("mode"), results.get("backend"),
                                                          results.get("seconds", 0)), ""]
    lines += _load_table("8B-shaped from local disk, warm page cache", runs, "local", "weightd_local")
    if "weightd_local_cold" in runs:
        lines += _load_table("8B-shaped from local disk, cold page cache (files evicted before each run; "
                             "(a) not run)", runs, "local_cold", "weightd_local_cold")
    cap = results.get("big_cap_gib")
    lines += _load_table("70B-shaped pushed from memory (baselines capped at %s GiB)" % cap, runs, "big",
                         "weightd_big")
    lines += ["### gRPC push vs raw TCP loopback, same bytes, same streams", "",
              "| streams | push GB/s | TCP GB/s | push / TCP |", "|---|---|---|---|"]
    for key in sorted(k for k in runs if k.startswith("weightd_push_")):
        run = runs[key]
        tcp = run.get("tcp", {}).get("gbps")
        lines.append("| %s | %.2f | %s | %s |" % (run.get("streams"), run.get("gbps", 0),
                                                 "%.2f" % tcp if tcp else "n/a", _ratio(run.get("gbps"), tcp, "%.2f")))
    lines += ["", "### Re-attach (attach + map every allocation)", "",
              "| model | first attach of the process ms | then: attaches | median ms | p99 ms |", "|---|---|---|---|---|"]
    for key, name in (("attach_local", "8B-shaped"), ("attach_big", "70B-shaped")):
        run = runs.get(key)
        if run:
            first = "%.2f" % run["first_ms"] if "first_ms" in run else "n/a"
            lines.append("| %s | %s | %d | %.2f | %.2f |" % (name, first, run["iterations"], run["median_ms"],
                                                            run["p99_ms"]))
    check = results.get("push_equals_written")
    if check:
        lines += ["", "Pushed bytes equal written bytes (exports compared): %s" % ("yes" if check["ok"] else "NO")]
    for step, error in results.get("errors", {}).items():
        lines += ["", "**%s failed**: `%s`" % (step, error.splitlines()[-1] if error else "")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))))
