"""python -m bench (make bench): measure the site's figures, print a table, write JSON to $BENCH_JSON.

Every figure is measured in this run next to its baseline, on 127.0.0.1, against Daphne processes
started here on scratch databases (SQLite file, a throw-away PostgreSQL database, a private Redis).
BENCH_QUICK=true shrinks every phase (a smoke run, not figures to report).
"""

import asyncio
import json
import os
import statistics
import time

from . import load, room, servers
from .upstream import PageClient, SlowLiveAvatar

QUICK = os.environ.get("BENCH_QUICK", "").lower() in ("1", "true", "yes")
SCALE = 0.2 if QUICK else 1.0

THROUGHPUT_SOCKETS, THROUGHPUT_SECONDS, THROUGHPUT_ROUNDS = 200, 6 * SCALE, 2
PACE = 2.0  # events per second per session: a conversation
FANOUT_SESSIONS = 200
FANOUT_SECONDS = 20 * SCALE
HOLD_SESSIONS = int(1000 * SCALE)
MINT_DELAY_MS, MINT_VISITS = 50, int(200 * SCALE)
SCALEOUT_SESSIONS, SCALEOUT_PACE, SCALEOUT_SECONDS, SCALEOUT_ROUNDS = 100, 3.0, 10 * SCALE, 3
ROOM_STARTS, ROOM_SECONDS = 10, 60 * SCALE

TARGETS = {
    "ingest_ratio": ("≥", 0.5),
    "metrics_cost_pct": ("<", 5),
    "fanout_p99_ms": ("<", 50),
    "sessions_held": ("≥", 1000),
    "kb_per_session": ("<", 200),
    "mint_overhead_ratio": ("≤", 2.0),
    "scaleout_cpu_ratio": ("≤", 1.25),
    "emulator_room_cpu_pct": ("≤", 10),
    "start_to_first_frame_ms": ("≤", 1000),
}


def log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


async def open_forwarders(server, sessions, sent_log=None) -> list[load.Forwarder]:
    return await load.gather_limited(
        load.Forwarder(server, sid, credential, sent_log).open() for sid, credential in sessions
    )


async def drain(forwarders, timeout: float):
    """Wait until every forwarder's events are acked (or the timeout passes)."""
    try:
        await asyncio.wait_for(asyncio.gather(*(f.idle.wait() for f in forwarders if f.is_open)), timeout)
    except TimeoutError:
        pass


async def close_all(sockets):
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def fanout(server, forwarders, cookie, seconds) -> dict:
    sent_log = load.new_sent_log()
    for forwarder in forwarders:
        forwarder.sent_log = sent_log
    dashboard = await load.Dashboard(server, cookie, sent_log).open()
    await load.paced(forwarders, PACE, seconds)
    await drain(forwarders, 30)
    await asyncio.sleep(1)  # the last broadcasts
    await dashboard.close()
    latencies = dashboard.latencies_ms
    return {
        "sessions": len(forwarders),
        "events_per_second_offered": round(len(forwarders) * PACE),
        "seen": len(latencies),
        "not_seen": sum(len(q) for q in sent_log.values()),
        "p50_ms": round(load.percentile(latencies, 0.50) or -1, 1),
        "p99_ms": round(load.percentile(latencies, 0.99) or -1, 1),
    }


async def phase_fanout_alone(workdir, rounds: int) -> dict:
    """Only the fan-out at 200 sessions, `rounds` times on one process (for tuning that path)."""
    env = servers.base_env(DATABASE_URL=servers.sqlite_url(workdir, "fanout"))
    servers.manage(env, "migrate", "--noinput", "-v0")
    seeded = servers.seed(env, FANOUT_SESSIONS * rounds)
    server = servers.Daphne(workdir, env, "fanout")
    results = []
    try:
        for i in range(rounds):
            forwarders = await open_forwarders(
                server, seeded["sessions"][i * FANOUT_SESSIONS : (i + 1) * FANOUT_SESSIONS]
            )
            results.append(await fanout(server, forwarders, seeded["staff_cookie"], FANOUT_SECONDS))
            log(f"round {i + 1}: {results[-1]}")
            await close_all(forwarders)
    finally:
        server.stop()
    return {"rounds": results, "p99_ms": [r["p99_ms"] for r in results]}


