import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _segpipe(*args, cwd=ROOT, env=None):
    return subprocess.run(
        [sys.executable, "-c", "from segpipe.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=env,
    )


def test_help_lists_every_stage():
    result = _segpipe("--help")
    assert result.returncode == 0
    for command in ("run", "ingest", "train", "predict", "score", "report", "catalog", "models"):
        assert command in result.stdout


def test_help_reflows_paragraphs_to_the_terminal():
    """A docstring's line breaks are not the terminal's: a paragraph is one line when it fits."""
    import os

    import segpipe.cli.run

    doc = segpipe.cli.run.run.__doc__
    paragraph = " ".join(doc.split("\n\n")[1].split())  # "With no Prefect server ...", several source lines
    result = _segpipe("run", "--help", env={**os.environ, "COLUMNS": "2000"})
    assert result.returncode == 0, result.stderr
    assert paragraph in [" ".join(line.split()) for line in result.stdout.splitlines()]


def test_catalog_command_lists_bundled_datasets():
    result = _segpipe("catalog")
    assert result.returncode == 0, result.stderr
    assert "bbbc007: 2D" in result.stdout and "dsb2018-nuclei" in result.stdout


def test_bad_input_exits_nonzero_with_the_file_named(crop_catalog, tmp_path):
    bad = crop_catalog.parent / "labels" / "A9_p5d.tif"
    bad.write_bytes(b"")
    result = _segpipe("ingest", "crops", "--catalog", str(crop_catalog), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "A9_p5d.tif: file is empty (0 bytes)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_under_run_is_said_once(crop_catalog, tmp_path):
    """Prefect's task and flow records said it three times above the command's own line."""
    import os

    (crop_catalog.parent / "labels" / "A9_p5d.tif").write_bytes(b"")
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    result = _segpipe("run", "crops", "--catalog", str(crop_catalog), "--output", str(tmp_path / "out"), env=env)
    assert result.returncode == 2, result.stderr
    said = [line for line in result.stderr.splitlines() if "file is empty" in line]
    assert said == [f"error: {crop_catalog.parent / 'labels' / 'A9_p5d.tif'}: file is empty (0 bytes)"], result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_that_is_not_a_tiff_is_one_line_without_tifffiles_warning(crop_catalog, tmp_path):
    """tifffile warned "invalid offset to first page" above segpipe's own line for the same file."""
    bad = crop_catalog.parent / "images" / "A9_p5d.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    result = _segpipe("ingest", "crops", "--catalog", str(crop_catalog), "--output", str(tmp_path / "out"))
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip() and "ingest crops" not in line]
    assert result.returncode == 2 and len(lines) == 1 and "tifffile" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "A9_p5d.tif: not a readable TIFF" in lines[0]


def test_sigterm_ends_a_run_and_its_embedded_prefect_server(crop_catalog, tmp_path):
    """`segpipe run` stopped with SIGTERM stops the Prefect server it started (and every other child)."""
    import contextlib
    import os
    import signal
    import time

    import psutil

    run = subprocess.Popen(
        [sys.executable, "-c", "from segpipe.cli import main; main()", "run", "crops", "--catalog", str(crop_catalog),
         "--output", str(tmp_path / "out"), "--epochs", "50"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")},
    )
    children: list = []
    try:
        parent = psutil.Process(run.pid)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and run.poll() is None:  # the server is up and the flow is training
            children = parent.children(recursive=True)
            if any("uvicorn" in " ".join(c.cmdline()) for c in children) and (tmp_path / "out" / "crops" / "model").is_dir():
                break
            time.sleep(0.1)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in children), "the embedded server never started"
        children = parent.children(recursive=True)
        os.kill(run.pid, signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [" ".join(p.cmdline())[:100] for p in alive]
        assert run.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-2000:]
        # it said nothing (Ctrl-C says how to resume)
        assert "stopped (SIGTERM): run the same command again to resume" in stderr, stderr[-2000:]
    finally:  # never leave them behind, even when the test fails
        if run.poll() is None:
            run.kill()
        run.communicate()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()


def _stopped_by_sigterm(tmp_path, script: str) -> tuple[int, str, float]:
    """Run ``python -c script segment --model cells-2d BIG.tif``, SIGTERM it once it is under way;
    returns its exit code, its stderr and the seconds it took to end after the signal."""
    import os
    import signal
    import time

    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "big.tif", np.random.default_rng(0).integers(0, 255, (3072, 3072), dtype=np.uint8))
    run = subprocess.Popen([sys.executable, "-c", script, "segment", "--model", "cells-2d", str(tmp_path / "big.tif"),
                            "--output", str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out" / "images").exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert run.poll() is None, "the command ended before it was stopped"
        os.kill(run.pid, signal.SIGTERM)
        stopped = time.monotonic()
        out, err = run.communicate(timeout=60)
        return run.returncode, out + err, time.monotonic() - stopped
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


#: A script's start: segpipe's app module with a grace of 1 s.
APP = "import sys, threading; import segpipe.cli.app; app = sys.modules['segpipe.cli.app']; app.EXIT_GRACE = 1.0; "


def test_a_stopped_command_ends_though_a_thread_it_started_never_returns(tmp_path):
    """A command whose thread never returns (as a Dask client's handshake with a server that never
    answers did) said it was stopped by SIGTERM, then stayed: Python waits for such a thread before it
    exits, and Ctrl-C did not end it either. The program (``segpipe``, :func:`entry`) ends now, with
    SIGTERM's code, the grace after its clean-ups began; a thread that never returns stands in here
    for the handshake."""
    import signal

    code, said, took = _stopped_by_sigterm(
        tmp_path, APP + "threading.Thread(target=threading.Event().wait, name='never-returns').start(); app.entry()")
    assert code == 128 + signal.SIGTERM and "stopped (SIGTERM)" in said and took < 30, (code, took, said[-2000:])


def test_a_script_that_runs_the_command_itself_is_not_ended_by_it(tmp_path):
    """A script that calls ``main()``, catches the stopped command's exit and goes on (a thread of its own
    finishing its work after the main thread ends) was ended with 143 by the command's exit timer."""
    code, said, _ = _stopped_by_sigterm(tmp_path, APP + (
        "import time\n"
        "try:\n    app.main()\nexcept SystemExit:\n    pass\n"
        "threading.Thread(target=lambda: (time.sleep(3), print('upload finished', flush=True))).start()"))
    assert code == 0 and "upload finished" in said, (code, said[-2000:])


INPUTS = 12
INTERRUPTED = "interrupted: run the same command again to resume; what was finished is kept"


def _ctrl_c(args: list[str], under_way, *, env=None) -> tuple[int, str, float, list[int]]:
    """Start ``segpipe ARGS`` in its own process group and send the group SIGINT (what Ctrl-C sends)
    once ``under_way()``; returns the exit code, stderr, the seconds it took to stop and the pids of
    the processes it had started."""
    import os
    import signal
    import time

    import psutil

    # Ctrl-C as a terminal delivers it: a non-interactive shell's background job (how CI may run) ignores SIGINT, and a
    # child inherits that, so Python would never raise KeyboardInterrupt
    run = subprocess.Popen([sys.executable, "-c", "from segpipe.cli import main; main()", *args], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and run.poll() is None and not under_way():
            time.sleep(0.1)
        assert run.poll() is None, "the run ended before it could be interrupted"
        children = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        os.killpg(run.pid, signal.SIGINT)
        sent = time.monotonic()
        _, stderr = run.communicate(timeout=120)
        return run.returncode, stderr, time.monotonic() - sent, children
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


def _inbox(folder: Path, count: int) -> Path:
    import numpy as np
    import tifffile

    folder.mkdir()
    field = tifffile.imread(ROOT / "data" / "bbbc007" / "images" / "A9_p10d.tif")[:192, :192]
    for k in range(count):
        tifffile.imwrite(folder / f"f{k}.tif", np.roll(field, 16 * k, axis=1))
    return folder


def test_ctrl_c_says_how_to_resume_and_the_rerun_keeps_what_was_finished(tmp_path):
    """SIGINT to the command's process group (what Ctrl-C sends) after its first inputs: exit 130 with a
    line saying to rerun; the rerun keeps the finished inputs and segments the rest."""
    args = ["segment", "--model", "cells-2d", str(_inbox(tmp_path / "inbox", INPUTS)), "--output", str(tmp_path / "out")]
    # the fourth input ingested: the run is under way, with inputs finished and inputs left
    code, stderr, _, _ = _ctrl_c(args, (tmp_path / "out" / "images" / "f3.ome.zarr").exists)
    assert code == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.rstrip().splitlines()[-1] == INTERRUPTED
    finished = len(list((tmp_path / "out" / "measurements").glob("*.csv")))
    rerun = subprocess.run([sys.executable, "-c", "from segpipe.cli import main; main()", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert INPUTS > finished >= 1  # interrupted with work left
    assert rerun.stderr.count("already predicted with these settings, skipping") >= finished
    assert len(list((tmp_path / "out" / "labels").glob("*_labels.tif"))) == INPUTS


def test_ctrl_c_during_an_ingest_stops_its_worker_processes_and_says_nothing_was_kept(tmp_path):
    """Ctrl-C during an ingest in worker processes: the pool went on with every batch queued (90 of
    120 images) before the command stopped, then said "what was finished is kept" of a store it had
    thrown away. Now the workers stop at once, and the line says the ingest starts over."""
    import time

    import numpy as np
    import psutil
    import tifffile

    rng, names = np.random.default_rng(0), [f"i{k:03d}" for k in range(96)]
    for folder in ("img", "lab"):
        (tmp_path / folder).mkdir()
    for name in names:
        labels = np.zeros((384, 384), np.uint8)
        labels[100:140, 100:140] = 1
        tifffile.imwrite(tmp_path / "img" / f"{name}.tif", (rng.integers(0, 100, labels.shape) + 100 * labels).astype(np.uint8))
        tifffile.imwrite(tmp_path / "lab" / f"{name}.tif", labels)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"datasets:\n  many:\n    images: img/*.tif\n    labels: lab/*.tif\n    ndim: 2\n"
                       f"    split: {{train: [{', '.join(names[:90])}], validation: [{', '.join(names[90:])}]}}\n")
    out = tmp_path / "out"
    code, stderr, took, children = _ctrl_c(["ingest", "many", "--catalog", str(catalog), "--output", str(out)],
                                           lambda: len(list(out.glob("many/.data.zarr.partial-*/i*"))) >= 8)
    assert code == 130 and took < 10 and "Traceback" not in stderr and "leaked" not in stderr, (took, stderr[-3000:])
    assert stderr.rstrip().splitlines()[-1] == (
        "interrupted: the ingest of many was stopped and keeps nothing of it (it is written whole); run the same command "
        "again to start it over"
    )
    time.sleep(1)
    assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not (out / "many").exists()  # nothing half-written


def test_ctrl_c_on_a_local_dask_cluster_stops_at_once_in_one_line(tmp_path):
    """Ctrl-C reached the embedded Prefect server and the Dask workers too (one process group): the
    command waited 144 s for the server it had lost, printed tracebacks and exited 1. Now: exit 130
    within seconds, no traceback, no process of the command left, the finished inputs kept."""
    import time

    import psutil

    labels = tmp_path / "out" / "labels"
    code, stderr, took, children = _ctrl_c(
        ["segment", "--model", "cells-2d", str(_inbox(tmp_path / "inbox", 3 * INPUTS)), "--output", str(tmp_path / "out"),
         "--runner", "dask", "--workers", "1"],
        lambda: any(labels.glob("*.tif")),
    )
    assert code == 130 and took < 30 and "Traceback" not in stderr, (took, stderr[-3000:])
    assert INTERRUPTED in stderr.splitlines()[-2:]  # then only Prefect's line that it stops its embedded server
    time.sleep(6)  # the watchdog's grace
    assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert list(labels.glob("*_labels.tif"))


def test_ctrl_c_in_a_pipeline_run_stops_at_once_in_one_line(make_crop_catalog, tmp_path):
    """`segpipe run` on Prefect's embedded server, Ctrl-C while it trains: the server, in the same
    process group, stopped too, and the run waited 140 s for it, then exited 1 with httpx tracebacks."""
    import os
    import time

    catalog = make_crop_catalog()
    catalog.write_text(catalog.read_text().replace("iterations_per_epoch: 2", "iterations_per_epoch: 200"))
    store = tmp_path / "runs" / "crops" / "data.zarr"
    ingested = []

    def training() -> bool:  # ingested, then three seconds into training
        if store.exists() and not ingested:
            ingested.append(time.monotonic())
        return bool(ingested) and time.monotonic() - ingested[0] > 3

    code, stderr, took, _ = _ctrl_c(["run", "crops", "--catalog", str(catalog), "--output", str(tmp_path / "runs")], training,
                                    env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")})
    assert code == 130 and took < 30 and "Traceback" not in stderr, (took, stderr[-3000:])
    assert INTERRUPTED in stderr.splitlines()[-2:]


def test_verbose_shows_segpipes_debug_lines_not_every_librarys():
    """-v: segpipe's and Prefect's debug lines; matplotlib's font search and zarr's chunk reads stay out."""
    probe = (
        "import logging; from segpipe.cli.app import _setup_logging; _setup_logging(True); "
        "from prefect.logging.configuration import setup_logging; setup_logging(); "
        "print([logging.getLogger(n).isEnabledFor(logging.DEBUG) for n in ('segpipe.pipeline', 'prefect.flows', "
        "'matplotlib.font_manager', 'zarr.core', 'httpx')])"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[True, True, False, False, False]", result.stderr


def test_init_on_the_command_line_is_a_folder_from_where_it_is_typed(crop_catalog, crops_model, tmp_path):
    """Before, a relative --init was looked for under the catalog's folder: with the catalog
    elsewhere, `--init model` from the model's parent folder was "no model folder"."""
    from segpipe.models.model import Model

    out = tmp_path / "runs"
    assert _segpipe("ingest", "crops", "--catalog", str(crop_catalog), "--output", str(out)).returncode == 0
    here = crops_model.folder.parent
    assert here != crop_catalog.parent
    result = _segpipe("train", "crops", "--catalog", str(crop_catalog), "--output", str(out), "--epochs", "1",
                      "--init", crops_model.folder.name, cwd=here)
    assert result.returncode == 0, result.stderr
    assert Model.open(out / "crops" / "model").card.training.init == str(crops_model.folder.resolve())


def test_a_missing_init_path_is_named_from_where_it_was_typed(tmp_path, monkeypatch):
    """`--init models/missing` said "no model folder CATALOG_FOLDER/models/missing": a path typed on the
    command line is taken from the working directory, found or not; a bare name, or the catalog's
    name of a dataset holding a slash, stays a catalog dataset's or a shipped model's."""
    from segpipe.cli.stages import init_from_here
    from segpipe.training.params import TrainParams

    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "catalog.yaml"
    (tmp_path / "img.tif").write_bytes(b"II*\x00")
    catalog.write_text("datasets:\n  lab/cells:\n    images: img.tif\n    ndim: 2\n    classes: [background, cell]\n")
    assert init_from_here(TrainParams(init="models/missing"), catalog).init == str(tmp_path / "models" / "missing")
    for name in ("cells-2d", "bbbc007", "none", str(tmp_path / "abs"), "lab/cells"):
        assert init_from_here(TrainParams(init=name), catalog).init == name


def test_help_shows_no_sphinx_markup():
    """Options' help comes from the parameter models' docstrings; before, --init showed
    ":mod:`segpipe.training.channel_order`" and double backticks."""
    import os

    for command in ("train", "run", "predict", "segment", "ingest"):
        result = _segpipe(command, "--help", env={**os.environ, "COLUMNS": "2000"})
        assert result.returncode == 0, result.stderr
        for markup in (":mod:", ":func:", ":class:", "``"):
            assert markup not in result.stdout, (command, markup)
    assert "(segpipe.training.channel_order)" in _segpipe("train", "--help", env={**os.environ, "COLUMNS": "2000"}).stdout


def test_a_channel_named_twice_is_one_line(tmp_path):
    """--channels 0,0 ended in a pydantic traceback from deep inside the ingest."""
    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint16))
    result = _segpipe("segment", "--model", "cells-2d", str(tmp_path / "a.tif"), "--channels", "0,0",
                      "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == "error: --channels: 0,0 names a channel twice; give each channel once\n"
    assert not (tmp_path / "out").exists()


def test_where_no_catalog_is_found_the_line_says_how_to_give_one(tmp_path, monkeypatch, segpipe_cli):
    """From a folder without data_catalog.yaml: `train` said only "catalog file not found", and
    `segment --model DATASET` listed what it tried without saying no catalog was there to look in."""
    monkeypatch.chdir(tmp_path)
    trained = segpipe_cli("train", "mni152-tissue")
    assert trained.code == 2 and trained.errors == [
        "error: data_catalog.yaml: catalog file not found; give it with --catalog FILE "
        "(segpipe segment --model MODEL_FOLDER needs no catalog)"], trained.err
    segmented = segpipe_cli("segment", "--model", "mni152-tissue", "scan.nii.gz")
    assert segmented.code == 2 and len(segmented.errors) == 1, segmented.err
    assert segmented.errors[0].endswith("and no catalog data_catalog.yaml to find a dataset of that name in (--catalog names one)")


def test_a_folder_given_as_the_catalog_is_called_a_folder(tmp_path, segpipe_cli):
    """`-c FOLDER` said "catalog file not found" (and segment "no catalog FOLDER"), though the folder is there."""
    listed = segpipe_cli("catalog", "--catalog", tmp_path)
    assert listed.code == 2 and listed.errors == [
        f"error: {tmp_path}: a folder, not a catalog file; give the catalog's YAML file with --catalog FILE"], listed.err
    segmented = segpipe_cli("segment", "--model", "mni152-tissue", "scan.nii.gz", "--catalog", tmp_path)
    assert segmented.code == 2 and len(segmented.errors) == 1, segmented.err
    assert segmented.errors[0].endswith(f"and {tmp_path} is a folder, not a catalog file to find a dataset of that name in "
                                        "(--catalog names the YAML file)")


def test_options_refused_together_are_named_without_an_empty_field(tmp_path, segpipe_cli):
    """A check of two options together printed "error: : a Dask scheduler address needs runner 'dask'"."""
    result = segpipe_cli("segment", "--model", "cells-2d", str(tmp_path), "--dask-address", "tcp://127.0.0.1:1")
    assert result.code == 2 and result.errors == ["error: a Dask scheduler address needs runner 'dask'"], result.err


@pytest.mark.parametrize("args", [["run", "crops"], ["run", "crops", "--deployment", "nightly"]])
def test_a_prefect_server_that_does_not_answer_is_one_line(crop_catalog, tmp_path, args):
    """PREFECT_API_URL at a closed port: `segpipe run` printed 141 lines of traceback ending "Failed to
    reach API", and with --deployment 101 lines ending in httpx's ConnectError; both exited 1."""
    import os
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "prefect")}
    result = subprocess.run([sys.executable, "-c", "from segpipe.cli import main; main()", *args, "--catalog", str(crop_catalog),
                             "--output", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {url}: no Prefect server answers"), result.stderr
    assert not (tmp_path / "out").exists()


def test_train_and_predict_ingest_a_dataset_first(crop_catalog, tmp_path, segpipe_cli):
    """`segpipe train DATASET` on a fresh output said "no zarr store here; run `segpipe ingest` first"."""
    from segpipe.data.store import ImageStore

    out = tmp_path / "runs"
    trained = segpipe_cli("train", "crops", "--catalog", crop_catalog, "--output", out, "--epochs", "1", "--device", "cpu")
    assert trained.code == 0, trained.err
    assert f"{out / 'crops' / 'data.zarr'}: 4 images ingested first" in trained.out
    assert len(ImageStore.open(out / "crops" / "data.zarr").images()) == 4 and (out / "crops" / "model" / "model.pt").is_file()
    predicted = segpipe_cli("predict", "crops", "--catalog", crop_catalog, "--output", out, "--device", "cpu", "--no-tta")
    assert predicted.code == 0 and "ingested first" not in predicted.out, predicted.err  # up to date: not again


def test_catalog_command_counts_the_images_with_ground_truth(tmp_path):
    """A CTC sequence annotating 1 frame of 4 was listed as 4 training images."""
    import numpy as np
    import tifffile

    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    for t in range(4):
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg002.tif", np.zeros((8, 8), np.uint16))
    (tmp_path / "catalog.yaml").write_text("datasets:\n  seq:\n    format: ctc\n    images: '01'\n    split: {train: ['01']}\n"
                                           "  new:\n    format: ctc\n    images: '01'\n    model: seq\n")
    result = _segpipe("catalog", "--catalog", str(tmp_path / "catalog.yaml"))
    assert result.returncode == 0, result.stderr
    assert "images per split: train 4 (1 with ground truth), validation 0, test 0" in result.stdout, result.stdout
    # an entry applying a model was listed with the default classes [background, foreground]
    assert "new: 2D, segmented with model seq, images per split: train 0, validation 0, test 4" in result.stdout, result.stdout


@pytest.mark.parametrize("stage", ["predict", "score", "report"])
def test_a_split_that_is_none_of_the_three_is_refused_naming_them(tmp_path, segpipe_cli, stage):
    """`predict --split bogus` said "the bogus split is empty", as if it were a split with no images."""
    result = segpipe_cli(stage, "bbbc007", "--split", "bogus", "--output", tmp_path)
    assert result.code == 2 and "'bogus' is not one of 'train'," in " ".join(result.err.split()), result.err
    assert not any(tmp_path.iterdir())


def test_a_start_that_is_not_there_is_refused_before_the_ingest(crop_catalog, tmp_path, segpipe_cli):
    """`train --init nosuchmodel` ingested the dataset first (its lines, a store written), then refused."""
    result = segpipe_cli("train", "crops", "--init", "nosuchmodel", "--catalog", crop_catalog, "--output", tmp_path / "runs")
    assert result.code == 2 and len(result.errors) == 1 and "nosuchmodel: no model folder" in result.errors[0], result.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["train", "run"])
def test_a_start_that_cannot_train_the_entry_is_refused_before_the_ingest(crop_catalog, tmp_path, segpipe_cli, command):
    """`--init cells-2d` on a class-map dataset ingested it first, then refused."""
    crop_catalog.write_text(crop_catalog.read_text().replace("    ndim: 2\n", "    ndim: 2\n    instances: false\n"))
    result = segpipe_cli(command, "crops", "--init", "cells-2d", "--catalog", crop_catalog, "--output", tmp_path / "runs")
    assert result.code == 2 and len(result.errors) == 1, result.err
    assert "cells-2d: it separates objects; this dataset's labels are a class map (instances: false)" in result.errors[0]
    assert not (tmp_path / "runs").exists()


def test_a_bad_entry_is_named_by_catalog_and_stops_no_other_entry(crop_catalog, tmp_path, segpipe_cli):
    """One entry's typo made every command fail for every entry, and `catalog` stopped at the first problem."""
    text = crop_catalog.read_text()
    crop_catalog.write_text(text + "  typo:\n    images: images/*.tif\n    colour: red\n"
                            "  missing:\n    images: nowhere/*.tif\n    model: crops\n")
    listed = segpipe_cli("catalog", "--catalog", crop_catalog)
    assert listed.code == 2
    assert listed.out.startswith("crops: 2D, classes") and "typo" not in listed.out and "missing" not in listed.out
    errors = listed.err.strip().splitlines()
    assert len(errors) == 2 and "dataset 'typo': colour: unknown field" in errors[0], listed.err
    assert "nowhere/*.tif" in errors[1] and "matches no file" in errors[1], listed.err

    ingested = segpipe_cli("ingest", "crops", "--catalog", crop_catalog, "--output", tmp_path / "out")
    assert ingested.code == 0, ingested.err
    refused = segpipe_cli("ingest", "typo", "--catalog", crop_catalog, "--output", tmp_path / "out")
    assert refused.code == 2 and "dataset 'typo': colour: unknown field" in refused.err


def test_catalog_reads_the_headers_regions_and_channels_that_ingest_would_refuse(crop_catalog, segpipe_cli):
    """A region past the image's edge and a channel the file lacks passed `segpipe catalog`; ingest refused them."""
    crop_catalog.write_text(crop_catalog.read_text() + (
        "  oob:\n    images: images/A9_p9d.tif\n    labels: labels/A9_p9d.tif\n"
        "    split: {regions: {train: [[0, 100], [0, 160]], test: [[100, 400], [0, 160]]}}\n"
        "  chan:\n    images: images/A9_p9d.tif\n    labels: labels/A9_p9d.tif\n    channels: [0, green]\n    split: {train: [A9_p9d]}\n"))
    listed = segpipe_cli("catalog", "--catalog", crop_catalog)
    assert listed.code == 2 and listed.out.startswith("crops: 2D") and "oob" not in listed.out and "chan" not in listed.out
    assert listed.err.strip().splitlines() == [
        f"error: {crop_catalog.parent / 'images' / 'A9_p9d.tif'}: region test ((100, 400), (0, 160)) exceeds the image shape (160, 160)",
        f"error: {crop_catalog.parent / 'images' / 'A9_p9d.tif'}: channels: 0, green (channel 1) asked for, the file has "
        "1 channel (a grey image)",
    ], listed.err


def test_catalog_reads_a_pixel_size_the_labels_give_otherwise(crop_catalog, segpipe_cli):
    """An image and its labels of other pixel sizes passed `segpipe catalog` (the size is in the header); ingest refused them."""
    import tifffile

    folder = crop_catalog.parent
    (folder / "sized").mkdir()
    for kind, resolution in (("images", 2.0), ("labels", 4.0)):
        data = tifffile.imread(folder / kind / "A9_p9d.tif")
        tifffile.imwrite(folder / "sized" / f"{kind}.tif", data, imagej=True, resolution=(resolution, resolution),
                         metadata={"unit": "um"})
    crop_catalog.write_text(crop_catalog.read_text() + (
        "  sized:\n    images: sized/images.tif\n    labels: sized/labels.tif\n    split: {train: [images]}\n"))
    listed = segpipe_cli("catalog", "--catalog", crop_catalog)
    assert listed.code == 2 and "sized" not in listed.out
    assert listed.err.strip().splitlines() == [
        f"error: {folder / 'sized' / 'images.tif'} has spacing (0.5, 0.5) but its labels {folder / 'sized' / 'labels.tif'} "
        "have (0.25, 0.25) (they differ along y)"], listed.err


def test_catalog_names_every_bad_file_of_an_entry(crop_catalog, segpipe_cli):
    """Two label files of the wrong shape in one entry: `segpipe catalog` named the first only, so a
    user fixed one file a run."""
    import numpy as np
    import tifffile

    folder = crop_catalog.parent
    names = sorted(p.stem for p in (folder / "labels").glob("*.tif"))[:2]
    for name in names:
        tifffile.imwrite(folder / "labels" / f"{name}.tif", np.zeros((40, 160), np.uint16))
    listed = segpipe_cli("catalog", "--catalog", crop_catalog)
    assert listed.code == 2 and listed.out == "", listed.out
    assert listed.err.strip().splitlines() == [
        f"error: {folder / 'images' / f'{name}.tif'} has spatial shape (160, 160) but its labels "
        f"{folder / 'labels' / f'{name}.tif'} have shape (40, 160)" for name in names
    ], listed.err
