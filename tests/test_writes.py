"""Every output goes through one writer: symlinks, FIFOs and devices are written, not replaced;
modes follow the umask; a full or read-only disk is one line with nothing half-written; states folders are
reused cleanly; two outputs of one command never share a file.

Full and read-only disks are small tmpfs mounts (root only; skipped where mounting is not allowed).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from safetensors.torch import load_file

import diffcrit
from diffcrit.errors import UserError
from diffcrit.io import atomic_write_bytes
from diffcrit.report.document import write_document
from cli_checks import fast, one_line_error, run
from result_factory import make_analyze_result

MODEL = "builtin:gaussian?size=8"
FAST = fast(MODEL)
DOC = {"schema_version": 1, "kind": "test", "values": [1, 2, 3]}
PACKAGE_ROOT = str(Path(diffcrit.__file__).resolve().parents[1])


def run_process(*args, stdout=None, timeout=300):
    """``python -m diffcrit ARGS`` in its own process (a real stdout; a crash cannot take pytest down)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "diffcrit", *map(str, args)], env=env, timeout=timeout,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (links followed) -> (bytes, mtime in ns): equal snapshots, nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_stderr_line(done, *fragments):
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (done.returncode, done.stderr)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- small disks ---------------------------------------------------------------------------------


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(options)`` -> a folder with a fresh tmpfs on it, unmounted after the test."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.fixture
def full_disk(mount_tmpfs):
    """A 64 KiB tmpfs filled to the last block: any write into it fails with ENOSPC."""
    where = mount_tmpfs("size=64k")
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return where


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("filler", *keep))


def read_fifo_in_thread(fifo: Path) -> tuple[threading.Thread, dict]:
    got: dict = {}

    def read():
        with open(fifo, "rb") as handle:
            got["data"] = handle.read()

    reader = threading.Thread(target=read, daemon=True)  # daemon: a FIFO replaced by a file never unblocks it
    reader.start()
    return reader, got


def assert_special_files_are_written_through(tmp_path: Path) -> None:
    """Guard for the tests that touch /dev/null and /dev/full: never let a writer that replaces what is at the
    path near the machine's device nodes; show it on a FIFO of our own first."""
    fifo = tmp_path / "guard.fifo"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_thread(fifo)
    write_document(DOC, fifo)
    reader.join(timeout=30)
    if not stat.S_ISFIFO(os.stat(fifo).st_mode) or json.loads(got.get("data") or b"null") != DOC:
        pytest.fail("the writer replaces a FIFO instead of writing it: not touching /dev/null or /dev/full")


# -- the writer ------------------------------------------------------------------------------------


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    write_document(DOC, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text()) == DOC
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "new.json")
    write_document(DOC, dangling)
    assert dangling.is_symlink() and json.loads((tmp_path / "new.json").read_text()) == DOC


def test_fifo_reader_gets_the_document(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_thread(fifo)
    write_document(DOC, fifo)
    reader.join(timeout=30)
    assert not reader.is_alive() and json.loads(got["data"]) == DOC
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert leftovers(tmp_path) == ["pipe"]  # no temporary file beside it


def test_dev_null_stays_a_character_device(tmp_path):
    assert_special_files_are_written_through(tmp_path)
    write_document(DOC, "/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_document(DOC, tmp_path / "new.json")
        assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o644
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "private.bin", b"x")
        assert stat.S_IMODE(os.stat(tmp_path / "private.bin").st_mode) == 0o600
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o640)
        os.umask(0o022)
        write_document(DOC, kept)
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640 and json.loads(kept.read_text()) == DOC
    finally:
        os.umask(old)


def test_full_disk_is_a_user_error_and_leaves_nothing(full_disk):
    (full_disk / "r.json").write_bytes(b"")  # an existing file stays as it was
    for name in ("r.json", "new.json"):
        with pytest.raises(UserError, match="No space left on device") as caught:
            write_document({"big": "x" * 20000}, full_disk / name)
        assert name in str(caught.value)
    assert leftovers(full_disk) == ["r.json"] and (full_disk / "r.json").read_bytes() == b""


