"""``medimg_edge.batch`` and ``medimg-edge batch`` (issue 8).

A session archive of a few hundred generated files (phantom PNG, NPY and DICOM, some
corrupt) goes through the single-process path, the local process pool and a real Dask
``LocalCluster`` (scheduler and two worker processes on 127.0.0.1); the CLI runs in a
subprocess that is killed midway and then resumed.  Real files, real processes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pydicom = pytest.importorskip("pydicom")

import medimg_edge as me  # noqa: E402
from medimg_edge import batch  # noqa: E402
from medimg_edge.batch import _worker  # noqa: E402
from medimg_edge.cli.batch import main as batch_main  # noqa: E402

N_US, N_XR, N_DCM = 150, 100, 10
BAD = {"truncated.png": "bad_header", "garbage.dcm": None, "empty.npy": None}
SALT = b"test-salt-0123456789abcdef"


class Archive:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"
        self.manifest = root / "manifest.csv"
        self.salt = root / "salt.txt"
        self.dicoms: list[Path] = []
        self.uids: list[str] = []
        self.bad: list[Path] = []
        self.manifested: list[Path] = []

    @property
    def inputs(self) -> list[str]:
        return [str(self.manifest), str(self.images / "dicom"), str(self.images / "bad")]

    @property
    def n_files(self) -> int:
        return len(self.manifested) + len(self.dicoms) + len(self.bad)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    a = Archive(tmp_path_factory.mktemp("archive"))
    rows = ["path,modality"]
    us = me.synth.generate("ultrasound", N_US, seed=3, size=128)
    for k, s in enumerate(us):
        p = a.images / "us" / f"part{k % 3}" / f"Doe^Jane_{k:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(p), s.image)
        a.manifested.append(p)
        rows.append(f"{p.relative_to(a.root).as_posix()},ultrasound")
    xr = me.synth.generate("xray", N_XR, seed=4, size=128)
    for k, s in enumerate(xr):
        p = a.images / "xr" / f"xr_{k:04d}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, s.image)
        a.manifested.append(p)
        rows.append(f"{p},xray")  # absolute paths work too
    a.manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    tmp = a.root / "dcm_tmp"
    half = N_DCM // 2
    me.synth.write(me.synth.generate("ultrasound", half, seed=5, size=128), tmp / "u", fmt="dcm")
    me.synth.write(me.synth.generate("xray", half, seed=6, size=128), tmp / "x", fmt="dcm")
    dcm_dir = a.images / "dicom"
    (dcm_dir / "nested").mkdir(parents=True)
    for k, src in enumerate(sorted(tmp.rglob("*.dcm"))):
        # Archive-style names: some without a suffix (found by the DICM signature).
        name = f"IM{k:06d}" if k % 3 == 0 else f"img_{k:03d}.dcm"
        dst = dcm_dir / ("nested" if k % 2 else "") / name
        shutil.copyfile(src, dst)
        a.dicoms.append(dst)
        a.uids.append(str(pydicom.dcmread(dst, stop_before_pixels=True).SOPInstanceUID))
    shutil.rmtree(tmp)
    bad = a.images / "bad"
    bad.mkdir()
    (bad / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    (bad / "garbage.dcm").write_bytes(b"not a dicom file at all" * 3)
    (bad / "empty.npy").write_bytes(b"")
    (bad / ".hidden.png").write_bytes(b"skipped")
    (bad / "notes.txt").write_text("not an image", encoding="utf-8")
    a.bad = sorted(bad / n for n in BAD)
    a.salt.write_bytes(SALT)
    return a


def _comparable(table: Any) -> list[dict[str, Any]]:
    """Rows without what legitimately differs between engines (time on the worker)."""
    return table.drop_columns(["elapsed_ms"]).to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def serial(archive: Archive) -> Any:
    return batch.run(archive.inputs, scheduler="serial", salt_file=archive.salt)


@pytest.fixture(scope="module")
def dask_client() -> Any:
    """The engine's own ``local-dask`` cluster (two worker processes on 127.0.0.1)."""
    pytest.importorskip("distributed")
    from medimg_edge.batch._engine import local_cluster

    client, cluster = local_cluster(2)
    yield client
    client.close()
    cluster.close()


