#!/usr/bin/env python3
"""The usual alternatives to silt, on the same events as `silt bench`, one core each.

Reads the file stream and registry that `silt bench --dir DIR` leaves behind and runs:

* fastavro+pyarrow: the same work in Python: frame and header check, writer schema by
  SHA-256 fingerprint, decode (resolved to the latest schema), drop repeats by uuid, event
  time from the TimeUuid, zstd Parquet partitioned by dt/hr;
* DuckDB: the events as JSON lines, `QUALIFY row_number() OVER (PARTITION BY uuid ...) = 1`,
  `COPY ... TO` zstd Parquet partitioned by dt, hr, `threads=1`;
* Spark Structured Streaming: pyspark `local[1]`, the same JSON lines, `Trigger.AvailableNow`,
  `dropDuplicatesWithinWatermark` on uuid, zstd Parquet partitioned by dt, hr.

All write zstd at level 1, as silt does (Spark's parquet-mr uses level 3 unless told; it was
until 2026-11-27 11:00 UTC).

Each writes the table silt's job writes: the event's fields, `_event_time` and the stream
metadata of SPEC 8 (`_arrival_time`, `_stream`, `_shard`, `_sequence`, `_fingerprint`), with
dt/hr as partitions. `--event-fields-only` leaves the metadata out (the event's fields and
`_event_time` only: less work than silt does), as the runs before 2026-11-27 09:00 UTC were
measured.

Each runs in its own process under `taskset -c 0` (one core). The JSON lines are made
beforehand and not timed; they carry `event_ms` so that DuckDB and Spark need not parse the
TimeUuid (an advantage the Python pipeline and silt do not have), and the record's metadata as
the file stream gives it. Spark's JVM start is not timed either; its query is.

With `--silt PATH`, silt's own job on the same stream (`silt run` of the raw table only, a
fresh lake each time, its process start and summary included) is run the same way, so that
each ratio is measured in the same rounds by the same clock. The machines these run on are
shared and their speed drifts from minute to minute: every program is run `--rounds` times
(3), the rounds interleaved (fastavro, DuckDB, Spark, silt, then again), and the round of
median events/s is reported with every round listed beside it. Before each run its input is
read once, untimed, so that every program starts with it in the page cache. Prints one JSON object per
program and writes them all to --out.

    alternatives.py all --dir BENCH_DIR --out results.json [--only fastavro,duckdb,spark]
                        [--event-fields-only] [--rounds N] [--silt PATH]
"""

import argparse
import glob
import io
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import time
import uuid as uuidlib

UUID_EPOCH_TICKS = 0x01B21DD213814000
WINDOW = "15 minutes"


def frames(stream_dir):
    """Every record of a file stream (SPEC 6), shard by shard: (payload, arrival ms, shard,
    sequence number: the frame's byte offset)."""
    for path in sorted(glob.glob(os.path.join(stream_dir, "shard-*.log"))):
        shard = os.path.basename(path)[: -len(".log")]
        with open(path, "rb") as f:
            data = f.read()
        pos, end = 0, len(data)
        while pos + 12 <= end:
            n, arrival = struct.unpack_from(">IQ", data, pos)
            if pos + 12 + n > end:
                break
            yield data[pos + 12 : pos + 12 + n], arrival, shard, pos
            pos += 12 + n


def schemas(registry_dir):
    """fingerprint bytes -> parsed writer schema, and the subject's latest schema."""
    import fastavro

    by_fp = {}
    for path in glob.glob(os.path.join(registry_dir, "schemas", "*.json")):
        fp = bytes.fromhex(os.path.basename(path)[:-5])
        with open(path) as f:
            by_fp[fp] = fastavro.parse_schema(json.loads(json.load(f)["schema"]))
    versions = sorted(glob.glob(os.path.join(registry_dir, "subjects", "*", "versions", "*.json")))
    with open(versions[-1]) as f:
        latest = by_fp[bytes.fromhex(json.load(f)["fingerprint"])]
    return by_fp, latest


