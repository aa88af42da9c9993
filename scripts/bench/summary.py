#!/usr/bin/env python3
"""Prints the table of scripts/bench.sh from its JSON files and writes summary.json."""

import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def main(results):
    job = load(os.path.join(results, "job.json"))
    gateway = load(os.path.join(results, "gateway.json"))
    alternatives = load(os.path.join(results, "alternatives.json")) or []
    memory = {n: load(os.path.join(results, f"memory-{n}.json")) for n in (1000000, 10000000)}
    summary = {"cores": os.cpu_count(), "build": job and job["build"]}
    print()
    print(f"silt bench summary ({job['build']} build, {os.cpu_count()} cores; one core unless said)")
    print(f"{'':44} {'events/s':>12} {'CPU s/M':>9} {'silt is':>9} {'target':>8}")
    silt_eps = job["job_events_per_sec"]
    print(
        f"{'silt job (' + str(job['events']) + ' events, ' + str(round(job['avg_body_bytes'])) + '-byte bodies)':44}"
        f" {silt_eps:12.0f} {job['cpu_seconds_per_million']:9.3f} {'':>9} {'<=0.5':>8}"
    )
    print(f"{'Parquet-write limit (same batches)':44} {job['limit_events_per_sec']:12.0f}")
    summary["job"] = {
        "events_per_sec": silt_eps,
        "cpu_seconds_per_million": job["cpu_seconds_per_million"],
        "job_to_limit": job["job_to_limit"],
        "stages": job["stages"],
    }
    targets = {"fastavro": 10.0, "duckdb": 2.5, "spark": 30.0}
    labels = {
        "fastavro": "fastavro+pyarrow",
        "duckdb": "DuckDB (JSON lines, threads=1)",
        "spark": "Spark Structured Streaming local[1]",
    }
    summary["alternatives"] = {}
    for a in alternatives:
        name = a["name"]
        if "error" in a:
            print(f"{labels[name]:44} failed: {a['error']}")
            continue
        ratio = silt_eps / a["events_per_sec_per_core"]
        summary["alternatives"][name] = dict(a, silt_ratio=ratio)
        print(
            f"{labels[name]:44} {a['events_per_sec_per_core']:12.0f} {a['cpu_seconds_per_million']:9.3f}"
            f" {ratio:8.1f}x {targets[name]:7.1f}x"
        )
    print(f"job / limit: {job['job_to_limit']:.2f} (target >= 0.6)")
    stages = sorted(job["stages"].items(), key=lambda kv: -kv[1])
    print("job stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages))
    if all(memory.values()):
        a, b = (memory[n]["peak_rss_bytes"] / 1e6 for n in (1000000, 10000000))
        summary["memory"] = {"peak_rss_mb_1m": a, "peak_rss_mb_10m": b}
        print(f"peak RSS: {a:.0f} MB at 1M events, {b:.0f} MB at 10M ({b / a:.2f}x; target: flat)")
    if gateway and gateway.get("gateway"):
        g = gateway["gateway"]
        summary["gateway"] = g
        print(
            f"gateway ({os.cpu_count()} cores, {g['batch']}-event JSON, {g['connections']} connections):"
            f" {g['events_per_sec']:.0f} events/s, p50 {g['p50_ms']:.1f} ms, p99 {g['p99_ms']:.1f} ms,"
            f" {g['cpu_seconds_per_million']:.2f} CPU s/M (target 100,000 events/s)"
        )
    with open(os.path.join(results, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"figures in {results}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
