"""Turn a pytest-benchmark JSON file into the Markdown tables of bench/RESULTS.md.

    python bench/make_results.py runs/bench.json > table.md

Rows are grouped by benchmark; engine rows show the speed-up over the dense
reference measured in the same run (same shape and mode).
"""
import json
import sys
from collections import defaultdict


def fmt_s(x):
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def main(path):
    data = json.load(open(path))
    print(f"Machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"{data['machine_info'].get('cpu', {}).get('count', '?')} logical CPUs; "
          f"commit {data.get('commit_info', {}).get('id', '?')[:10]}\n")
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["name"].split("[")[0]].append(b)
    for name, rows in groups.items():
        print(f"### {name}\n")
        ref = {}
        for b in rows:
            e = b["extra_info"]
            if e.get("backend") == "dense":
                ref[(e.get("mode"), e.get("n"), e.get("d"))] = b["stats"]["min"]
        cols = ["mode", "n", "d", "backend", "min time", "pairs/s", "GFLOP/s", "of matmul", "vs dense", "peak RSS"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for b in sorted(rows, key=lambda b: (str(b["extra_info"].get("mode")), b["extra_info"].get("n", 0),
                                             b["extra_info"].get("d", 0), str(b["extra_info"].get("backend")))):
            e, t = b["extra_info"], b["stats"]["min"]
            r = ref.get((e.get("mode"), e.get("n"), e.get("d")))
            speed = f"{r / t:.1f}x" if r and e.get("backend") != "dense" else ""
            t_shown = e.get("seconds", t)
            print("| " + " | ".join([
                str(e.get("mode", "fwd+bwd" if e.get("grad") else "fwd")), str(e.get("n", "")), str(e.get("d", "")),
                str(e.get("backend", e.get("stat", ""))), fmt_s(t_shown),
                f"{e['pairs_per_s']:.3g}" if "pairs_per_s" in e else "",
                f"{e['gflops']:.1f}" if e.get("gflops") else "",
                f"{e['gflops_vs_matmul']:.0%}" if e.get("gflops_vs_matmul") else "",
                speed, f"{e['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in e else ""]) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
