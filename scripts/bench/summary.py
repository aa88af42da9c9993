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
    plain = load(os.path.join(results, "job-plain.json"))
    gateway = load(os.path.join(results, "gateway.json"))
    # Two passes of the alternatives (the table silt writes; the event's fields only), each
    # with silt's own job run in its rounds when the script was given the binary.
    passes = [
        load(os.path.join(results, "alternatives.json")) or [],
        load(os.path.join(results, "alternatives-event-fields.json")) or [],
    ]
    sizes = (1000000, 3000000, 10000000)
    memory = {n: load(os.path.join(results, f"memory-{n}.json")) for n in sizes}
    summary = {"cores": os.cpu_count(), "build": job and job["build"]}
    print()
    print(f"silt bench summary ({job['build']} build, {os.cpu_count()} cores; one core unless said)")
    print(f"{'':52} {'events/s':>12} {'CPU s/M':>9} {'silt is':>9} {'target':>8}")
    print(
        f"{'silt job (' + str(job['events']) + ' events, SQL identity + aggregate)':52}"
        f" {job['job_events_per_sec']:12.0f} {job['cpu_seconds_per_million']:9.3f} {'':>9} {'<=0.5':>8}"
    )
    print(f"{'Parquet-write limit (same batches)':52} {job['limit_events_per_sec']:12.0f}")
    # The alternatives drop repeats and write the raw table: compare them with the same work.
    base = plain or job
    silt_eps = base["job_events_per_sec"]
    in_rounds = any(a["name"] == "silt" for p in passes for a in p)
    if plain:
        print(
            f"{'silt job, raw table only' + ('' if in_rounds else ' (as below)'):52}"
            f" {silt_eps:12.0f} {plain['cpu_seconds_per_million']:9.3f} {'' if in_rounds else '1.0x':>9}"
        )
    summary["job"] = {
        "events_per_sec": job["job_events_per_sec"],
        "cpu_seconds_per_million": job["cpu_seconds_per_million"],
        "job_to_limit": job["job_to_limit"],
        "stages": job["stages"],
        "avg_body_bytes": job["avg_body_bytes"],
    }
    if plain:
        summary["job_raw_only"] = {
            "events_per_sec": plain["job_events_per_sec"],
            "cpu_seconds_per_million": plain["cpu_seconds_per_million"],
            "job_to_limit": plain["job_to_limit"],
        }
    targets = {"fastavro": 10.0, "duckdb": 2.5, "spark": 30.0}
    labels = {
        "fastavro": "fastavro+pyarrow (Python)",
        "duckdb": "DuckDB (JSON lines, threads=1)",
        "spark": "Spark Structured Streaming local[1]",
    }
    summary["alternatives"] = {}
    for i, alternatives in enumerate(passes):
        # The ratios of a pass are to silt's job run in the same rounds, when it was.
        same = next((a for a in alternatives if a["name"] == "silt" and "error" not in a), None)
        base_eps = same["events_per_sec_per_core"] if same else silt_eps
        suffix = "_event_fields_only" if i == 1 else ""
        if same:
            summary["alternatives"]["silt" + suffix] = same
            print(
                f"{'silt run, raw table only, in the rounds below':52}"
                f" {base_eps:12.0f} {same['cpu_seconds_per_million']:9.3f} {'1.0x':>9}"
            )
        # The ratios again by the silt job's own clock: the process's start left out, as the
        # alternatives' interpreter, imports and JVM start are. Older results files lack it.
        if same and "job_seconds" in same:
            job_eps = same["events"] / same["job_seconds"]
            in_job = [
                f"{labels[a['name']].split(' ')[0]} {job_eps / a['events_per_sec_per_core']:.1f}x"
                for a in alternatives
                if a["name"] != "silt" and "error" not in a
            ]
            print(
                f"  the same by its job's own clock ({job_eps:.0f} events/s, process start"
                f" not timed, as the others' is not): " + ", ".join(in_job)
            )
        for a in alternatives:
            name = a["name"]
            if name == "silt":
                continue
            if "error" in a:
                print(f"{labels[name]:52} failed: {a['error']}")
                continue
            ratio = base_eps / a["events_per_sec_per_core"]
            summary["alternatives"][name + suffix] = dict(a, silt_ratio=ratio)
            # Figures of the same work name nothing more; those of less work say so.
            label = labels[name] + (" [event fields]" if suffix else "")
            print(
                f"{label:52} {a['events_per_sec_per_core']:12.0f} {a['cpu_seconds_per_million']:9.3f}"
                f" {ratio:8.1f}x {targets[name]:7.1f}x"
            )
    for title, alternatives in zip(("the same table", "the event's fields only"), passes):
        rounds = [
            f"{'silt' if a['name'] == 'silt' else labels[a['name']].split(' ')[0]} "
            + "/".join(str(r) for r in a["rounds"])
            for a in alternatives
            if a.get("rounds")
        ]
        if rounds:
            print(f"rounds, {title} (events/s; the median above): " + ", ".join(rounds))
    print(f"job / limit: {job['job_to_limit']:.2f} (target >= 0.6)")
    stages = sorted(job["stages"].items(), key=lambda kv: -kv[1])
    print("job stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages))
    # Older results files lack the table-by-table times.
    if job.get("tables"):
        summary["job"]["tables"] = job["tables"]
        print(
            "job by table (s; SQL / encoding / puts, and the limit's writing): "
            + ", ".join(
                (
                    f"{k} copied / {t['write']:.2f}, limit {t['limit']:.2f}"
                    if t.get("copied")
                    else f"{k} {t['sql']:.2f} / {t['encode']:.2f} / {t['write']:.2f}, limit {t['limit']:.2f}"
                )
                for k, t in sorted(job["tables"].items(), key=lambda kv: -kv[1]["encode"])
            )
        )
    # Older results files lack the kernel's share.
    kernel = [
        f"{name} {r['kernel_cpu_seconds_per_million']:.3f} of {r['cpu_seconds_per_million']:.3f}"
        for name, r in (("job", job), ("raw job", plain))
        if r and "kernel_cpu_seconds_per_million" in r
    ]
    if kernel:
        summary["job"]["kernel_cpu_seconds_per_million"] = job.get("kernel_cpu_seconds_per_million")
        if plain:
            summary["job_raw_only"]["kernel_cpu_seconds_per_million"] = plain.get(
                "kernel_cpu_seconds_per_million"
            )
        print("CPU s/M in the kernel (page faults, the mapped input, writes): " + ", ".join(kernel))
    have = [n for n in sizes if memory[n]]
    if have:
        mb = {n: memory[n]["peak_rss_bytes"] / 1e6 for n in have}
        summary["memory_peak_rss_mb"] = {str(n): v for n, v in mb.items()}
        print("peak RSS: " + ", ".join(f"{v:.0f} MB at {n // 1000000}M" for n, v in mb.items()) + " events (target: flat)")
    plain_mem = {n: load(os.path.join(results, f"memory-plain-{n}.json")) for n in (1000000, 10000000)}
    have = [n for n, m in plain_mem.items() if m]
    if have:
        mb = {n: plain_mem[n]["peak_rss_bytes"] / 1e6 for n in have}
        summary["memory_peak_rss_mb_raw_only"] = {str(n): v for n, v in mb.items()}
        print("peak RSS without SQL transforms: " + ", ".join(f"{v:.0f} MB at {n // 1000000}M" for n, v in mb.items()) + " events")
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