async def metered_ingest(server, forwarders, rates: list, cpu: list) -> None:
    """One closed-loop ingest round: its events a second into `rates`, and the server's CPU
    seconds per 1,000 events stored into `cpu` (less disturbed by other tenants than a rate)."""
    cpu_before, acked_before = server.cpu_seconds(), sum(f.acked for f in forwarders)
    rates.append(await load.closed_loop_ingest(forwarders, THROUGHPUT_SECONDS))
    stored = sum(f.acked for f in forwarders) - acked_before
    cpu.append(1000 * (server.cpu_seconds() - cpu_before) / max(1, stored))


async def phase_single_process(workdir) -> dict:
    """Ingest vs echo (with the metrics of production, and on a twin process with them off), fan-out
    at 200 and 1,000 sessions, sessions held and memory: one Daphne, defaults."""
    # Metrics as in production: several processes' values kept in the files of one directory.
    metrics_dir = workdir.path / "metrics"
    metrics_dir.mkdir()
    env = servers.base_env(DATABASE_URL=servers.sqlite_url(workdir, "main"), PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    servers.manage(env, "migrate", "--noinput", "-v0")
    seeded = servers.seed(env, 2 * THROUGHPUT_SOCKETS + FANOUT_SESSIONS + HOLD_SESSIONS)
    sessions, cookie = seeded["sessions"], seeded["staff_cookie"]
    throughput_sessions = sessions[:THROUGHPUT_SOCKETS]
    fanout_sessions = sessions[THROUGHPUT_SOCKETS : THROUGHPUT_SOCKETS + FANOUT_SESSIONS]
    hold_sessions = sessions[THROUGHPUT_SOCKETS + FANOUT_SESSIONS : -THROUGHPUT_SOCKETS]
    unmetered_sessions = sessions[-THROUGHPUT_SOCKETS:]
    server = servers.Daphne(workdir, env, "main")
    unmetered_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    unmetered = servers.Daphne(workdir, {**unmetered_env, "METRICS_ENABLED": "false"}, "unmetered")
    result = {}
    try:
        log(
            f"ingest vs echo: {THROUGHPUT_SOCKETS} sockets sending one-event messages, "
            f"{THROUGHPUT_ROUNDS} alternating rounds of {THROUGHPUT_SECONDS:g} s each, "
            "with metrics and on a twin process without"
        )
        forwarders = await open_forwarders(server, throughput_sessions)
        unmetered_forwarders = await open_forwarders(unmetered, unmetered_sessions)
        await load.closed_loop_echo(server, 10, 1)  # warm-up, of both ingests too (first connections, caches)
        await load.closed_loop_ingest(forwarders, 1)
        await load.closed_loop_ingest(unmetered_forwarders, 1)
        echo_rates, ingest_rates, unmetered_rates, ingest_cpu, unmetered_cpu = [], [], [], [], []
        for round_number in range(THROUGHPUT_ROUNDS):
            echo_rates.append(await load.closed_loop_echo(server, THROUGHPUT_SOCKETS, THROUGHPUT_SECONDS))
            await asyncio.sleep(1)  # the echo's sockets close before the metered process is measured
            # Which of the two goes first alternates: the machine's drift weighs on both alike.
            pair = [
                (server, forwarders, ingest_rates, ingest_cpu),
                (unmetered, unmetered_forwarders, unmetered_rates, unmetered_cpu),
            ]
            for twin in pair[:: 1 if round_number % 2 == 0 else -1]:
                await metered_ingest(*twin)
        result["echo_msgs_per_s"] = round(statistics.mean(echo_rates))
        result["ingest_events_per_s"] = round(statistics.mean(ingest_rates))
        result["ingest_events_per_s_without_metrics"] = round(statistics.mean(unmetered_rates))
        result["ingest_cpu_s_per_1000"] = round(statistics.mean(ingest_cpu), 4)
        result["ingest_cpu_s_per_1000_without_metrics"] = round(statistics.mean(unmetered_cpu), 4)
        result["ingest_errors"] = sum(len(f.errors) for f in forwarders + unmetered_forwarders)
        await close_all(forwarders + unmetered_forwarders)
        unmetered.stop()

        log(f"fan-out: {FANOUT_SESSIONS} sessions x {PACE:g} events/s for {FANOUT_SECONDS:g} s -> dashboard")
        forwarders = await open_forwarders(server, fanout_sessions)
        result["fanout_200"] = await fanout(server, forwarders, cookie, FANOUT_SECONDS)
        await close_all(forwarders)

        log(f"hold: {HOLD_SESSIONS} sessions open on a fresh process, memory when idle")
        # A fresh process: one that served the phases above has freed memory to reuse, and
        # would hide what new sockets cost. Warm it up (imports, first connection) first.
        server.stop()
        server = servers.Daphne(workdir, env, "hold")
        warm = await open_forwarders(server, hold_sessions[:20])
        await asyncio.gather(*(f.send() for f in warm))
        await drain(warm, 10)
        await close_all(warm)
        await asyncio.sleep(2)
        rss_before = server.rss()
        forwarders = await open_forwarders(server, hold_sessions)
        await asyncio.sleep(5)
        rss_idle = server.rss()
        result["rss_before_mb"] = round(rss_before / 2**20, 1)
        result["rss_idle_mb"] = round(rss_idle / 2**20, 1)
        result["kb_per_session"] = round((rss_idle - rss_before) / len(forwarders) / 1024, 1)
        log(f"fan-out: the {HOLD_SESSIONS} sessions x {PACE:g} events/s for {FANOUT_SECONDS:g} s -> dashboard")
        result["fanout_1000"] = await fanout(server, forwarders, cookie, FANOUT_SECONDS)
        result["sessions_open"] = sum(1 for f in forwarders if f.is_open)
        # Held: still connected, and every event it forwarded was stored and acked.
        result["sessions_held"] = sum(1 for f in forwarders if f.is_open and not f.unacked and not f.errors)
        await close_all(forwarders)
    finally:
        server.stop()
        unmetered.stop()
    return result


def phase_mint(workdir) -> dict:
    """GET / minting over an upstream that answers after MINT_DELAY_MS, visit by visit next to a trivial
    view through the same middleware: the page's time beyond the upstream call, and the trivial view's."""
    upstream = SlowLiveAvatar(MINT_DELAY_MS)
    env = servers.base_env(
        DATABASE_URL=servers.sqlite_url(workdir, "mint"),
        LIVEAVATAR_API_KEY="bench-dummy-key",
        LIVEAVATAR_API_URL=upstream.url,
        MINT_RATE_PER_MINUTE=100000,
        MINT_RATE_PER_ADDRESS_PER_MINUTE=100000,
    )
    servers.manage(env, "migrate", "--noinput", "-v0")
    server = servers.Daphne(workdir, env, "mint")
    log(f"mint on visit: {MINT_VISITS} visits, upstream answers after {MINT_DELAY_MS} ms, each next to a trivial view")
    pages, upstreams, overheads, trivials = [], [], [], []
    client = PageClient("127.0.0.1", server.port)
    try:
        for visit in range(10 + MINT_VISITS):
            started = time.perf_counter()
            status, body = client.get("/")
            ended = time.perf_counter()
            if status != 200 or b"session_token" not in body:
                raise RuntimeError(f"GET / answered {status} without a session token")
            probe = time.perf_counter()
            status, body = client.get("/bench/trivial")
            probed = time.perf_counter()
            if status != 200 or body != b"ok":
                raise RuntimeError(f"GET /bench/trivial answered {status}")
            if visit < 10:
                continue  # warm-up
            trivials.append((probed - probe) * 1000)
            upstream_s = upstream.time_within(started, ended)
            pages.append((ended - started) * 1000)
            upstreams.append(upstream_s * 1000)
            overheads.append((ended - started - upstream_s) * 1000)
    finally:
        client.close()
        server.stop()
        upstream.stop()
    overhead, trivial = statistics.median(overheads), statistics.median(trivials)
    return {
        "page_median_ms": round(statistics.median(pages), 2),
        "upstream_median_ms": round(statistics.median(upstreams), 2),
        "upstream_calls_per_visit": round(len(upstream.calls) / (10 + MINT_VISITS), 2),
        "overhead_median_ms": round(overhead, 2),
        "trivial_median_ms": round(trivial, 2),
        "overhead_ratio": round(overhead / trivial, 2),
    }


async def stored_cpu(daphnes, sessions, cookie, extra_pids=lambda: []) -> dict:
    """CPU of the server processes while SCALEOUT_SESSIONS forward at pace, sessions spread over them."""
    forwarders = []
    for i, (sid, credential) in enumerate(sessions):
        forwarders.append(load.Forwarder(daphnes[i % len(daphnes)], sid, credential))
    await load.gather_limited(f.open() for f in forwarders)
    # The staff dashboard watches from the last process: with two, most broadcasts cross Redis.
    dashboard = await load.Dashboard(daphnes[-1], cookie, load.new_sent_log()).open()
    await load.paced(forwarders, SCALEOUT_PACE, 1)  # warm-up: connections to the database exist
    await drain(forwarders, 30)
    acked_before = sum(f.acked for f in forwarders)
    daphne_before = sum(d.cpu_seconds() for d in daphnes)
    stores_before = servers.cpu_of(extra_pids())
    await load.paced(forwarders, SCALEOUT_PACE, SCALEOUT_SECONDS)
    await drain(forwarders, 30)
    daphne_cpu = sum(d.cpu_seconds() for d in daphnes) - daphne_before
    stores_after = servers.cpu_of(extra_pids())
    stores_cpu = sum(cpu - stores_before.get(pid, 0.0) for pid, cpu in stores_after.items())
    events = sum(f.acked for f in forwarders) - acked_before
    await dashboard.close()
    await close_all(forwarders)
    return {"events_stored": events, "daphne_cpu_s": daphne_cpu, "datastore_cpu_s": stores_cpu}


def cpu_per_1000(rounds: list[dict]) -> dict:
    events = sum(r["events_stored"] for r in rounds)
    daphne, stores = sum(r["daphne_cpu_s"] for r in rounds), sum(r["datastore_cpu_s"] for r in rounds)
    return {
        "events_stored": events,
        "daphne_cpu_s": round(daphne, 3),
        "daphne_cpu_s_per_1000": round(daphne / events * 1000, 4),
        "datastore_cpu_s": round(stores, 3),
        "datastore_cpu_s_per_1000": round(stores / events * 1000, 4),
        "rounds_daphne_cpu_s_per_1000": [round(r["daphne_cpu_s"] / r["events_stored"] * 1000, 4) for r in rounds],
    }


async def phase_scaleout(workdir) -> dict:
    """CPU per 1,000 stored events: one process on the defaults vs two on PostgreSQL + Redis.

    Both setups run side by side and are measured in alternating rounds (one, two, one, two...),
    each round on sessions of its own, so a slow spell of the machine weighs on both alike.
    """
    log(
        f"scale-out: {SCALEOUT_SESSIONS} sessions x {SCALEOUT_PACE:g} events/s, {SCALEOUT_ROUNDS} alternating "
        f"rounds of {SCALEOUT_SECONDS:g} s: one process on SQLite + in-memory layer, two on PostgreSQL + Redis"
    )
    count = SCALEOUT_SESSIONS * SCALEOUT_ROUNDS
    database, redis = servers.ScratchPostgres("scaleout"), servers.PrivateRedis()
    daphnes = []
    try:
        single_env = servers.base_env(DATABASE_URL=servers.sqlite_url(workdir, "single"))
        servers.manage(single_env, "migrate", "--noinput", "-v0")
        single_seed = servers.seed(single_env, count)
        pair_env = servers.base_env(DATABASE_URL=database.url, REDIS_URL=redis.url)
        servers.manage(pair_env, "migrate", "--noinput", "-v0")
        pair_seed = servers.seed(pair_env, count)
        daphnes = [
            servers.Daphne(workdir, single_env, "single"),
            servers.Daphne(workdir, pair_env, "a"),
            servers.Daphne(workdir, pair_env, "b"),
        ]
        one, two = [], []
        for i in range(SCALEOUT_ROUNDS):
            part = slice(i * SCALEOUT_SESSIONS, (i + 1) * SCALEOUT_SESSIONS)
            one.append(await stored_cpu(daphnes[:1], single_seed["sessions"][part], single_seed["staff_cookie"]))
            two.append(
                await stored_cpu(
                    daphnes[1:],
                    pair_seed["sessions"][part],
                    pair_seed["staff_cookie"],
                    lambda: [*database.backend_pids(), redis.process.pid],
                )
            )
    finally:
        for daphne in daphnes:
            daphne.stop()
        redis.stop()
        database.drop()
    return {"one_process_defaults": cpu_per_1000(one), "two_processes_pg_redis": cpu_per_1000(two)}


def verdict(key: str, value) -> str:
    op, target = TARGETS[key]
    ok = {"≥": value >= target, "<": value < target, "≤": value <= target}[op]
    return f"{op} {target:g}  {'ok' if ok else 'MISSED'}"


def main():
    started = time.monotonic()
    workdir = servers.Workdir()
    if os.environ.get("BENCH_ONLY") == "mint":  # one phase alone, printed (for tuning the page path)
        try:
            print(json.dumps(phase_mint(workdir), indent=2))
        finally:
            workdir.remove()
        return
    only = os.environ.get("BENCH_ONLY")
    if only == "fanout":  # the 200-session fan-out alone, BENCH_ROUNDS times (for tuning that path)
        try:
            print(
                json.dumps(asyncio.run(phase_fanout_alone(workdir, int(os.environ.get("BENCH_ROUNDS", "3")))), indent=2)
            )
        finally:
            workdir.remove()
        return
    if only == "single":  # ingest, fan-out and the sessions held on one process, printed
        try:
            print(json.dumps(asyncio.run(phase_single_process(workdir)), indent=2))
        finally:
            workdir.remove()
        return
    if only == "scaleout":  # one phase alone, printed (for tuning the scale-out path)
        try:
            print(json.dumps(asyncio.run(phase_scaleout(workdir)), indent=2))
        finally:
            if os.environ.get("BENCH_KEEP_LOGS"):
                log(f"logs kept in {workdir.path}")
            else:
                workdir.remove()
        return
    if only == "room":  # the emulated room in Chromium alone, printed
        try:
            print(json.dumps(room.phase_room(workdir, ROOM_STARTS, ROOM_SECONDS, log), indent=2))
        finally:
            workdir.remove()
        return
    try:
        single = asyncio.run(phase_single_process(workdir))
        mint = phase_mint(workdir)
        scaleout = asyncio.run(phase_scaleout(workdir))
        emulated = room.phase_room(workdir, ROOM_STARTS, ROOM_SECONDS, log)
    finally:
        workdir.remove()
    one, two = scaleout["one_process_defaults"], scaleout["two_processes_pg_redis"]
    unmetered = single["ingest_events_per_s_without_metrics"]
    ratio_without = unmetered / single["echo_msgs_per_s"]
    cpu_with, cpu_without = single["ingest_cpu_s_per_1000"], single["ingest_cpu_s_per_1000_without_metrics"]
    figures = {
        "ingest_ratio": round(single["ingest_events_per_s"] / single["echo_msgs_per_s"], 3),
        # What the metrics cost the ingest, in percent: Daphne's CPU per stored event with them on
        # against the twin with them off (a rate swings with other tenants' load; CPU per event less).
        "metrics_cost_pct": round(100 * (cpu_with / cpu_without - 1), 1),
        "fanout_p99_ms": single["fanout_200"]["p99_ms"],
        "sessions_held": single["sessions_held"],
        "kb_per_session": single["kb_per_session"],
        "mint_overhead_ratio": mint["overhead_ratio"],
        "scaleout_cpu_ratio": round(two["daphne_cpu_s_per_1000"] / one["daphne_cpu_s_per_1000"], 3),
        "emulator_room_cpu_pct": emulated["room_cpu_pct"],
        "start_to_first_frame_ms": emulated["start_to_first_frame_ms"],
    }
    rows = [
        (
            "ingest_ratio",
            f"{single['ingest_events_per_s']} events/s stored",
            f"bare echo {single['echo_msgs_per_s']} msg/s",
        ),
        (
            "metrics_cost_pct",
            f"{cpu_with} / {cpu_without} CPU-s per 1000 ev",
            f"ingest_ratio {figures['ingest_ratio']} with, {ratio_without:.3f} without ({unmetered} ev/s)",
        ),
        (
            "fanout_p99_ms",
            f"200 sessions: p50 {single['fanout_200']['p50_ms']} ms",
            f"1,000 sessions: p50 {single['fanout_1000']['p50_ms']} / p99 {single['fanout_1000']['p99_ms']} ms",
        ),
        ("sessions_held", f"of {HOLD_SESSIONS} at {PACE:g} events/s", "one Daphne process"),
        ("kb_per_session", f"RSS {single['rss_before_mb']} -> {single['rss_idle_mb']} MB", "idle sockets"),
        (
            "mint_overhead_ratio",
            f"page beyond upstream {mint['overhead_median_ms']} ms",
            f"trivial view {mint['trivial_median_ms']} ms (page {mint['page_median_ms']} ms, medians)",
        ),
        (
            "scaleout_cpu_ratio",
            f"2 procs PG+Redis {two['daphne_cpu_s_per_1000']} s/1000 ev",
            f"1 proc defaults {one['daphne_cpu_s_per_1000']} s/1000 ev",
        ),
        (
            "emulator_room_cpu_pct",
            f"{emulated['conversation_seconds']} s, {emulated['questions']} questions, % of one core",
            f"idle Daphne {emulated['idle_cpu_pct']} %",
        ),
        (
            "start_to_first_frame_ms",
            f"median of {ROOM_STARTS} starts in Chromium",
            f"all: {emulated['first_frame_ms_all']}",
        ),
    ]
    print()
    print(f"{'figure':<20}{'value':>10}  {'target':<14}{'measured':<42}baseline / context")
    for key, measured, baseline in rows:
        print(f"{key:<20}{figures[key]:>10}  {verdict(key, figures[key]):<14}{measured:<42}{baseline}")
    report = {
        **figures,
        "raw": {"single_process": single, "mint": mint, "scaleout": scaleout, "room": emulated},
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "quick": QUICK,
        "seconds": round(time.monotonic() - started),
    }
    path = os.environ.get("BENCH_JSON", "bench.json")
    with open(path, "w") as out:
        json.dump(report, out, indent=2)
    print(f"\nFigures written to {path} ({report['seconds']} s).")


if __name__ == "__main__":
    main()