# -- inputs ------------------------------------------------------------------------------


def test_collect_folders_globs_manifests(archive: Archive, tmp_path: Path) -> None:
    found = [Path(s.path) for s in batch.collect(archive.images / "dicom")]
    assert sorted(found) == sorted(archive.dicoms)  # recursive, suffix-less DICOM found
    bad = [Path(s.path).name for s in batch.collect(archive.images / "bad")]
    assert sorted(bad) == sorted(BAD)  # hidden files and non-images skipped
    pattern = str(archive.images / "us" / "**" / "*.png")
    assert len(batch.collect(pattern)) == N_US
    man = batch.collect(archive.manifest)
    assert [Path(s.path) for s in man] == archive.manifested  # manifest order kept
    assert {s.modality for s in man} == {"ultrasound", "xray"}
    # Parquet manifest, relative paths, duplicates collapse to the first mention.
    pq.write_table(
        pa.table({"path": ["images/xr/xr_0000.npy", "images/xr/xr_0001.npy"]}),
        archive.root / "m.parquet",
    )
    both = batch.collect([archive.root / "m.parquet", archive.images / "xr"])
    assert len(both) == N_XR
    assert [Path(s.path).name for s in both[:2]] == ["xr_0000.npy", "xr_0001.npy"]
    with pytest.raises(me.InvalidInputError, match="no such file"):
        batch.collect(tmp_path / "missing")
    with pytest.raises(me.InvalidInputError, match="matches no file"):
        batch.collect(str(tmp_path / "*.png"))
    (tmp_path / "nopath.csv").write_text("file\na.png\n", encoding="utf-8")
    with pytest.raises(me.InvalidInputError, match="no 'path' column"):
        batch.collect(tmp_path / "nopath.csv")
    (tmp_path / "badmod.csv").write_text("path,modality\na.png,mri\n", encoding="utf-8")
    with pytest.raises(me.InvalidInputError, match="modality"):
        batch.collect(tmp_path / "badmod.csv")


# -- engines -----------------------------------------------------------------------------


def test_serial_results(archive: Archive, serial: Any) -> None:
    df = serial.to_pandas()
    assert len(df) == archive.n_files
    assert df["source_id"].is_unique
    ok = df[df["error_code"].isna()]
    assert len(ok) == archive.n_files - len(archive.bad)
    assert set(ok["modality"]) == {"ultrasound", "xray"}
    dcm = ok[ok["format"] == "dicom"]
    assert len(dcm) == N_DCM and set(dcm["modality_source"]) == {"dicom"}
    assert set(ok[ok["format"] != "dicom"]["modality_source"]) == {"manifest"}
    assert ok["diag_status"].isin(["positive", "negative", "indeterminate"]).all()
    assert set(ok["model_name"]) == {"us_lesion", "xray_chest_nodule"}
    assert ok[list(batch.FEATURE_COLUMNS)].notna().all().all()
    assert ok[list(batch.QUALITY_COLUMNS)].notna().all().all()
    # The row of a file equals what the package computes for it directly.
    one = archive.manifested[0]
    row = ok[ok["content_sha256"] == hashlib.sha256(one.read_bytes()).hexdigest()].iloc[0]
    image = me.io.read_image(one)
    feats = me.features.extract(image)
    assert row["feat_glcm_contrast_d1"] == feats["glcm_contrast_d1"]
    diag = me.Diagnoser(modality="ultrasound", delegate="cpu", num_threads=1).diagnose(image)
    assert row["diag_status"] == diag.status
    assert row["diag_positive_score"] == pytest.approx(diag.positive_score, abs=1e-12)


