"""The cluster on a real 2-node Ray cluster (`ray start` twice, one CPU a node), inside a private network
namespace with only the loopback up (cluster_scenarios.py runs there and reports; the tests here judge):
predictions equal to the single-process runtime, the command line's events equal, Ray Client (ray://) equal to
auto, --save writing every frame on the nodes, the web view over it, the archive mode equal to one-by-one and
resumable after a kill, a killed or frozen driver's shards stopped (by Ray, or by their lease) and the same
command starting again with the events file whole, and a killed node's cameras moved within 10 s with no event
duplicated or lost outside the outage, their recordings cut at the kill and going on in a second part, and a
node that joins mid-run taking its share of the live cameras. Plus what needs no cluster: the address, the
hashing, the flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from web_helpers import ROOT

from stream.cluster.address import parse_cluster_address
from stream.cluster.controller import choose_shard, rendezvous, to_move

HERE = Path(__file__).resolve().parent


def namespace_problem() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed to make a private network namespace"
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "ip", "link", "set", "lo", "up"],
        capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot make a private network namespace here: {probe.stderr.strip()[:200]}"
    return None


def scenarios_in_namespace(work: Path, scenarios: str, setup: str, timeout: float) -> dict:
    """Run the scenarios file `scenarios` (in this folder) inside a private network namespace made by
    `setup`; what it wrote to WORK/results.json (skipped where no namespace can be made)."""
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    script = f"{setup} && exec {sys.executable} {HERE / scenarios} {work}"
    proc = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", script],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    path = work / "results.json"
    assert path.exists(), f"the scenarios wrote no results (rc {proc.returncode}): {proc.stderr[-3000:]}"
    found = json.loads(path.read_text())
    assert "error" not in found, found["error"]
    return found


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    return scenarios_in_namespace(work, "cluster_scenarios.py", "ip link set lo up", timeout=900)


def scenario(results, name):
    found = results[name]
    assert "error" not in found, found["error"]
    return found


@pytest.mark.timeout(900)
def test_four_cameras_over_two_nodes_predict_as_one_process(results):
    same = scenario(results, "same")
    assert all(a == b and a > 0 for a, b in same["counts"].values()), same["counts"]
    assert same["worst_abs_diff"] <= 1e-5, same
    assert len(set(same["shards"].values())) == 2, f"both nodes should serve cameras: {same['shards']}"


@pytest.mark.timeout(900)
def test_run_camera_cluster_auto_writes_the_same_events(results):
    same = scenario(results, "same")
    assert same["cli_rc"] == {"cluster": 0}, same["cli_stderr"]
    assert "Traceback" not in same["cli_stderr"]
    assert same["cli_events"] > 0 and same["cli_events_equal"], same["cli_stderr"]
    assert len(same["cli_shards"]) == 2, same["cli_shards"]


@pytest.mark.timeout(900)
def test_ray_client_gives_the_predictions_of_auto_and_wants_the_token(results):
    client = scenario(results, "same")["client"]
    if "skipped" in client:
        pytest.skip(client["skipped"])
    assert "error" not in client, client["error"]
    assert len(client["counts"]) == 2, client
    assert all(a == b and a > 0 for a, b in client["counts"].values()), client["counts"]
    assert client["worst_abs_diff"] <= 1e-5, client
    assert len(set(client["shards"].values())) == 2, f"both nodes should serve cameras: {client['shards']}"
    assert not any("authentication off" in line for line in client["said"]), client["said"]
    assert client["no_token_rc"] != 0, client["no_token_stderr"]
    stderr = client["no_token_stderr"]
    assert "wants a token" in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.timeout(900)
def test_save_over_two_nodes_writes_every_frame_where_the_summary_says(results):
    save = scenario(results, "save")
    assert save["rc"] == 0 and "Traceback" not in save["stderr"], save["stderr"]
    assert save["files"] == ["cam0.mp4", "cam1.mp4", "cam2.mp4"], save["files"]
    shards = set()
    for cam, c in save["cameras"].items():
        assert c["source_frames"] > 0 and c["frames"] == c["saved_frames"] == c["source_frames"], (cam, c)
        (part,) = c["recordings"]
        assert part["part"] == 1 and part["path"].endswith(f"/{cam}.mp4"), part
        assert part["state"] == "finalised" and part["shard"] == c["shard"], part
        assert part["node"] == "127.0.0.1" and part["node_id"], part
        assert part["frames"] == part["decoded"] == c["source_frames"], (cam, part)
        shards.add(part["shard"])
    assert len(shards) == 2, f"both nodes should record cameras: {save['cameras']}"


@pytest.mark.timeout(900)
def test_a_killed_nodes_recordings_play_to_the_kill_and_go_on_in_a_second_part(results):
    f = scenario(results, "failover")
    killed, recordings = f["kill"]["shard"], f["recordings"]
    assert f["moved"], "the killed node had no camera"
    for cam, parts in recordings.items():
        if cam not in f["moved"]:
            (part,) = parts
            assert part["state"] == "finalised" and part["shard"] != killed, part
            assert part["decoded"] == part["frames"] > 0, part
            continue
        first, second = parts
        assert (first["part"], second["part"]) == (1, 2), parts
        assert first["path"].endswith(f"/{cam}.mp4") and second["path"].endswith(f"/{cam}.part2.mp4"), parts
        assert first["shard"] == killed and first["state"] == "node lost", first
        assert second["shard"] != killed and second["node_id"] != first["node_id"], parts
        assert second["state"] == "finalised" and second["decoded"] == second["frames"] > 0, second
        # the first part plays up to within a second of the kill: of the frames the driver had heard were
        # written (shortly before the kill), at most a second's (one fragment) does not decode
        heard, age = f["kill"]["heard"][cam]
        assert first["decoded"] is not None and first["decoded"] > 0 and first["fps"], first
        assert (heard - first["decoded"]) / first["fps"] <= 1.0 + 1e-9, (cam, heard, first)
        assert age <= 0.5, f"the driver had not heard of {cam}'s recording for {age} s before the kill"


@pytest.mark.timeout(900)
def test_the_web_view_works_over_the_cluster(results):
    web = scenario(results, "web")
    assert web["up"] and web["both_live"], web
    code, shape = web["snapshot"]
    assert code == 200 and shape is not None and shape[0] >= 96 and shape[2] == 3, web  # a real JPEG
    assert web["add"] == 201 and web["added_live"], web
    assert web["remove"] == 200 and web["after"] == ["a", "c"], web
    assert web["events"] is not None and web["metrics"], web
    assert web["rc"] == 0 and "Traceback" not in web["stderr"], web["stderr"]


@pytest.mark.timeout(900)
def test_archive_on_the_cluster_equals_one_by_one_and_resumes_after_a_kill(results):
    arch = scenario(results, "archive")
    assert arch["rc"] == [0, 0, 0], arch["stderr"]
    assert arch["videos"] == [12, 12, 12] and arch["all_done"], arch
    assert arch["events"] > 0
    assert arch["cluster_equal"], "the cluster's events or per-second predictions differ from one by one"
    assert arch["killed_after"] is not None and 3 <= arch["killed_after"] < 12, arch
    assert arch["kept_untouched"], "videos finished before the kill were done again"
    assert arch["said_already_done"], arch["stderr"]
    assert arch["resumed_equal"], "the resumed run's results differ from one by one"


def alternates(kinds):
    """start, end, start, end ... (an event duplicated or lost breaks it)."""
    return all(k == ("start" if i % 2 == 0 else "end") for i, k in enumerate(kinds))


@pytest.mark.timeout(900)
def test_a_killed_node_moves_its_cameras_within_10_s_without_duplicating_events(results):
    f = scenario(results, "failover")
    assert f["kill"]["raylet_comm"] == "raylet" and f["kill"]["pids"] >= 2, f["kill"]
    assert f["moved"], "the killed node had no camera"
    for cam, seconds in f["back_s"].items():
        assert seconds is not None and seconds <= 10.0, f"{cam} came back after {seconds} s"
    for cam, gap in f["stayed_max_gap_s"].items():
        assert gap is not None and gap < 1.5, f"{cam}, on the surviving node, stalled for {gap} s"
    for cam, s in f["summary"].items():
        assert s["moves"] == (1 if cam in f["moved"] else 0), (cam, s)
        assert s["shard"] != f["kill"]["shard"]
    assert f["duplicate_lines"] == 0
    for cam, events in f["per_camera"].items():
        kinds = [k for k, _ in events]
        assert alternates(kinds), f"{cam}: events do not alternate start/end: {kinds}"
        counts = f["shard_events"][cam]  # what each shard it ran on said it fired
        if cam not in f["moved"]:
            assert len(kinds) == counts[-1], (cam, len(kinds), counts)
        else:
            # the old shard's events up to its last answer, its open event closed, the new shard's own
            expected = sum(counts) + counts[0] % 2
            assert expected <= len(kinds) <= expected + 2, (cam, len(kinds), counts)
    assert sum(Counter(k for k, _ in e)["start"] for e in f["per_camera"].values()) > 0


@pytest.mark.timeout(900)
def test_a_node_that_joins_takes_its_share_of_the_live_cameras(results):
    j = scenario(results, "join")
    assert "error" not in j["joined"], j["joined"]
    assert len(j["first"]) == 1 and len(j["new"]) == 1, j
    (head,), (new,) = j["first"], j["new"]
    assert len(j["moved"]) == 2, j  # 4 cameras, two 1-CPU nodes: its share is 2
    assert any("joined" in line for line in j["said"]), j["said"]
    for cam, seconds in j["back_s"].items():
        assert seconds is not None and seconds <= 30.0, (
            f"{cam} predicted on the new node {seconds} s after it joined"
        )
    for cam, gap in j["stayed_max_gap_s"].items():
        assert gap is not None and gap < 3.0, f"{cam}, which stayed, stalled for {gap} s"
    assert j["duplicate_lines"] == 0
    for cam, kinds in j["per_camera"].items():
        assert alternates(kinds), f"{cam}: events do not alternate start/end: {kinds}"
    for cam, s in j["summary"].items():
        parts = j["recordings"][cam]
        if cam in j["moved"]:
            assert (s["shard"], s["moves"]) == (new, 1), (cam, s)
            first, second = parts
            assert (first["shard"], second["shard"]) == (head, new), parts
            assert second["path"].endswith(f"/{cam}.part2.mp4"), second
        else:
            assert (s["shard"], s["moves"]) == (head, 0), (cam, s)
        for part in parts:  # the part it left was finalised as it left; the others at the end
            assert part["state"] == "finalised" and part["decoded"] == part["frames"] > 0, (cam, part)


def busy_then_stopped(run: dict, watched: str, within: float) -> None:
    """Both shards ran their cameras before (CPU time in the second before), and each stopped (its process
    gone, or idle from then on) within `within` seconds."""
    assert run["alive"], f"the run ended before it was killed or frozen: {run['stderr']}"
    assert len(run["busy"]) == 2, f"the run should have had a shard on each node: {run['busy']}"
    for pid, busy in run["busy"].items():
        assert busy >= 0.1, f"shard {pid} was not running its cameras ({busy} CPU s in 1 s): {run['busy']}"
    for pid, w in run[watched].items():
        assert w["stopped_s"] is not None and w["stopped_s"] <= within, f"shard {pid}, {watched}: {w}"


@pytest.mark.timeout(900)
def test_a_killed_driver_s_shards_stop_and_the_same_command_starts_again(results):
    r = scenario(results, "restart")
    lease = 3.0  # --cluster-lease's default, which the command keeps
    # killed: Ray kills the driver's actors with it (their processes: gone), long before the lease
    busy_then_stopped(r["killed"], "after_kill", lease)
    assert all(w["gone"] for w in r["killed"]["after_kill"].values()), r["killed"]
    # frozen (SIGSTOP): alive to Ray, silent to its shards: each stops its cameras itself by its lease, before
    # the lease and the driver's 1 s more (when a driver would move them), and its process ends itself 10 s
    # later (exit_after_s): the next run, started while this driver is still frozen, gets the nodes' CPUs
    busy_then_stopped(r["frozen"], "stopped", lease + 1.0)
    for pid, w in r["frozen"]["stopped"].items():
        assert w["gone_s"] is not None and lease + 9.0 <= w["gone_s"] <= lease + 10.0 + 4.0, (pid, w)
    again = r["again"]
    assert again["rc"] == 0 and "Traceback" not in again["stderr"], again["stderr"]
    assert sorted(again["cameras"]) == ["r0", "r1"], again
    assert all(c["predictions"] > 0 for c in again["cameras"].values()), again
    assert len({c["shard"] for c in again["cameras"].values()}) == 2, f"both nodes again: {again}"
    assert r["unparsed"] == [] and r["ends_whole"], f"half lines: {r['unparsed']}"
    assert r["duplicate_lines"] == 0
    *cut_short, last = r["per_camera"]
    for run, per_camera in zip(("killed", "frozen"), cut_short, strict=True):
        assert sum(map(len, per_camera.values())) >= 1, f"the {run} run wrote no event"
        for cam, kinds in per_camera.items():  # its open event, if any, never closed: its driver died
            assert alternates(kinds), f"{cam}, the {run} run: events do not alternate start/end: {kinds}"
    for cam, kinds in last.items():  # every event the last run opened, it closed
        assert alternates(kinds) and len(kinds) % 2 == 0, f"{cam}, the last run: {kinds}"


# -- no cluster needed ----------------------------------------------------------------------------------
def test_a_joining_shard_takes_the_cameras_that_rank_it_highest():
    cams = [f"cam{i}" for i in range(40)]
    shards = ["node-a", "node-b", "node-new"]
    chosen = to_move(cams, shards, "node-new", 13)
    assert len(chosen) == 13 and chosen == sorted(chosen)
    firsts = [c for c in cams if rendezvous(c, shards)[0] == "node-new"]
    if len(firsts) >= 13:
        assert set(chosen) <= set(firsts)
    else:
        assert set(firsts) <= set(chosen)
    assert to_move(cams, shards, "node-new", 0) == [] and len(to_move(cams[:3], shards, "node-new", 9)) == 3


def test_cluster_addresses():
    assert parse_cluster_address("auto").kind == "auto"
    assert parse_cluster_address("local:2").nodes == 2
    local = parse_cluster_address("local:3x2")
    assert (local.nodes, local.cpus, str(local)) == (3, 2, "local:3x2")
    assert parse_cluster_address("ray://10.0.0.5:10001").url == "ray://10.0.0.5:10001"
    for bad in ("", "local", "local:0", "local:2x0", "ray://host", "http://h:1", "ray://h:70000", "10.0.0.5"):
        with pytest.raises(ValueError):
            parse_cluster_address(bad)


def test_rendezvous_is_stable_and_a_lost_shard_moves_only_its_cameras():
    shards = ["node-a", "node-b", "node-c"]
    cams = [f"cam{i}" for i in range(60)]
    first = {c: rendezvous(c, shards)[0] for c in cams}
    assert first == {c: rendezvous(c, list(reversed(shards)))[0] for c in cams}  # order-free
    assert len(set(first.values())) == 3
    after = {c: rendezvous(c, ["node-a", "node-c"])[0] for c in cams}
    assert all(after[c] == first[c] for c in cams if first[c] != "node-b")


def test_bounded_loads_keep_nodes_even_by_their_cpus():
    load, cpus = {"a": 0, "b": 0}, {"a": 1, "b": 1}
    for i in range(7):
        load[choose_shard(f"cam{i}", load, cpus)] += 1
    assert sorted(load.values()) == [3, 4]
    load, cpus = {"a": 0, "b": 0}, {"a": 3, "b": 1}
    for i in range(8):
        load[choose_shard(f"cam{i}", load, cpus)] += 1
    assert load == {"a": 6, "b": 2}


def test_cluster_flag_errors_are_one_line(tmp_path):
    for args, says in (
        (["--cluster", "local:0"], "local:N wants 1 to 64 nodes"),
        (["--cluster", "nowhere"], "give auto"),
        (["--cluster", "local:2", "--cluster-lease", "0.1"], "--cluster-lease 0.1"),
    ):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run_camera.py"), *args], capture_output=True, text=True, cwd=ROOT,
            timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_save_with_cluster_wants_a_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_camera.py"),
         "--cluster", "local:2", "--save", str(tmp_path / "a.mp4")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "with several cameras or --cluster give a folder" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
