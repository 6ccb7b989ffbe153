"""Plots make bench's results: CPU per poll, peak RSS and p99 latency against N.

plot.py RESULTS.jsonl OUT.png [BEFORE.jsonl]: with BEFORE (an earlier run's results),
its peak RSS and p99 are drawn faint beside the new ones."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    # The rows of one size are merged, later ones over earlier ones: a size run again
    # alone, or only some phases of it (--append), keeps what that run did not measure.
    by_n = {}
    for r in rows:
        by_n.setdefault(r["n"], {}).update(r)
    # Only sizes with the main phases are plotted.
    return [by_n[k] for k in sorted(by_n) if "steady" in by_n[k]]


rows = load(sys.argv[1])
before = load(sys.argv[3]) if len(sys.argv) > 3 else []
bn = [r["n"] for r in before]
n = [r["n"] for r in rows]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

ax = axes[0]
ax.plot(n, [r["steady"]["operator_cpu_per_poll_ms"] for r in rows], "o-", label="operator")
base = [(r["baseline"]["n"], r["baseline"]["cpu_per_sync_ms"]) for r in rows if "baseline" in r]
if base:
    ax.plot([b[0] for b in base], [b[1] for b in base], "s--", label="baseline script")
ax.set(xscale="log", yscale="log", xlabel="WorkerGroups (N)", ylabel="CPU ms per poll",
       title="CPU per poll")
ax.legend()

ax = axes[1]
ax.plot(n, [r["operator_peak_rss_mib"] for r in rows], "o-", label="operator peak RSS")
if before:
    ax.plot(bn, [r["operator_peak_rss_mib"] for r in before], "o:", alpha=0.4,
            label="peak RSS before")
ax.plot(n, [r["steady"]["operator_cores"] * 1000 for r in rows], "^-",
        label="operator millicores (steady)")
ax.set(xscale="log", xlabel="WorkerGroups (N)", ylabel="MiB / millicores",
       title="Memory and steady CPU")
ax.legend()

ax = axes[2]
ax.plot(n, [r["churn"]["latency_p99_s"] for r in rows], "o-", label="p99")
ax.plot(n, [r["churn"]["latency_p50_s"] for r in rows], "o--", label="p50")
if before:
    ax.plot(bn, [r["churn"]["latency_p99_s"] for r in before], "o:", alpha=0.4,
            label="p99 before")
ax.axhline(rows[0]["interval_s"] + 1, color="grey", ls=":", label="interval + 1 s")
ax.set(xscale="log", xlabel="WorkerGroups (N)", ylabel="seconds",
       title="Change at Vast to status")
ax.legend()

fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
print(f"wrote {sys.argv[2]}")
