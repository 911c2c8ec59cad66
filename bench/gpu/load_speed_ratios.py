#!/usr/bin/env python3
"""The load-speed goals of docs/performance.md (issue 19), read from one run's results:
warm 8B path loads against pinned host-to-device copies (each scheme, the worst round at the
daemon's defaults),
cold loads against the disk's sequential read by fio, and pushes against the TCP floor that
lands every byte in DRAM, at each stream count (the worst round). Prints a line per goal
and writes the same as JSON; exits 1 when a goal is missed or was not measured.
  bench/gpu/load_speed_ratios.py PATH_LOAD_BENCH_JSONL PUSH_BENCH_JSONL OUT_JSON
"""
import json
import sys

WARM, COLD, PUSH = 0.8, 0.9, 0.8


def at_defaults(row):
    """A path-load round with the daemon's defaults: its ring words set nothing but the log level."""
    return all(word.startswith("--log-level") for word in row.get("ring", "").split())


def rows(path):
    """The JSON lines of a results file; none where the benchmark wrote none (its goals read as not measured)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip().startswith("{")]
    except FileNotFoundError:
        return []


def main(path_jsonl, push_jsonl, out_json):
    goals = []
    path = rows(path_jsonl)
    for scheme in ("per-tensor", "per-channel", "block"):
        ratios = [r["ratio"] for r in path if not r.get("cold") and r.get("scheme") == scheme and at_defaults(r)]
        goals.append({"goal": f"warm 8B path load, {scheme}, of pinned H2D", "at_least": WARM,
                      "ratios": ratios, "worst": min(ratios) if ratios else None})
    for direct in ("true", "false"):
        ratios = [r["ratio_to_fio"] for r in path
                  if r.get("cold") and r.get("direct_cold_reads") == direct and r.get("ratio_to_fio") is not None]
        if ratios or direct == "true":
            goals.append({"goal": f"cold 8B path load (--direct-cold-reads={direct}), of fio", "at_least": COLD,
                          "ratios": ratios, "worst": min(ratios) if ratios else None})
    push = rows(push_jsonl)
    for streams in sorted({r["streams"] for r in push}) or [1, 4, 8]:
        ratios = [r["push_over_dram_tcp"] for r in push if r["streams"] == streams]
        goals.append({"goal": f"push, {streams} stream(s), of the DRAM-landing TCP floor", "at_least": PUSH,
                      "ratios": ratios, "worst": min(ratios) if ratios else None})
    for g in goals:
        g["met"] = g["worst"] is not None and g["worst"] >= g["at_least"]
        state = "met" if g["met"] else ("MISSED" if g["ratios"] else "NOT MEASURED")
        print(f"{state} {g['goal']}: worst {g['worst']} of {g['ratios']} "
              f"(goal >= {g['at_least']})")
    with open(out_json, "w") as f:
        json.dump(goals, f, indent=1)
    return 0 if all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