def event_ms(u):
    ticks = (
        ((u[6] & 0x0F) << 56)
        | (u[7] << 48)
        | (u[4] << 40)
        | (u[5] << 32)
        | int.from_bytes(u[0:4], "big")
    )
    return (ticks - UUID_EPOCH_TICKS) // 10_000


def decoded(bench_dir):
    """(record, arrival ms, shard, sequence, fingerprint bytes) for every good record, repeats
    included; bad ones counted."""
    from fastavro import schemaless_reader

    by_fp, latest = schemas(os.path.join(bench_dir, "registry"))
    bad = 0
    for rec, arrival, shard, sequence in frames(os.path.join(bench_dir, "stream")):
        if len(rec) < 33 or rec[0] != 0x81:
            bad += 1
            continue
        writer = by_fp.get(rec[1:33])
        if writer is None:
            bad += 1
            continue
        body = io.BytesIO(rec[33:])
        try:
            value = schemaless_reader(body, writer, latest)
        except Exception:
            bad += 1
            continue
        if body.tell() != len(rec) - 33:
            bad += 1
            continue
        yield value, arrival, shard, sequence, rec[1:33]
    decoded.bad = bad


def cpu_now():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# The metadata columns silt's raw table carries after `_event_time` (SPEC 8).
METADATA = ("_arrival_time", "_stream", "_shard", "_sequence", "_fingerprint")


def run_fastavro(bench_dir, work, meta):
    import datetime

    import pyarrow as pa
    import pyarrow.dataset as ds

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    out = os.path.join(work, "fastavro")
    shutil.rmtree(out, ignore_errors=True)
    fmt = ds.ParquetFileFormat()
    opts = fmt.make_write_options(compression="zstd", compression_level=1)
    seen = set()
    names = ("uuid", "productId", "saleId", "channel", "_event_time") + (METADATA if meta else ())
    cols = {k: [] for k in names + ("dt", "hr")}
    stream = os.path.basename(os.path.join(bench_dir, "stream"))
    types = {
        "uuid": pa.string(),
        "productId": pa.int64(),
        "saleId": pa.int64(),
        "channel": pa.string(),
        "_event_time": pa.timestamp("us", tz="UTC"),
        "_arrival_time": pa.timestamp("ms", tz="UTC"),
        "_stream": pa.string(),
        "_shard": pa.string(),
        "_sequence": pa.string(),
        "_fingerprint": pa.string(),
        "dt": pa.string(),
        "hr": pa.string(),
    }
    events = 0
    chunk = 0
    utc = datetime.timezone.utc

    def flush():
        nonlocal chunk
        if not cols["uuid"]:
            return
        table = pa.table({k: pa.array(v, types[k]) for k, v in cols.items()})
        ds.write_dataset(
            table,
            out,
            format=fmt,
            file_options=opts,
            partitioning=["dt", "hr"],
            partitioning_flavor="hive",
            basename_template=f"part-{chunk:06d}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            use_threads=False,
        )
        chunk += 1
        for v in cols.values():
            v.clear()

    t0, c0 = time.perf_counter(), cpu_now()
    for value, arrival, shard, sequence, fp in decoded(bench_dir):
        u = value["uuid"]
        if u in seen:
            continue
        seen.add(u)
        ms = event_ms(u)
        when = datetime.datetime.fromtimestamp(ms / 1000, utc)
        cols["uuid"].append(str(uuidlib.UUID(bytes=u)))
        cols["productId"].append(value["productId"])
        cols["saleId"].append(value["saleId"])
        cols["channel"].append(value["channel"])
        cols["_event_time"].append(ms * 1000)
        if meta:
            cols["_arrival_time"].append(arrival)
            cols["_stream"].append(stream)
            cols["_shard"].append(shard)
            cols["_sequence"].append(str(sequence))
            cols["_fingerprint"].append(fp.hex())
        cols["dt"].append(when.strftime("%Y-%m-%d"))
        cols["hr"].append(when.strftime("%H"))
        events += 1
        if len(cols["uuid"]) >= 500_000:
            flush()
    flush()
    return events, time.perf_counter() - t0, cpu_now() - c0