def test_dev_full_is_a_user_error(tmp_path):
    assert_special_files_are_written_through(tmp_path)
    with pytest.raises(UserError, match="/dev/full.*No space left on device"):
        write_document(DOC, "/dev/full")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_preallocation_is_real_with_and_without_fallocate(tmp_path, mount_tmpfs, monkeypatch):
    from diffcrit.io import preallocate

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    for patched in (False, True):
        if patched:
            monkeypatch.setattr(os, "posix_fallocate", unsupported)
        path = tmp_path / f"block{patched}"
        with open(path, "wb") as handle:
            handle.write(b"head")
            handle.flush()
            preallocate(handle.fileno(), 4, 1 << 20)
        assert path.read_bytes()[:4] == b"head" and os.path.getsize(path) == 4 + (1 << 20)
        assert os.stat(path).st_blocks * 512 >= 1 << 20  # allocated, not sparse
        small = mount_tmpfs("size=64k")
        with open(small / "big", "wb") as handle, pytest.raises(OSError) as caught:
            preallocate(handle.fileno(), 0, 1 << 20)
        assert caught.value.errno == errno.ENOSPC


# -- the CLI: where outputs go ---------------------------------------------------------------------


def test_cli_out_through_a_symlink_and_into_a_fifo(tmp_path):
    target, link = tmp_path / "r.json", tmp_path / "link.json"
    link.symlink_to(target)
    assert run("analyze", *FAST, "--out", link).exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["model"]["id"] == MODEL
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = read_fifo_in_thread(fifo)
    result = run("analyze", *FAST, "--out", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert json.loads(got["data"])["model"]["id"] == MODEL and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_cli_outputs_are_0644_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        result = run("analyze", *FAST, "--out", tmp_path / "r.json", "--save-samples", tmp_path / "s.safetensors",
                     "--save-states", tmp_path / "states")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "r.json", tmp_path / "s.safetensors", tmp_path / "states" / "index.json",
                 tmp_path / "states" / "step_0005.safetensors"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


# -- the CLI: full disks ---------------------------------------------------------------------------


def test_cli_full_disk_is_one_line_and_leaves_nothing(full_disk, tmp_path):
    for option, name in (("--out", "r.json"), ("--save-samples", "s.safetensors")):
        result = run("analyze", *FAST, option, full_disk / name)
        one_line_error(result, "cannot write", name, "No space left on device")
        assert leftovers(full_disk) == []


def test_cli_failed_plot_leaves_the_old_json_as_it_was(full_disk, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")
    before = snapshot(tmp_path)
    one_line_error(run("analyze", *FAST, "--out", out, "--plot", full_disk / "f.png"), "f.png", "No space left")
    assert snapshot(tmp_path) == before  # all or nothing: the JSON was staged, never put in place
    assert leftovers(full_disk) == []


def test_cli_out_dev_full_is_one_line(tmp_path):
    assert_special_files_are_written_through(tmp_path)
    one_line_error(run("analyze", *FAST, "--out", "/dev/full"), "/dev/full", "No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_stdout_on_a_full_disk_is_one_line():
    with open("/dev/full", "w") as full:
        done = run_process("analyze", *FAST, stdout=full)
    one_stderr_line(done, "stdout", "No space left on device")


def test_npy_states_on_a_full_disk_is_one_line_not_sigbus(mount_tmpfs):
    small = mount_tmpfs("size=64k")
    target = small / "states.npy"  # 6 steps x 2 x 3 samples x 32 x 32 float32 = 147 KiB > 64 KiB
    done = run_process("analyze", *fast("builtin:gaussian?size=32"), "--save-states", target)
    one_stderr_line(done, "states.npy", "No space left on device")
    assert leftovers(small) == []


def test_folder_states_on_a_small_disk_keep_the_steps_written(mount_tmpfs):
    small = mount_tmpfs("size=16k")  # 4 pages: a few steps fit
    states = small / "states"
    one_line_error(run("analyze", *FAST, "--save-states", states), "No space left on device")
    written = [s["index"] for s in json.loads((states / "index.json").read_text())["steps"]]
    assert written == list(range(len(written))) and len(written) < 6
    assert sorted(p.name for p in states.iterdir()) == ["index.json", *(f"step_{i:04d}.safetensors" for i in written)]
    for i in written:
        assert load_file(str(states / f"step_{i:04d}.safetensors"))["y"].shape == (3, 1, 8, 8)


# -- the CLI: states folders -----------------------------------------------------------------------


def test_reused_states_folder_drops_the_stale_steps_of_a_longer_run(tmp_path):
    states = tmp_path / "states"
    assert run("analyze", *FAST, "--save-states", states).exit_code == 0
    (states / "notes.txt").write_text("mine")
    assert run("analyze", *fast(MODEL, steps=4), "--save-states", states).exit_code == 0
    index = json.loads((states / "index.json").read_text())
    assert [s["index"] for s in index["steps"]] == [0, 1, 2, 3]
    assert sorted(p.name for p in states.glob("step_*")) == [f"step_{i:04d}.safetensors" for i in range(4)]
    assert (states / "notes.txt").read_text() == "mine"  # only diffcrit's own step files are removed


def test_a_folder_that_is_not_a_states_folder_is_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("diffcrit.analysis.engine.load_model", lambda *a, **k: calls.append(1))
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "step_0001.safetensors").write_text("not ours")
    one_line_error(run("analyze", *FAST, "--save-states", folder), "photos", "not empty", "index.json")
    assert calls == [] and (folder / "step_0001.safetensors").read_text() == "not ours"


def test_read_only_states_folder_is_one_line_before_loading(mount_tmpfs, monkeypatch):
    calls = []
    monkeypatch.setattr("diffcrit.analysis.engine.load_model", lambda *a, **k: calls.append(1))
    folder = mount_tmpfs("ro,size=64k")
    one_line_error(run("analyze", *FAST, "--save-states", folder), "--save-states", "not writable")
    assert calls == []


# -- the CLI: two outputs, one file ----------------------------------------------------------------


def test_two_outputs_of_one_command_never_share_a_file(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("diffcrit.analysis.engine.load_model", lambda *a, **k: calls.append(1))
    out, samples, link = tmp_path / "x.json", tmp_path / "s.safetensors", tmp_path / "link"
    link.symlink_to(samples)
    one_line_error(run("analyze", *FAST, "--out", out, "--save-samples", out), "same file", "--save-samples")
    one_line_error(run("analyze", *FAST, "--out", link, "--save-samples", samples), "same file")
    one_line_error(run("analyze", *FAST, "--save-states", out.with_suffix(".npy"), "--out", out.with_suffix(".npy")),
                   "same file")
    guide = ["guide", "--model", "builtin:digits", "--at", "all", "--compare", "none", "--steps", "4", "--samples",
             "2", "--bootstrap", "10", "--quiet"]
    one_line_error(run(*guide, "--out", samples, "--save-samples", samples), "same file")
    assert calls == [] and not any(tmp_path.glob("x.*")) and not samples.exists()


def test_outputs_never_overwrite_each_other_or_the_commands_inputs(tmp_path):
    base, cand = tmp_path / "base.json", tmp_path / "cand.json"
    for path in (base, cand):
        path.write_text(json.dumps(make_analyze_result(1.5)))
    before = base.read_bytes()
    one_line_error(run("check", cand, "-b", base, "--report", tmp_path / "r", "--junit", tmp_path / "r"), "same file")
    one_line_error(run("check", cand, "-b", base, "--report", base), "same file", "--baseline")
    one_line_error(run("check", cand, "-b", base, "--junit", cand), "same file")
    assert base.read_bytes() == before and not (tmp_path / "r").exists()
    figure = tmp_path / "result.svg"  # a result JSON under a figure's name
    figure.write_bytes(before)
    one_line_error(run("plot", figure, "-o", figure), "same file")
    assert figure.read_bytes() == before
    one_line_error(run("predict", "--data", "builtin:mixture", "--compare", cand, "--out", cand, "--quiet"),
                   "same file", "--compare")
    one_line_error(run("guide", "--model", "builtin:digits", "--critical-from", cand, "--out", cand, "--quiet"),
                   "same file", "--critical-from")
    assert cand.read_bytes() == before


def test_dev_null_takes_any_number_of_outputs(tmp_path):
    assert_special_files_are_written_through(tmp_path)
    result = run("analyze", *FAST, "--out", "/dev/null", "--save-samples", "/dev/null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_save_samples_must_be_named_safetensors(tmp_path):
    one_line_error(run("analyze", *FAST, "--save-samples", tmp_path / "s.npy"), "s.npy", ".safetensors")
    guide = ["guide", "--model", "builtin:digits", "--at", "all", "--compare", "none", "--steps", "4", "--samples",
             "2", "--bootstrap", "10", "--quiet"]
    one_line_error(run(*guide, "--save-samples", tmp_path / "g.npy"), "g.npy", ".safetensors")
    with pytest.raises(UserError, match="safetensors"):
        diffcrit.analyze(MODEL, steps=4, samples=2, bootstrap=0, save_samples_to=tmp_path / "s.pt")
    assert not any(tmp_path.iterdir())


def test_guide_outputs_that_cannot_be_written_leave_the_old_json(full_disk, tmp_path):
    out = tmp_path / "g.json"
    out.write_text("old")
    before = snapshot(tmp_path)
    guide = ["guide", "--model", "builtin:digits", "--at", "all", "--compare", "none", "--steps", "4", "--samples",
             "2", "--bootstrap", "10", "--quiet"]
    result = run(*guide, "--out", out, "--save-images", full_disk / "grids")
    one_line_error(result, "all.png", "No space left")
    assert snapshot(tmp_path) == before
    assert leftovers(full_disk) == []  # the grids folder it created is removed again


# -- the CLI: no output lands in an input ------------------------------------------------------------


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """A folder holding a tiny DDPM pipeline ``m``, a symlink ``mlink`` to it, a symlink and a hard link to two of
    its files, and a baseline result: what the outputs below must never change."""
    from tiny_models import save_ddpm_pipeline

    home = tmp_path_factory.mktemp("home")
    save_ddpm_pipeline(home / "m")
    (home / "mlink").symlink_to(home / "m", target_is_directory=True)
    (home / "link.json").symlink_to(home / "m" / "unet" / "config.json")
    os.link(home / "m" / "unet" / "diffusion_pytorch_model.safetensors", home / "hard.safetensors")
    (home / "base.json").write_text(json.dumps(make_analyze_result(1.5)))
    (home / "base.svg").symlink_to(home / "base.json")
    return home


@pytest.fixture
def untouched(model_home, monkeypatch):
    """Run the test in ``model_home``; afterwards no file there changed and no model was loaded."""
    monkeypatch.chdir(model_home)
    monkeypatch.setattr("diffcrit.analysis.engine.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    before = snapshot(model_home)
    names = sorted(p.name for p in model_home.rglob("*"))
    yield model_home
    assert snapshot(model_home) == before
    assert sorted(p.name for p in model_home.rglob("*")) == names


MODEL_WRITES = [  # (argv after the command, fragments of the one line)
    (["analyze", "-m", "m", "--out", "m/model_index.json"], ["--out", "inside the model folder m"]),
    (["analyze", "-m", "m", "--out", "m/unet/config.json"], ["inside the model folder"]),
    (["analyze", "-m", "m", "--out", "m/scheduler/scheduler_config.json"], ["inside the model folder"]),
    (["analyze", "-m", "m", "--out", "m/new.json"], ["inside the model folder"]),
    (["analyze", "-m", "m", "--out", "link.json"], ["link.json", "inside the model folder"]),
    (["analyze", "-m", "m", "--out", "mlink/unet/new.json"], ["inside the model folder"]),
    (["analyze", "-m", "mlink", "--out", "m/model_index.json"], ["inside the model folder mlink"]),
    (["analyze", "-m", "m/", "--out", "m/./unet/../model_index.json"], ["inside the model folder"]),
    (["analyze", "-m", "m", "--out", "m"], ["--out m is the model folder m"]),
    (["analyze", "-m", "m", "--save-samples", "m/unet/diffusion_pytorch_model.safetensors"],
     ["--save-samples", "inside the model folder"]),
    (["analyze", "-m", "m", "--save-samples", "hard.safetensors"], ["hard.safetensors", "is a file of the model"]),
    (["analyze", "-m", "m", "--plot", "m/figure.png"], ["--plot", "inside the model folder"]),
    (["analyze", "-m", "m", "--save-states", "m"], ["--save-states m is the model folder"]),
    (["analyze", "-m", "m", "--save-states", "m/unet/states"], ["--save-states", "inside the model folder"]),
    (["analyze", "-m", "m", "--save-states", "m/states.npy"], ["--save-states", "inside the model folder"]),
    (["analyze", "-m", "m", "--save-states", "."], ["--save-states folder . holds the model folder m"]),
    (["analyze", "-m", "m", "--save-states", "mlink"], ["is the model folder"]),
    (["analyze", "-m", "m/unet", "--out", "m/unet/config.json"], ["inside the model folder m/unet"]),
    (["guide", "-m", "m", "--out", "m/model_index.json"], ["--out", "inside the model folder"]),
    (["guide", "-m", "m", "--save-samples", "m/s.safetensors"], ["--save-samples", "inside the model folder"]),
    (["guide", "-m", "m", "--save-images", "m/unet"], ["--save-images", "inside the model folder"]),
    (["guide", "-m", "m", "--save-images", "."], ["--save-images folder . holds the model folder"]),
    (["guide", "-m", "m", "--suggest", "--critical-from", "base.json", "--save-guider", "m/unet"],
     ["--save-guider", "inside the model folder"]),
    (["guide", "-m", "m", "--suggest", "--critical-from", "base.json", "--save-guider", "."],
     ["--save-guider folder . holds the model folder"]),
    (["guide", "-m", "m", "--critical-from", "base.json", "--out", "base.json"], ["same file", "--critical-from"]),
    (["check", "-b", "base.json", "--model", "m", "--save-candidate", "m/unet/config.json"],
     ["--save-candidate", "inside the model folder"]),
    (["check", "-b", "base.json", "--model", "m", "--report", "link.json"], ["--report", "inside the model folder"]),
    (["check", "-b", "base.json", "--model", "m", "--junit", "mlink/j.xml"], ["--junit", "inside the model folder"]),
    (["check", "base.json", "-b", "base.json", "--config", "m/model_index.json", "--report", "m/model_index.json"],
     ["same file"]),
    (["predict", "--data", "m", "--out", "m/unet/config.json"], ["inside --data m"]),
    (["predict", "--data", ".", "--out", "new.json"], ["inside --data ."]),
    (["plot", "base.json", "-o", "base.svg"], ["--out base.svg is the same file as the result base.json"]),
]


@pytest.mark.parametrize("args,fragments", MODEL_WRITES, ids=[" ".join(a) for a, _ in MODEL_WRITES])
def test_no_output_lands_in_an_input(untouched, args, fragments):
    one_line_error(run(*args), *fragments)


def test_outputs_never_land_in_an_output_folder(untouched):
    one_line_error(run("analyze", *FAST, "--save-states", "d", "--out", "d/index.json"), "inside the --save-states")
    one_line_error(run("analyze", *FAST, "--save-states", "s.npy", "--out", "s.npy.json"), "same file")
    one_line_error(run("guide", "-m", "builtin:digits", "--save-images", "g", "--out", "g/all.png"),
                   "inside the --save-images")


def test_the_python_api_refuses_the_model_folder_too(untouched):
    with pytest.raises(UserError, match="inside the model folder"):
        diffcrit.analyze("m", steps=4, samples=1, save_samples_to="m/unet/diffusion_pytorch_model.safetensors")


def test_a_hub_ids_cache_folder_is_an_input(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot_folder = tmp_path / "models--owner--name" / "snapshots" / "abc"
    snapshot_folder.mkdir(parents=True)
    one_line_error(run("analyze", *FAST[2:], "-m", "owner/name", "--out", snapshot_folder / "model_index.json"),
                   "inside the model folder", "models--owner--name")


# -- the CLI: every output checked before the work, written together --------------------------------


def test_a_later_output_that_is_refused_leaves_every_output_as_it_was(untouched):
    for bad in (["--plot", "p.xyz"], ["--plot", "p.gif"], ["--save-samples", "s.npy"],
                ["--save-samples", "missing/s.safetensors"], ["--save-states", "base.json"],
                ["--save-states", "missing/../m"]):  # the folder the name reaches: m, not empty, no index.json
        one_line_error(run("analyze", *FAST, "--out", "base.json", *bad))
    guide = ["guide", "--model", "builtin:digits", "--at", "all", "--compare", "none", "--quiet"]
    one_line_error(run(*guide, "--out", "base.json", "--save-samples", "full/s.safetensors"), "does not exist")


def test_an_exception_inside_the_block_touches_no_target(tmp_path):
    from diffcrit.io import StagedOutputs

    old = tmp_path / "old.json"
    old.write_text("old")
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError), StagedOutputs() as outputs:
        outputs.write_text(old, "new")
        outputs.folder(tmp_path / "new" / "grids")
        outputs.write_bytes(tmp_path / "new" / "grids" / "a.png", b"png")
        raise RuntimeError("a later output failed")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_a_signal_during_the_commit_comes_after_every_file(tmp_path, monkeypatch):
    import signal

    from diffcrit.errors import InterruptedWhileWriting
    from diffcrit.io import StagedOutputs

    real_replace = os.replace

    def replace_and_interrupt(source, target):
        os.kill(os.getpid(), signal.SIGINT)  # held until every file is in place
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_and_interrupt)
    with pytest.raises(InterruptedWhileWriting) as caught, StagedOutputs() as outputs:
        for name in ("a.json", "b.png"):
            outputs.write_text(tmp_path / name, name)
    assert caught.value.signum == signal.SIGINT and caught.value.written == [tmp_path / "a.json", tmp_path / "b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png"]


def test_check_interrupted_while_analysing_says_nothing_was_written(untouched, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("diffcrit.cli.check._check_model_shape", lambda *a: None)
    monkeypatch.setattr(diffcrit, "analyze", interrupted)
    result = run("check", "-b", "base.json", "--model", "builtin:digits", "--save-candidate", "c.json",
                 "--report", "base.json.md")
    assert result.exit_code == 130 and result.output.strip() == "interrupted: no result written", result.output
    assert not Path("c.json").exists() and not Path("base.json.md").exists()