def test_dask_localcluster_equals_serial(archive: Archive, serial: Any, dask_client: Any) -> None:
    table = batch.run(archive.inputs, scheduler=dask_client, chunk_size=16, salt_file=archive.salt)
    assert _comparable(table) == _comparable(serial)
    # One Diagnoser per worker process and modality, reused across its many tasks.
    built = dask_client.run(_worker.diagnosers_built)
    assert len(built) == 2
    assert all(1 <= n <= 2 for n in built.values()), built
    assert sum(built.values()) < archive.n_files // 16  # far fewer than tasks


def test_cli_scheduler_address(
    archive: Archive, serial: Any, dask_client: Any, tmp_path: Path
) -> None:
    # The command line connects to the running scheduler by its tcp:// address.
    address = dask_client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    out = tmp_path / "out"
    args = [*archive.inputs, "--out", str(out), "--salt-file", str(archive.salt)]
    assert batch_main([*args, "--scheduler", address, "--json"]) == 1  # corrupt files
    assert _comparable(batch.read(out)) == _comparable(serial)


def test_local_dask_cluster_by_name(archive: Archive, tmp_path: Path) -> None:
    summary = batch.execute(
        archive.images / "dicom", out=tmp_path / "o", scheduler="local-dask", workers=1
    )
    assert (summary.scheduler, summary.workers, summary.done) == ("dask", 1, N_DCM)


def test_local_pool_equals_serial(archive: Archive, serial: Any, tmp_path: Path) -> None:
    summary = batch.execute(archive.inputs, out=tmp_path / "out", workers=2, salt_file=archive.salt)
    assert (summary.scheduler, summary.workers) == ("local", 2)
    assert summary.total == archive.n_files
    assert summary.failed == len(archive.bad) and summary.skipped == 0
    assert _comparable(batch.read(tmp_path / "out")) == _comparable(serial)


# -- failures, schema, privacy -----------------------------------------------------------


def test_failures_recorded_per_file(archive: Archive, serial: Any) -> None:
    df = serial.to_pandas()
    failed = df[df["error_code"].notna()]
    assert len(failed) == len(archive.bad)
    assert failed["content_sha256"].notna().all()  # the bytes were readable
    assert (failed["error_message"].str.len() > 10).all()
    for msg in failed["error_message"]:
        assert not any(p.name in msg for p in archive.bad), msg
    codes = dict(zip(failed["format"].fillna("?"), failed["error_code"], strict=True))
    assert codes["png"] == BAD["truncated.png"]
    # The readers' own codes, never an unexpected exception.
    reader_codes = set(getattr(me.io, "ERROR_CODES", ())) | {"unreadable_image"}
    assert set(failed["error_code"]) <= reader_codes
    assert failed[list(batch.FEATURE_COLUMNS)].isna().all().all()


def test_unknown_modality_and_what(archive: Archive) -> None:
    # PNG files without a manifest have no modality: diagnosis fails for them, with a
    # code; features alone need no modality.
    files = [str(p) for p in archive.manifested[:4]]
    t = batch.run(files, scheduler="serial", what="diagnosis,quality")
    assert set(t.column("error_code").to_pylist()) == {"unknown_modality"}
    assert all(v is not None for v in t.column("quality_ok").to_pylist())
    t = batch.run(files, scheduler="serial", what=["features"])
    assert t.column("error_code").null_count == 4
    assert t.column("diag_status").null_count == 4
    assert t.column("quality_ok").null_count == 4
    t = batch.run(files, scheduler="serial", what="diagnosis", modality="ultrasound")
    assert set(t.column("modality_source").to_pylist()) == {"option"}
    assert t.column("error_code").null_count == 4
    with pytest.raises(me.InvalidInputError, match="unknown what"):
        batch.run(files, what="features,colour")
    with pytest.raises(me.InvalidInputError, match="scheduler"):
        batch.run(files, scheduler="yarn")