def make_jsonl(bench_dir, path, meta):
    """The same events as JSON lines (repeats kept, bad records left out), with the record's
    metadata unless `meta` is false: not timed."""
    n = 0
    stream = os.path.basename(os.path.join(bench_dir, "stream"))
    with open(path, "w") as f:
        for value, arrival, shard, sequence, fp in decoded(bench_dir):
            u = value["uuid"]
            line = {
                "uuid": str(uuidlib.UUID(bytes=u)),
                "productId": value["productId"],
                "saleId": value["saleId"],
                "channel": value["channel"],
                "event_ms": event_ms(u),
            }
            if meta:
                line.update(
                    arrival_ms=arrival,
                    stream=stream,
                    shard=shard,
                    sequence=str(sequence),
                    fingerprint=fp.hex(),
                )
            f.write(json.dumps(line))
            f.write("\n")
            n += 1
    return n


def run_duckdb(bench_dir, work, meta):
    import duckdb

    src = os.path.join(work, "events.jsonl")
    out = os.path.join(work, "duckdb")
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET preserve_insertion_order = false")
    metadata, metadata_columns = "", ""
    if meta:
        metadata = """epoch_ms(arrival_ms) AS _arrival_time, stream AS _stream,
                 shard AS _shard, sequence AS _sequence, fingerprint AS _fingerprint,"""
        metadata_columns = """, arrival_ms: 'BIGINT', stream: 'VARCHAR', shard: 'VARCHAR',
                            sequence: 'VARCHAR', fingerprint: 'VARCHAR'"""
    t0, c0 = time.perf_counter(), cpu_now()
    con.execute(
        f"""
        COPY (
          SELECT uuid, productId, saleId, channel,
                 make_timestamp(event_ms * 1000) AS _event_time, {metadata}
                 strftime(make_timestamp(event_ms * 1000), '%Y-%m-%d') AS dt,
                 strftime(make_timestamp(event_ms * 1000), '%H') AS hr
          FROM read_json('{src}', format = 'newline_delimited',
                columns = {{uuid: 'VARCHAR', productId: 'BIGINT', saleId: 'BIGINT',
                            channel: 'VARCHAR', event_ms: 'BIGINT'{metadata_columns}}})
          QUALIFY row_number() OVER (PARTITION BY uuid ORDER BY event_ms) = 1
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, PARTITION_BY (dt, hr))
        """
    )
    seconds, cpu = time.perf_counter() - t0, cpu_now() - c0
    events = con.execute(
        f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)"
    ).fetchone()[0]
    return events, seconds, cpu


