"""Joins the flow and torch JSON lines into a markdown table (median seconds, GFLOP/s, ratio)."""
import json
import sys

flow = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
torch = {r["name"]: r for r in map(json.loads, open(sys.argv[2]))}
memory = {n: (r, torch.get(n)) for n, r in flow.items() if "peak_mib" in r}
# The third argument: a thread count, or where it ran (e.g. GPU).
where = f"{sys.argv[3]} threads" if sys.argv[3].isdigit() else sys.argv[3]
print(f"\n| benchmark ({where}) | flow median s | torch median s | flow GFLOP/s | torch GFLOP/s | flow speed / torch |")
print("|---|---|---|---|---|---|")
for name, f in flow.items():
    t = torch.get(name)
    if t is None or name in memory:
        continue
    gf = f"{f['gflops']:.1f}" if f.get("gflops") else "-"
    gt = f"{t['gflops']:.1f}" if t.get("gflops") else "-"
    print(f"| {name} | {f['median_s']:.3f} | {t['median_s']:.3f} | {gf} | {gt} | {t['median_s'] / f['median_s']:.2f}x |")
if memory:
    print("\n| memory (growth of peak RSS over two training iterations) | flow MiB | torch MiB | flow / torch |")
    print("|---|---|---|---|")
    for name, (f, t) in memory.items():
        tm = t["peak_mib"] if t else None
        ratio = f"{f['peak_mib'] / tm:.2f}" if tm else "-"
        print(f"| {name} | {f['peak_mib']:.0f} | {tm if tm is not None else '-'} | {ratio} |")