def test_schema_documented_and_written(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "out"
    batch.execute(archive.inputs[1:], out=out, scheduler="serial", rows_per_part=5, chunk_size=5)
    parts = sorted(out.glob("part-r0001-*.parquet"))
    assert len(parts) == 3  # 10 DICOM + 3 bad files, 5 rows a part
    for part in parts:
        written = pq.read_schema(part)
        assert written.equals(batch.schema(), check_metadata=False)
        assert written.metadata[b"medimg_edge.batch.schema_version"] == b"1"
    assert batch.read(out).schema.equals(batch.schema(), check_metadata=False)
    # Every column is in the docstring table (patterns for the generated ones).
    doc = batch.__doc__ or ""
    for name in batch.schema().names:
        if name.startswith("feat_"):
            assert "``feat_<name>``" in doc
        elif name.startswith("quality_") and name[8:] in me.quality.MEASURES:
            assert "``quality_<measure>``" in doc
        else:
            assert f"``{name}``" in doc, name
    types = {f.name: str(f.type) for f in batch.schema()}
    assert types["diag_scores"] == "map<string, double>"
    assert types["quality_issues"] == "list<item: string>"
    assert types["run"] == "int32" and types["file_size"] == "int64"
    assert not batch.schema().field("source_id").nullable


def _strings(table: Any) -> list[str]:
    out: list[str] = []
    for row in table.to_pylist():
        for v in row.values():
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                out.extend(str(x) for x in v)
    return out


def test_privacy_default_and_keep_ids(archive: Archive, serial: Any, tmp_path: Path) -> None:
    cells = "\n".join(_strings(serial))
    assert serial.column("path").null_count == serial.num_rows
    assert serial.column("sop_instance_uid").null_count == serial.num_rows
    for p in [*archive.manifested, *archive.dicoms, *archive.bad]:
        assert p.name not in cells and str(p.parent) not in cells
    assert "Doe^Jane" not in cells
    for uid in archive.uids:
        assert uid not in cells
    # The hashes are HMAC-SHA256 with the salt (recomputable by whoever holds it).
    sids = set(serial.column("source_id").to_pylist())
    one = str(archive.dicoms[0])
    assert hmac.new(SALT, f"path:{one}".encode(), hashlib.sha256).hexdigest() in sids
    iids = set(serial.column("instance_id").drop_null().to_pylist())
    want = {hmac.new(SALT, f"uid:{u}".encode(), hashlib.sha256).hexdigest() for u in archive.uids}
    assert iids == want
    # --keep-ids writes the identifiers.
    kept = batch.run(archive.inputs[1:2], scheduler="serial", keep_ids=True)
    assert sorted(kept.column("path").to_pylist()) == sorted(str(p) for p in archive.dicoms)
    assert set(kept.column("sop_instance_uid").to_pylist()) == set(archive.uids)


def test_salt_generated_kept_private_and_env(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(batch.SALT_ENV, raising=False)
    files = [str(p) for p in archive.dicoms[:2]]
    out = tmp_path / "res.parquet"
    first = batch.run(files, out=out, scheduler="serial")
    salt_file = batch.salt_path(out)
    assert salt_file == tmp_path / "res.parquet.salt" and salt_file.is_file()
    assert salt_file.stat().st_mode & 0o777 == 0o600
    again = batch.run(files, out=out, scheduler="serial")  # resumed: same hashes
    assert again.column("source_id").to_pylist() == first.column("source_id").to_pylist()
    monkeypatch.setenv(batch.SALT_ENV, SALT.decode())
    env = batch.run(files, scheduler="serial")
    sids = set(env.column("source_id").to_pylist())
    assert hmac.new(SALT, f"path:{files[0]}".encode(), hashlib.sha256).hexdigest() in sids
    monkeypatch.setenv(batch.SALT_ENV, "short")
    with pytest.raises(me.InvalidInputError, match="at least 16"):
        batch.run(files, scheduler="serial")


# -- resume ------------------------------------------------------------------------------


def _cli(archive: Archive, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medimg_edge.cli.batch",
        *archive.inputs,
        "--out",
        str(out),
        "--salt-file",
        str(archive.salt),
        "--no-progress",
        *extra,
    ]


def test_resume_after_killed_run(archive: Archive, serial: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = _cli(archive, out, "--workers", "2", "--chunk-size", "4", "--rows-per-part", "8")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no part written"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pool workers
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = batch.read(out)
    assert 0 < partial.num_rows < archive.n_files, "the run was not interrupted midway"
    ok_before = partial.column("error_code").null_count
    (out / ".tmp-part-r0001-99999.parquet").write_bytes(b"half a part")  # as a kill leaves

    res = subprocess.run(
        [*_cli(archive, out, "--scheduler", "serial"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1, res.stderr  # the corrupt files failed again
    import json

    summary = json.loads(res.stdout)
    assert summary["run"] == 2
    assert summary["skipped"] == ok_before
    assert summary["done"] == archive.n_files - len(archive.bad) - ok_before
    assert summary["failed"] == len(archive.bad)
    assert not list(out.glob(".tmp-*"))
    assert "failed bad_header: 1" in res.stderr
    final = batch.read(out)
    assert _comparable(final.drop_columns(["run"])) == _comparable(serial.drop_columns(["run"]))

    # Third run: nothing left but the failures, which are retried.
    summary3 = batch.execute(archive.inputs, out=out, scheduler="serial", salt_file=archive.salt)
    assert (summary3.run, summary3.done, summary3.failed) == (3, 0, len(archive.bad))
    assert summary3.skipped == archive.n_files - len(archive.bad)
    assert batch.read(out).num_rows == archive.n_files
    history = batch.read(out, all_runs=True)
    assert history.num_rows > archive.n_files
    # A different configuration redoes everything.
    summary4 = batch.execute(
        archive.inputs[1:], out=out, what="features", scheduler="serial", salt_file=archive.salt
    )
    assert summary4.skipped == 0 and summary4.done == N_DCM


def test_changed_file_is_redone(archive: Archive, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in archive.dicoms[:3]:
        shutil.copyfile(p, src / p.name)
    out = tmp_path / "out"
    s1 = batch.execute(src, out=out, scheduler="serial")
    assert s1.done == 3
    changed = sorted(src.iterdir())[0]
    ds = pydicom.dcmread(changed)
    ds.PixelData = bytes(255 - b for b in ds.PixelData)
    ds.save_as(changed)
    s2 = batch.execute(src, out=out, scheduler="serial")
    assert (s2.skipped, s2.done) == (2, 1)
    rows = batch.read(out)
    assert rows.num_rows == 3 and sorted(rows.column("run").to_pylist()) == [1, 1, 2]


# -- command line ------------------------------------------------------------------------


def test_cli_usage_errors(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o")
    assert batch_main([str(tmp_path / "nothing"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert batch_main([str(archive.images / "dicom"), "--out", out, "--what", "x"]) == 2
    (tmp_path / "file.parquet").write_bytes(b"x")
    code = batch_main([str(archive.images / "dicom"), "--out", str(tmp_path / "file.parquet")])
    assert code == 2 and "not a folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("mine", encoding="utf-8")
    assert batch_main([str(archive.images / "dicom"), "--out", str(other)]) == 2
    assert "not written by medimg-edge" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert batch_main([str(empty), "--out", out]) == 2
    assert "no image files found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        batch_main(["--out", out])  # no INPUT


def test_cli_run_ok(archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code = batch_main(
        [str(archive.images / "dicom"), "--out", str(out), "--scheduler", "serial", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"{N_DCM} done, 0 skipped" in captured.err
    assert '"done": 10' in captured.out
    assert batch.read(out).num_rows == N_DCM


def test_worker_death_recorded_and_pool_replaced(
    archive: Archive, serial: Any, tmp_path: Path
) -> None:
    import multiprocessing
    import threading

    out = tmp_path / "out"
    killed: list[int] = []
    others = {p.pid for p in multiprocessing.active_children()}  # e.g. the Dask workers

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.005)
        mine = [p.pid for p in multiprocessing.active_children() if p.pid not in others]
        if mine and mine[0] is not None:  # one of this run's pool workers
            os.kill(mine[0], signal.SIGKILL)
            killed.append(mine[0])

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    summary = batch.execute(
        archive.inputs,
        out=out,
        workers=2,
        chunk_size=2,
        rows_per_part=2,
        salt_file=archive.salt,
    )
    killer.join()
    assert killed, "no worker to kill"
    crashed = summary.failed_by_code.get("worker_crashed", 0)
    assert 1 <= crashed < archive.n_files
    assert summary.done + summary.failed == archive.n_files
    assert summary.done > 0  # a new pool finished the rest
    rows = batch.read(out).to_pandas()
    assert (
        rows["error_message"][rows["error_code"] == "worker_crashed"].str.contains("died")
    ).all()
    # Resuming redoes the crashed chunks.
    again = batch.execute(archive.inputs, out=out, scheduler="serial", salt_file=archive.salt)
    assert again.done == crashed
    final = batch.read(out).drop_columns(["run"])
    assert _comparable(final) == _comparable(serial.drop_columns(["run"]))


def test_missing_file_in_manifest_is_a_row(archive: Archive, tmp_path: Path) -> None:
    man = tmp_path / "m.csv"
    man.write_text(f"path\n{archive.dicoms[0]}\ngone/Smith^John.dcm\n", encoding="utf-8")
    t = batch.run(man, scheduler="serial").to_pandas()
    assert sorted(t["error_code"].fillna("ok")) == ["no_such_file", "ok"]
    assert "Smith" not in " ".join(t["error_message"].dropna())


# -- worker cache, special files, quality from the diagnosis --------------------------------


def test_warm_pool_builds_each_diagnoser_once(archive: Archive) -> None:
    # Runs without --out draw a new random salt each time (a new config): the warm
    # worker still reuses its Diagnoser across runs.
    from medimg_edge.batch._engine import local_pool

    files = [str(p) for p in archive.manifested[-6:]]  # X-ray NPY files
    with local_pool(1) as pool:
        tables = [
            batch.run(files, scheduler=pool, what="diagnosis", modality="xray", keep_ids=True)
            for _ in range(3)
        ]
        built = pool.submit(_worker.diagnosers_built).result()
    assert built == 1
    for t in tables:
        assert t.column("error_code").null_count == len(files)
    by_path = [
        dict(zip(t.column("path").to_pylist(), t.column("diag_status").to_pylist(), strict=True))
        for t in tables
    ]
    assert by_path[0] == by_path[1] == by_path[2]
    assert len({t.column("source_id")[0].as_py() for t in tables}) == 3  # three salts


def test_fifo_in_archive_is_a_row_not_a_hang(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copyfile(archive.dicoms[0], folder / "ok.dcm")
    os.mkfifo(folder / "pipe.png")  # an image suffix: collected, never opened blocking
    os.mkfifo(folder / "IM000009")  # no suffix: probed for DICOM without blocking
    script = (
        "import json, sys\n"
        "from medimg_edge import batch\n"
        "t = batch.run(sys.argv[1], scheduler='serial', keep_ids=True)\n"
        "print(json.dumps(t.select(['path', 'error_code', 'error_message']).to_pylist()))\n"
    )
    # A child process with a timeout: a blocking open() of a FIFO would hang forever.
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    import json

    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"ok.dcm", "pipe.png"}
    assert rows["ok.dcm"]["error_code"] is None
    assert rows["pipe.png"]["error_code"] == "unreadable"
    assert "regular file" in rows["pipe.png"]["error_message"]


def test_quality_columns_same_with_and_without_diagnosis(archive: Archive, serial: Any) -> None:
    # With diagnosis asked too (the serial run), the quality columns come from the
    # Diagnosis's report: they must equal quality.assess's (a quality-only run).
    alone = batch.run(archive.inputs, scheduler="serial", what="quality", salt_file=archive.salt)
    cols = ["source_id", *batch.QUALITY_COLUMNS, "quality_ok", "quality_issues"]
    cols += ["quality_thresholds"]
    assert serial.column("quality_ok").null_count == len(archive.bad)
    assert serial.select(cols).to_pylist() == alone.select(cols).to_pylist()