def jvm_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_spark(bench_dir, work, meta):
    from pyspark.sql import SparkSession, functions as F, types as T

    src = os.path.join(work, "spark-in")
    os.makedirs(src, exist_ok=True)
    link = os.path.join(src, "events.json")
    if not os.path.exists(link):
        os.symlink(os.path.join(work, "events.jsonl"), link)
    out = os.path.join(work, "spark")
    checkpoint = os.path.join(work, "spark-checkpoint")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(checkpoint, ignore_errors=True)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("silt-bench")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.parquet.compression.codec", "zstd")
        # parquet-mr's zstd level is 3 unless told: level 1, as silt, DuckDB and pyarrow use.
        .config("spark.hadoop.parquet.compression.codec.zstd.level", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    schema = T.StructType(
        [
            T.StructField("uuid", T.StringType()),
            T.StructField("productId", T.LongType()),
            T.StructField("saleId", T.LongType()),
            T.StructField("channel", T.StringType()),
            T.StructField("event_ms", T.LongType()),
        ]
        + (
            [
                T.StructField("arrival_ms", T.LongType()),
                T.StructField("stream", T.StringType()),
                T.StructField("shard", T.StringType()),
                T.StructField("sequence", T.StringType()),
                T.StructField("fingerprint", T.StringType()),
            ]
            if meta
            else []
        )
    )
    t0, c0 = time.perf_counter(), jvm_cpu(pid) + cpu_now()
    events = (
        spark.readStream.schema(schema)
        .option("maxFilesPerTrigger", 1)
        .json(src)
        .withColumn("_event_time", F.timestamp_millis("event_ms"))
    )
    if meta:
        events = (
            events.withColumn("_arrival_time", F.timestamp_millis("arrival_ms"))
            .withColumnsRenamed(
                {
                    "stream": "_stream",
                    "shard": "_shard",
                    "sequence": "_sequence",
                    "fingerprint": "_fingerprint",
                }
            )
            .drop("arrival_ms")
        )
    events = (
        events.withWatermark("_event_time", WINDOW)
        .dropDuplicatesWithinWatermark(["uuid"])
        .withColumn("dt", F.date_format("_event_time", "yyyy-MM-dd"))
        .withColumn("hr", F.date_format("_event_time", "HH"))
        .drop("event_ms")
    )
    query = (
        events.writeStream.format("parquet")
        .option("path", out)
        .option("checkpointLocation", checkpoint)
        .partitionBy("dt", "hr")
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    seconds, cpu = time.perf_counter() - t0, jvm_cpu(pid) + cpu_now() - c0
    n = spark.read.parquet(out).count()
    spark.stop()
    return n, seconds, cpu


def run_silt(bench_dir, work, meta, silt):
    """silt's job on the same stream: the raw table only, as the alternatives write it (with
    its metadata columns, `meta` or not: silt's raw table always has them)."""
    with open(os.path.join(bench_dir, "bench.toml")) as f:
        job = f.read()
    # The bench's job without its SQL transforms, into a lake of its own; the job file stays
    # beside the stream and registry that its relative paths name.
    if "[[transform]]" in job:
        job = job[: job.index("[[transform]]")] + job[job.index("[batch]") :]
    table = re.search(r'(?m)^table = "(.*)"$', job).group(1)
    lake = os.path.join(work, "silt-lake")
    shutil.rmtree(lake, ignore_errors=True)
    job = re.sub(r'(?m)^name = ".*"$', 'name = "alternatives"', job, count=1)
    job = re.sub(r'(?m)^location = ".*"$', f'location = "file://{lake}"', job, count=1)
    path = os.path.join(bench_dir, "alternatives-silt.toml")
    with open(path, "w") as f:
        f.write(job)
    t0, c0 = time.perf_counter(), cpu_now()
    p = subprocess.run([silt, "run", path, "--json"], capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, cpu_now() - c0
    if p.returncode != 0:
        raise RuntimeError(f"silt run failed: {p.stderr.strip()}")
    summary = json.loads(p.stdout)
    events = summary["rows_written"][table]
    # The job's own clock (from its start to its summary, after the process has started and
    # read its job file): what the others' timings cover, which leave out the interpreter's
    # start, the imports and the JVM's.
    return events, seconds, cpu, {"job_seconds": summary["elapsed_s"]}


RUNNERS = {"fastavro": run_fastavro, "duckdb": run_duckdb, "spark": run_spark, "silt": run_silt}


def one(args):
    extra = (args.silt,) if args.name == "silt" else ()
    events, seconds, cpu, *more = RUNNERS[args.name](args.dir, args.work, not args.event_fields_only, *extra)
    print(
        json.dumps(
            {
                **(more[0] if more else {}),
                "name": args.name,
                "events": events,
                # silt's job writes its raw table whole either way.
                "columns": "event fields"
                if args.event_fields_only and args.name != "silt"
                else "as silt's raw table",
                "seconds": seconds,
                "cpu_seconds": cpu,
                "events_per_sec_per_core": events / seconds,
                "cpu_seconds_per_million": cpu / (events / 1e6),
            }
        ),
        flush=True,
    )


def median_round(rounds):
    """The round of median events/s, with every round's events/s beside it."""
    done = [r for r in rounds if "error" not in r]
    if not done:
        return rounds[-1]
    mid = sorted(done, key=lambda r: r["events_per_sec_per_core"])[len(done) // 2]
    return dict(mid, rounds=[round(r["events_per_sec_per_core"]) for r in done])


def warm(path):
    """Reads a file, or every file below a folder, once (untimed), so that each program starts
    with its input in the page cache, as a job reading what was just written does. Without it
    the program run after Spark (whose memory pushes the others' input out of the cache) pays
    for a cold read that the others do not: silt's rounds ranged 475k-773k events/s so."""
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] if os.path.isdir(path) else [path]
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def all_(args):
    work = args.work or os.path.join(args.dir, "alternatives")
    os.makedirs(work, exist_ok=True)
    names = args.only.split(",") if args.only else ["fastavro", "duckdb", "spark"]
    if args.silt and "silt" not in names:
        names.append("silt")
    if "silt" in names and not args.silt:
        sys.exit("silt's job needs the binary: --silt PATH")
    if any(n in ("duckdb", "spark") for n in names):
        t = time.perf_counter()
        n = make_jsonl(args.dir, os.path.join(work, "events.jsonl"), not args.event_fields_only)
        print(f"made {n} JSON lines in {time.perf_counter() - t:.1f}s (not timed)", file=sys.stderr)
    # What each reads: the stream's envelopes, or the same events as JSON lines.
    stream, jsonl = os.path.join(args.dir, "stream"), os.path.join(work, "events.jsonl")
    inputs = {"fastavro": stream, "silt": stream, "duckdb": jsonl, "spark": jsonl}
    rounds = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            # One that failed is not run again.
            if rounds[name] and "error" in rounds[name][-1]:
                continue
            print(f"round {r + 1} of {args.rounds}: {name} on one core ...", file=sys.stderr, flush=True)
            warm(inputs[name])
            cmd = ["taskset", "-c", "0", sys.executable, __file__, "one", name, "--dir", args.dir, "--work", work]
            if args.event_fields_only:
                cmd.append("--event-fields-only")
            if name == "silt":
                cmd += ["--silt", args.silt]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{name} failed:\n{p.stderr[-3000:]}", file=sys.stderr)
                rounds[name].append({"name": name, "error": p.stderr.strip().splitlines()[-1:] or ["failed"]})
                continue
            result = json.loads(p.stdout.strip().splitlines()[-1])
            print(json.dumps(result), flush=True)
            rounds[name].append(result)
    results = [median_round(rounds[name]) for name in names]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all")
    a.add_argument("--dir", required=True, help="the folder `silt bench --dir` left")
    a.add_argument("--work")
    a.add_argument("--out")
    a.add_argument("--only", help="comma-separated: fastavro,duckdb,spark,silt")
    a.add_argument(
        "--event-fields-only",
        action="store_true",
        help="leave out the stream metadata columns silt's raw table carries",
    )
    a.add_argument("--rounds", type=int, default=3, help="runs of each, interleaved; the median is reported")
    a.add_argument("--silt", help="a silt binary: its raw-table job is run in the same rounds")
    o = sub.add_parser("one")
    o.add_argument("name", choices=list(RUNNERS))
    o.add_argument("--dir", required=True)
    o.add_argument("--work", required=True)
    o.add_argument("--event-fields-only", action="store_true")
    o.add_argument("--silt")
    args = p.parse_args()
    {"all": all_, "one": one}[args.cmd](args)


if __name__ == "__main__":
    main()
